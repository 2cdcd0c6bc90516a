/**
 * Delay warnings (RFC 3464 action "delayed"): when a queued recipient reaches a step of the schedule
 * `dsnDelayWarnings` (for example 24 h), its sender is told that the mail is still waiting, once per
 * step, when NOTIFY allows DELAY (RFC 3461 4.1: absent NOTIFY means FAILURE,DELAY), never for the null
 * sender. One warning per message covers all its recipients that reached the step in the same run.
 *
 * The scan is cheap: per domain and step, only recipients that crossed the step since the last run
 * (a durable watermark per step) are read, through the (domain, status, queued_at) index. The
 * `delay_warnings` count on each recipient, written in the same transaction as the warning, makes a
 * warning go at most once per step even across restarts.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { needsDsn } from "../dsn/policy.ts";
import type { DsnRecipient } from "../dsn/types.ts";
import type { Logger } from "../log/logger.ts";
import { compose, storedReply } from "./bounces.ts";
import type { DelayedRecipient, ReportStore } from "./report_store.ts";
import type { ReportRouter, Routed } from "./report_router.ts";
import type { QueueStore } from "./store.ts";

/** What the delay warnings need. */
export interface DelayWarningDeps {
  store: QueueStore;
  reports: ReportStore;
  router: ReportRouter;
  hostname: string;
  clock: Clock;
  logger: Logger;
  maxFullBytes: number;
  /** The schedule: queue ages in ms, increasing. */
  steps: readonly number[];
  /** The global queue lifetime (a domain's retention overrides it), for Will-Retry-Until. */
  lifetimeMs: number;
  onDsn?: (kind: "delay", route: Routed) => void;
}

/** Recipients read per domain and step in one run. */
const BATCH = 1000;

/** Sends the delay warnings that are due; returns how many warnings were queued. */
export function sendDelayWarnings(deps: DelayWarningDeps): number {
  const { reports, store, clock } = deps;
  const now = clock.now();
  let sent = 0;
  // Latest step first: a recipient that crossed two steps since the last run gets one warning.
  for (let step = deps.steps.length - 1; step >= 0; step--) {
    const key = `delay-warning-${step}`;
    const watermark = reports.state(key) ?? 0;
    const upTo = now - deps.steps[step]!;
    let complete = true;
    for (const domain of reports.domainsWithMail()) {
      const rows = reports.delayedRecipients(domain.name, watermark, upTo, step + 1, BATCH);
      if (rows.length === BATCH) complete = false;
      const lifetime = domain.retentionMs ?? deps.lifetimeMs;
      const collected = domain.lastAtrnAt === null ? null : new Date(domain.lastAtrnAt);
      for (const [messageId, group] of byMessage(rows)) {
        sent += warn(deps, messageId, group, step + 1, lifetime, collected);
      }
    }
    // A domain with more than one batch is finished on the next run (the watermark waits for it).
    if (complete && upTo > watermark) store.transaction(() => reports.setState(key, upTo));
  }
  return sent;
}

function warn(
  deps: DelayWarningDeps,
  messageId: number,
  rows: DelayedRecipient[],
  warnings: number,
  lifetimeMs: number,
  lastCollected: Date | null,
): number {
  const message = deps.reports.message(messageId);
  if (!message) return 0;
  const due = rows.filter((r) => needsDsn({ sender: message.mailFrom, notify: r.notify, action: "delayed" }));
  const recipients: DsnRecipient[] = due.map((r) => {
    const reply = r.lastAttemptAt !== null ? storedReply(r.lastCode, r.lastText) : null;
    return {
      cause: "delayed",
      address: r.address,
      orcpt: r.orcpt,
      willRetryUntil: new Date(r.queuedAt + lifetimeMs),
      lastCollected,
      ...(r.lastAttemptAt !== null ? { lastAttempt: new Date(r.lastAttemptAt) } : {}),
      ...(reply ? { lastReply: reply, ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}) } : {}),
    };
  });
  const composed = recipients.length > 0 ? compose(deps, message, recipients) : null;
  let where: Routed = "dropped";
  deps.store.transaction(() => {
    if (composed) {
      where = deps.router.route({
        kind: "dsn",
        rcpt: message.mailFrom,
        bytes: composed.bytes,
        eightBit: composed.eightBit,
        smtputf8: composed.smtputf8,
        aboutMessageId: messageId,
      });
    }
    for (const r of rows) deps.reports.markWarned(r.id, warnings);
  });
  if (!composed) return 0;
  deps.logger.info("delay warning queued", {
    msgId: messageId,
    to: message.mailFrom,
    recipients: due.length,
  });
  deps.onDsn?.("delay", where);
  return 1;
}

function byMessage(rows: DelayedRecipient[]): Map<number, DelayedRecipient[]> {
  const out = new Map<number, DelayedRecipient[]>();
  for (const r of rows) {
    const list = out.get(r.messageId);
    if (list) list.push(r);
    else out.set(r.messageId, [r]);
  }
  return out;
}
