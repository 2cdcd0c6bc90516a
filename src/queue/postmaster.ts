/**
 * The relay's own postmaster mailbox. RFC 5321 4.5.1: a bare `RCPT TO:<Postmaster>` MUST be accepted.
 * When `postmasterAddress` is in a hosted domain the intake routes it there (collected by ATRN like any
 * mail). Otherwise the message is queued under the reserved domain key "" (no hosted domain can have it):
 * it is listed by `queue list`, read with `queue show` and the HTTP API, counted on the status page,
 * never expires, and stays until an operator deletes it. When `postmasterAddress` is outside the hosted
 * domains, `forwardPostmasterMail` hands it to the outbound queue for that address.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { composeDsn } from "../dsn/compose.ts";
import { replyFromRecorded } from "../dsn/remote.ts";
import type { Logger } from "../log/logger.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import type { NewOutbound, OutboundQueue, OutboundRow } from "./outbound_queue.ts";
import { reportMessageId } from "./report_deps.ts";
import type { Report, ReportRouter } from "./report_router.ts";
import { concat } from "./spool.ts";
import type { QueueStore } from "./store.ts";

export { POSTMASTER_MAILBOX } from "./postmaster_store.ts";

/** Largest postmaster message forwarded (it is copied whole into the outbound queue); larger stay here. */
export const MAX_FORWARDED_BYTES = 10 * 1024 * 1024;

/**
 * Moves the local postmaster mailbox to the outbound queue, addressed to `address` (outside the hosted
 * domains), each message in one transaction with its removal. Returns how many were moved.
 */
export function forwardPostmasterMail(
  deps: { store: QueueStore; outbound: OutboundQueue; lifetimeMs: number; logger: Logger },
  address: string,
): number {
  const domain = addressDomain(address);
  if (domain === null || deps.store.hasDomain(domain)) return 0;
  const rows = deps.store.postmasterWaiting(50);
  let moved = 0;
  for (const row of rows) {
    if (row.size > MAX_FORWARDED_BYTES) continue;
    const body = concat([...deps.store.readBody(row.messageId)]);
    deps.store.transaction(() => {
      deps.outbound.add(forwardedRow(row, address, domain, body, deps.lifetimeMs));
      deps.store.removeForwardedPostmaster(row.id, row.messageId);
    });
    deps.logger.info("postmaster mail forwarded", { msgId: row.messageId, to: address });
    moved++;
  }
  return moved;
}

/**
 * Postmaster mail forwarded with its sender's reverse-path that the outside postmasterAddress refused,
 * or could not take within its lifetime: the relay answered 250 for it, so its sender is told (RFC 5321
 * 6.1), with the refusal quoted. Runs in one transaction with nothing else; never for `<>`.
 */
export function bounceForwarded(
  deps: { store: QueueStore; router: ReportRouter; hostname: string; clock: Clock; logger: Logger },
  row: OutboundRow,
  answer: { code: number; text: string; remoteMta: string | null },
): void {
  const report = forwardBounce(deps, row, answer);
  if (!report) return;
  deps.store.transaction(() => deps.router.route(report));
  deps.logger.info("postmaster forward failed; its sender is told", { to: row.mailFrom, code: answer.code });
}

/** The canonical domain of `address` (for the outbound row and the hosted check), or null. */
export function addressDomain(address: string): string | null {
  const at = address.lastIndexOf("@");
  return at > 0 ? canonicalDomain(address.slice(at + 1)) : null;
}

/** The outbound row that forwards one postmaster message, with its sender's reverse-path. */
export function forwardedRow(
  row: { messageId: number; mailFrom: string; eightBit: boolean; smtputf8: boolean },
  address: string,
  domain: string,
  body: Uint8Array,
  lifetimeMs: number,
): NewOutbound {
  return {
    kind: "postmaster",
    mailFrom: row.mailFrom,
    rcpt: address,
    domain,
    body,
    eightBit: row.eightBit,
    smtputf8: row.smtputf8,
    lifetimeMs,
    aboutMessageId: row.messageId,
  };
}

/**
 * The DSN to the sender of a failed postmaster forward (see `bounceForwarded`), or null when none is
 * due: not a forward, or its sender is `<>` (RFC 3461 6.2).
 */
export function forwardBounce(
  deps: { hostname: string; clock: Clock },
  row: OutboundRow,
  answer: { code: number; text: string; remoteMta: string | null },
): Report | null {
  if (row.kind !== "postmaster" || row.mailFrom === "") return null;
  const permanent = answer.code >= 500;
  const composed = composeDsn({
    reportingMta: deps.hostname,
    messageId: reportMessageId(deps.clock),
    date: new Date(deps.clock.now()),
    message: { sender: row.mailFrom, arrivalDate: new Date(row.createdAt) },
    recipients: [
      permanent
        ? {
          cause: "customer-rejected",
          address: row.rcpt,
          reply: replyFromRecorded(answer.code, answer.text),
          ...(answer.remoteMta ? { remoteMta: answer.remoteMta } : {}),
        }
        : { cause: "expired", address: row.rcpt, lastReply: replyFromRecorded(answer.code, answer.text) },
    ],
    content: [row.body],
  });
  return {
    kind: "dsn",
    rcpt: row.mailFrom,
    bytes: composed.bytes,
    eightBit: composed.eightBit,
    smtputf8: composed.smtputf8,
    aboutMessageId: row.aboutMessageId,
  };
}
