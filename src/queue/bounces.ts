/**
 * The DSN step. Recipients that could not be delivered (status `failed`: a 5xx from the customer, a
 * local refusal, expiry, an operator's bounce) or were delivered with NOTIFY=SUCCESS to a customer
 * without DSN support (status `relayed`) are reported to the message's sender in ONE DSN per message
 * (RFC 3464, composed by src/dsn/), and then leave the queue: in one transaction the DSN is queued
 * (src/queue/report_router.ts) and the reported recipients are deleted, with the message and its body
 * when no recipient is left. No DSN is made for the null sender or when NOTIFY says not to (RFC 3461
 * 4.1); those recipients simply leave. A crash before the commit leaves everything pending for the next
 * run; after it, the DSN is durable: the sender is told exactly once (or, at worst, twice).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { type ComposedDsn, composeDsn } from "../dsn/compose.ts";
import { actionFor, needsDsn } from "../dsn/policy.ts";
import { replyFromRecorded } from "../dsn/remote.ts";
import type { DsnRecipient, DsnReply } from "../dsn/types.ts";
import { Code550NotTaken } from "../smtp/codes.ts";
import { type ReportJobDeps, reportMessageId } from "./report_deps.ts";
import type { Report, Routed } from "./report_router.ts";
import type { PendingRecipient, ReportedMessage } from "./report_store.ts";

/** What the DSN step needs. */
export interface BounceDeps extends ReportJobDeps {
  /** Largest original returned whole for RET=FULL. */
  maxFullBytes: number;
  /** A copy of each failure DSN goes here (dsnCopyToPostmaster), or null. */
  postmasterCopy: string | null;
  /** Told of each DSN queued and where it went (metrics). */
  onDsn?: (kind: "failure" | "relayed" | "delay", route: Routed) => void;
}

/** Messages handled per call; the caller calls again while there is more. */
export const DSN_BATCH = 50;

/**
 * Reports what is pending (at most one batch of messages) in ONE transaction (one fsync), each message
 * in its own savepoint so a failing one stays pending alone; returns how many messages were looked at.
 */
export function reportPendingDsns(deps: BounceDeps): number {
  const ids = deps.reports.pendingMessageIds(DSN_BATCH);
  if (ids.length === 0) return 0;
  const logs: (() => void)[] = [];
  deps.store.transaction(() => {
    for (const id of ids) {
      try {
        logs.push(deps.store.savepoint("dsn_one", () => reportMessage(deps, id)));
      } catch (error) {
        // This message stays pending and is tried again on the next run; the others go on.
        deps.logger.error("DSN step failed", { msgId: id, error: String(error) });
      }
    }
  });
  // Logged and counted only once the commit has made them true.
  for (const log of logs) log();
  return ids.length;
}

/** Queues one message's DSN and removes what it reports (inside the caller's transaction). */
function reportMessage(deps: BounceDeps, messageId: number): () => void {
  const { reports } = deps;
  const message = reports.message(messageId);
  const pending = reports.pendingRecipients(messageId);
  if (!message) {
    reports.finishReported(messageId);
    return () => {};
  }
  const facts = new Map<string, number | null>();
  const plan = planDsn(message, pending, (domain) => {
    if (!facts.has(domain)) facts.set(domain, reports.domain(domain)?.lastAtrnAt ?? null);
    return facts.get(domain) ?? null;
  });
  const composed = plan.reported.length > 0 ? compose(deps, message, plan.reported) : null;
  let where: Routed = "dropped";
  if (composed) {
    const [dsn, copy] = dsnReports(deps, message, composed, plan.failures);
    where = deps.router.route(dsn);
    if (copy) deps.router.route(copy);
  }
  reports.finishReported(messageId);
  return () => logReported(deps, message, plan, composed, where);
}

/** Which of a message's pending recipients its DSN reports, and whether any of them failed. */
export interface DsnPlan {
  reported: DsnRecipient[];
  failures: boolean;
  /** Recipients that leave without a DSN (null sender, NOTIFY). */
  silent: number;
}

/** Decides one message's DSN; `lastAtrnAt` gives a domain's last collection (for expired recipients). */
export function planDsn(
  message: ReportedMessage,
  pending: readonly PendingRecipient[],
  lastAtrnAt: (domain: string) => number | null,
): DsnPlan {
  const reported: DsnRecipient[] = [];
  for (const r of pending) {
    const at = lastAtrnAt(r.domain);
    const dsn = dsnRecipient(r, at === null ? null : new Date(at));
    // RFC 3461 4.1: no DSN to the null sender, none that NOTIFY does not ask for.
    if (needsDsn({ sender: message.mailFrom, notify: r.notify, action: actionFor(dsn.cause) })) {
      reported.push(dsn);
    }
  }
  const failures = reported.some((r) => actionFor(r.cause) === "failed");
  return { reported, failures, silent: pending.length - reported.length };
}

/** The DSN to the sender, and the copy to the postmaster when one is configured and something failed. */
export function dsnReports(
  deps: Pick<BounceDeps, "postmasterCopy">,
  message: ReportedMessage,
  composed: ComposedDsn,
  failures: boolean,
): [Report, ...Report[]] {
  const dsn = (rcpt: string, kind: "dsn" | "postmaster"): Report => ({
    kind,
    rcpt,
    bytes: composed.bytes,
    eightBit: composed.eightBit,
    smtputf8: composed.smtputf8,
    aboutMessageId: message.id,
  });
  const copy = deps.postmasterCopy && failures ? [dsn(deps.postmasterCopy, "postmaster")] : [];
  return [dsn(message.mailFrom, "dsn"), ...copy];
}

/** Logs and counts one reported message; called only once the commit has made it true. */
export function logReported(
  deps: Pick<BounceDeps, "logger" | "onDsn">,
  message: ReportedMessage,
  plan: DsnPlan,
  composed: ComposedDsn | null,
  where: Routed,
): void {
  if (composed) {
    deps.logger.info("dsn queued", {
      msgId: message.id,
      to: message.mailFrom,
      recipients: plan.reported.length,
      route: where,
      messageId: composed.messageId,
    });
    deps.onDsn?.(plan.failures ? "failure" : "relayed", where);
  }
  if (plan.silent > 0) {
    deps.logger.info("recipients left the queue without a DSN", {
      msgId: message.id,
      count: plan.silent,
      why: message.mailFrom === "" ? "null sender" : "NOTIFY",
    });
  }
}

/** Composes the DSN of one message; exported for the delay warnings, which report queued recipients. */
export function compose(
  deps: Pick<BounceDeps, "store" | "hostname" | "clock" | "maxFullBytes">,
  message: ReportedMessage,
  recipients: DsnRecipient[],
): ComposedDsn {
  return composeWith(deps, message, recipients, deps.store.readBody(message.id));
}

/** Composes the DSN of one message over its body (`content`, read by the caller's backend). */
export function composeWith(
  deps: { hostname: string; clock: Clock; maxFullBytes: number },
  message: ReportedMessage,
  recipients: DsnRecipient[],
  content: Iterable<Uint8Array>,
): ComposedDsn {
  return composeDsn({
    reportingMta: deps.hostname,
    messageId: reportMessageId(deps.clock),
    date: new Date(deps.clock.now()),
    message: {
      sender: message.mailFrom,
      arrivalDate: new Date(message.receivedAt),
      envid: message.envid,
      ret: message.ret,
      smtputf8: message.smtputf8,
      queueId: message.id,
    },
    recipients,
    content,
    maxFullBytes: deps.maxFullBytes,
    // A 7-bit DSN goes to any MX; an 8-bit one needs 8BITMIME there. Only an SMTPUTF8 message (whose
    // sender's server must speak SMTPUTF8 anyway) gets its 8-bit original back whole.
    fullOnlyIfSevenBit: !message.smtputf8,
  });
}

/** The DSN's view of a pending recipient. */
export function dsnRecipient(r: PendingRecipient, lastCollected: Date | null): DsnRecipient {
  const base = {
    address: r.address,
    orcpt: r.orcpt,
    ...(r.lastAttemptAt !== null ? { lastAttempt: new Date(r.lastAttemptAt) } : {}),
  };
  const reply = storedReply(r.lastCode, r.lastText);
  const remote = r.remoteMta ? { remoteMta: r.remoteMta } : {};
  if (r.status === "relayed") return { ...base, cause: "relayed", ...(reply ? { reply } : {}), ...remote };
  switch (r.failureKind) {
    case "local-refusal":
      return { ...base, cause: "local-refusal", text: r.lastText ?? "5.0.0 Refused by the relay" };
    case "expired":
      // A reply is only the customer's when delivery was attempted at all.
      return {
        ...base,
        cause: "expired",
        lastCollected,
        ...(reply && r.lastAttemptAt !== null ? { lastReply: reply, ...remote } : {}),
      };
    case "operator-bounce":
      return { ...base, cause: "operator-bounce", ...(r.lastText ? { reason: r.lastText } : {}) };
    default:
      return {
        ...base,
        cause: "customer-rejected",
        reply: reply ?? { code: r.lastCode ?? Code550NotTaken, lines: [r.lastText ?? "Refused"] },
        ...remote,
      };
  }
}

/** The recorded reply of a recipient, or null when there is none. */
export function storedReply(code: number | null, text: string | null): DsnReply | null {
  return code === null || text === null ? null : replyFromRecorded(code, text);
}
