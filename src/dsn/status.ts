/**
 * The `Status:` code of each reported recipient (RFC 3464 2.3.4, codes from RFC 3463).
 *
 * Decisions:
 * - A customer refusal reports the reply's enhanced code when it has one, else the class alone
 *   (`5.0.0`, RFC 3463 3.1 "other or undefined status").
 * - Expiry reports `4.4.7` with `Action: failed`. RFC 3463 2 defines class 4 as a persistent transient
 *   failure, "If this code accompanies a delivery failure report, sending in the future may be
 *   successful": the mail was fine, the customer just never collected it. 5.4.7 would claim a permanent
 *   problem that does not exist. When the customer did answer an attempt with a temporary refusal that
 *   carried an enhanced code, that code is reported instead (RFC 3463 3.5, X.4.7: "the code for the
 *   actual problem found when delivery was attempted should be returned rather than this code").
 * - A delay warning reports the last temporary refusal's code, else `4.4.1` (RFC 3463 3.5 "no answer
 *   from host": the recipient's server has not connected to collect).
 * - An operator's bounce reports `5.0.0`; a local refusal its own code; a relayed recipient the
 *   customer's 2.x.x code or `2.0.0`.
 *
 * @module
 */

import type { DsnRecipient, DsnReply } from "./types.ts";

/** RFC 3463 2: class "." subject "." detail, subject and detail 1 to 3 digits. */
const ENHANCED_CODE = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
/** An enhanced code at the start of a text, e.g. `5.6.3 Message has 8-bit content`. */
export const LEADING_CODE = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/;

/**
 * The code in DSN form, or `undefined` when `code` is not an RFC 3463 code of class `expectedClass`
 * (when given). Leading zeros are dropped: the RFC 3463 2 grammar has none (`5.01.1` is `5.1.1`).
 */
export function normalizeStatus(code: string | undefined, expectedClass?: number): string | undefined {
  const match = ENHANCED_CODE.exec(code ?? "");
  if (match === null) return undefined;
  const [cls, subject, detail] = [match[1], match[2], match[3]].map(Number) as [number, number, number];
  if (expectedClass !== undefined && cls !== expectedClass) return undefined;
  return `${cls}.${subject}.${detail}`;
}

/** The reply's enhanced code when it matches the reply's class; else `class.0.0` (RFC 3463 3.1). */
function fromReply(reply: DsnReply): string {
  const cls = Math.floor(reply.code / 100);
  return normalizeStatus(reply.enhanced, cls) ?? `${cls}.0.0`;
}

/** The `Status:` value for one recipient (see the module notes for the choices). */
export function statusFor(recipient: DsnRecipient): string {
  switch (recipient.cause) {
    case "customer-rejected":
      return fromReply(recipient.reply);
    case "local-refusal":
      return normalizeStatus(recipient.status) ??
        normalizeStatus(LEADING_CODE.exec(recipient.text)?.[1]) ?? "5.0.0";
    case "expired":
      // RFC 3463 3.5 X.4.7: prefer the actual problem seen on an attempt.
      return normalizeStatus(recipient.lastReply?.enhanced, 4) ?? "4.4.7";
    case "operator-bounce":
      return "5.0.0";
    case "delayed":
      return normalizeStatus(recipient.lastReply?.enhanced, 4) ?? "4.4.1";
    case "relayed":
      return normalizeStatus(recipient.reply?.enhanced, 2) ?? "2.0.0";
  }
}
