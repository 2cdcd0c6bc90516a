/**
 * Whether a DSN is due for a recipient, and which action each cause reports.
 *
 * @module
 */

import type { NotifyKeyword } from "../smtp/params.ts";
import type { DsnAction, DsnCause } from "./types.ts";

/** The RFC 3464 2.3.3 action a cause reports. */
export function actionFor(cause: DsnCause): DsnAction {
  switch (cause) {
    case "delayed":
      return "delayed";
    case "relayed":
      return "relayed";
    default:
      return "failed";
  }
}

/** Input for {@link needsDsn}. */
export interface DsnPolicyInput {
  /** The message's reverse-path; `""` is the null sender `<>`. */
  sender: string;
  /** NOTIFY as stored (comma list such as `"SUCCESS,FAILURE"`), as parsed, or absent. */
  notify?: string | readonly NotifyKeyword[] | null;
  /** What would be reported. */
  action: DsnAction;
  /**
   * For `relayed` only: the customer advertised DSN and was given NOTIFY, so success reports are its
   * job, not ours (RFC 3461 5.2: a "relayed" DSN is for a next hop that does not support DSN).
   */
  nextHopHasDsn?: boolean;
}

/**
 * True when a DSN with `action` is due for one recipient:
 * - never for the null sender: no DSN about a DSN (RFC 5321 6.1: a notification for a message with a
 *   null reverse-path MUST NOT be sent; RFC 3461 6.1: DSNs themselves go from `<>`);
 * - `NOTIFY=NEVER` suppresses every DSN (RFC 3461 4.1);
 * - `failed` when NOTIFY is absent or lists FAILURE, `delayed` when it is absent or lists DELAY (RFC
 *   3461 4.1: no NOTIFY is treated as `FAILURE,DELAY`); delay warnings are optional, so the caller's
 *   schedule decides whether to ask at all;
 * - `relayed` only when NOTIFY lists SUCCESS and the next hop cannot report success itself.
 */
export function needsDsn(input: DsnPolicyInput): boolean {
  if (input.sender === "") return false;
  const notify = notifyKeywords(input.notify);
  if (notify?.has("NEVER")) return false;
  switch (input.action) {
    case "failed":
      return notify === null || notify.has("FAILURE");
    case "delayed":
      return notify === null || notify.has("DELAY");
    case "relayed":
      return notify !== null && notify.has("SUCCESS") && input.nextHopHasDsn !== true;
  }
}

/** The NOTIFY keywords, upper-cased; `null` when NOTIFY was not given. */
function notifyKeywords(notify: DsnPolicyInput["notify"]): Set<string> | null {
  if (notify === null || notify === undefined) return null;
  const list = typeof notify === "string" ? notify.split(",") : notify;
  const keywords = list.map((k) => k.trim().toUpperCase()).filter((k) => k !== "");
  return keywords.length === 0 ? null : new Set(keywords);
}
