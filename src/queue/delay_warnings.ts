/**
 * Delay warnings (RFC 3464 action "delayed"): when a queued recipient reaches a step of the schedule
 * `dsnDelayWarnings` (for example 24 h), its sender is told that the mail is still waiting, once per
 * step, when NOTIFY allows DELAY (RFC 3461 4.1: absent NOTIFY means FAILURE,DELAY), never for the null
 * sender. One warning per message covers all its recipients that reached the step in the same run.
 *
 * The scan is cheap: per domain and step, only recipients that crossed the step since the last run
 * (a durable watermark per step) are read, through the (domain, status, queued_at) index. Each
 * recipient keeps the largest step it was warned for (`delay_warnings`, an age), written in the same
 * transaction as the warning, so a warning goes at most once per step, across restarts and schedule
 * changes.
 *
 * @module
 */
import { needsDsn } from "../dsn/policy.ts";
import type { DsnRecipient } from "../dsn/types.ts";
import { compose, dsnReports, storedReply } from "./bounces.ts";
import type { ReportJobDeps } from "./report_deps.ts";
import type { Routed } from "./report_router.ts";
import type { DelayedRecipient, DomainFacts, ReportedMessage } from "./report_store.ts";

/** What the delay warnings need. */
export interface DelayWarningDeps extends ReportJobDeps {
  maxFullBytes: number;
  /** The schedule: queue ages in ms, increasing. */
  steps: readonly number[];
  /** The global queue lifetime (a domain's retention overrides it), for Will-Retry-Until. */
  lifetimeMs: number;
  onDsn?: (kind: "delay", route: Routed) => void;
}

/** Messages looked at per domain and step in one run; the rest waits for the next run. */
export const DELAY_BATCH = 1000;

/** Sends the delay warnings that are due; returns how many warnings were queued. */
export function sendDelayWarnings(deps: DelayWarningDeps): number {
  const { reports, store, clock } = deps;
  const now = clock.now();
  let sent = 0;
  const domains = new Map(reports.domainsWithMail().map((d) => [d.name, d]));
  // Latest step first: a recipient that crossed two steps since the last run gets one warning.
  for (const stepMs of [...deps.steps].sort((a, b) => b - a)) {
    // Keyed by the step's age, so a changed schedule keeps what was already done.
    const key = `delay-warning-${stepMs}`;
    const watermark = reports.state(key) ?? 0;
    const upTo = now - stepMs;
    let complete = true;
    const messageIds = new Set<number>();
    for (const domain of domains.values()) {
      const ids = reports.delayedMessageIds(domain.name, watermark, upTo, stepMs, DELAY_BATCH);
      if (ids.length === DELAY_BATCH) complete = false;
      for (const id of ids) messageIds.add(id);
    }
    // One warning per message, whatever domains its recipients are in.
    for (const messageId of messageIds) {
      const rows = reports.delayedRecipients(messageId, upTo, stepMs);
      if (rows.length > 0) sent += warn(deps, messageId, rows, stepMs, domains);
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
  stepMs: number,
  domains: ReadonlyMap<string, DomainFacts>,
): number {
  const message = deps.reports.message(messageId);
  if (!message) return 0;
  const recipients = delayedDsnRecipients(deps, message, rows, domains);
  const composed = recipients.length > 0 ? compose(deps, message, recipients) : null;
  let where: Routed = "dropped";
  deps.store.transaction(() => {
    if (composed) {
      where = deps.router.route(dsnReports({ postmasterCopy: null }, message, composed, false)[0]);
    }
    for (const r of rows) deps.reports.markWarned(r.id, stepMs);
  });
  if (!composed) return 0;
  logWarned(deps, message, recipients.length, where);
  return 1;
}

/**
 * The recipients of `rows` (a message's, due at one step) that its sender is warned about (RFC 3461
 * 4.1: NOTIFY allows DELAY; never the null sender), as the DSN shows them.
 */
export function delayedDsnRecipients(
  deps: Pick<DelayWarningDeps, "lifetimeMs">,
  message: ReportedMessage,
  rows: readonly DelayedRecipient[],
  domains: ReadonlyMap<string, DomainFacts>,
): DsnRecipient[] {
  const due = rows.filter((r) => needsDsn({ sender: message.mailFrom, notify: r.notify, action: "delayed" }));
  return due.map((r) => {
    const domain = domains.get(r.domain);
    const lifetimeMs = domain?.retentionMs ?? deps.lifetimeMs;
    const lastAtrn = domain?.lastAtrnAt ?? null;
    const reply = r.lastAttemptAt !== null ? storedReply(r.lastCode, r.lastText) : null;
    return {
      cause: "delayed",
      address: r.address,
      orcpt: r.orcpt,
      willRetryUntil: new Date(r.queuedAt + lifetimeMs),
      lastCollected: lastAtrn === null ? null : new Date(lastAtrn),
      ...(r.lastAttemptAt !== null ? { lastAttempt: new Date(r.lastAttemptAt) } : {}),
      ...(reply ? { lastReply: reply, ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}) } : {}),
    };
  });
}

/** Logs and counts one queued warning (after its commit). */
export function logWarned(
  deps: Pick<DelayWarningDeps, "logger" | "onDsn">,
  message: ReportedMessage,
  recipients: number,
  where: Routed,
): void {
  deps.logger.info("delay warning queued", { msgId: message.id, to: message.mailFrom, recipients });
  deps.onDsn?.("delay", where);
}
