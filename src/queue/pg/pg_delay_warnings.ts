/**
 * Delay warnings (RFC 3464 action "delayed") on the shared PostgreSQL queue: the schedule, scan and
 * rules of src/queue/delay_warnings.ts. They run from the housekeeping round, which one node of the
 * cluster runs at a time; the writes are guarded anyway: a warning is committed only together with
 * marking its recipients (`delay_warnings < step`), so if another node marked them first the warning
 * is rolled back, and the per-step watermark only moves forward.
 *
 * @module
 */
import { DEFAULT_MAX_HEADER_BYTES } from "../../dsn/compose.ts";
import { composeWith, dsnReports } from "../bounces.ts";
import { DELAY_BATCH, delayedDsnRecipients, type DelayWarningDeps, logWarned } from "../delay_warnings.ts";
import type { DelayedRecipient, DomainFacts } from "../report_store.ts";
import { type PgReportJobDeps, unlessDone } from "./pg_report_deps.ts";
import {
  delayedMessageIds,
  delayedRecipients,
  domainsWithMail,
  jobState,
  markWarned,
  readBodyOn,
  reportedMessage,
  setJobState,
} from "./pg_report_store.ts";

/** What the delay warnings need. */
export interface PgDelayWarningDeps
  extends PgReportJobDeps, Pick<DelayWarningDeps, "maxFullBytes" | "steps" | "lifetimeMs" | "onDsn"> {}

/** Sends the delay warnings that are due; resolves with how many warnings were queued. */
export async function pgSendDelayWarnings(deps: PgDelayWarningDeps): Promise<number> {
  const pool = deps.db.pool;
  const now = deps.clock.now();
  let sent = 0;
  const domains = new Map((await domainsWithMail(pool)).map((d) => [d.name, d]));
  // Latest step first: a recipient that crossed two steps since the last run gets one warning.
  for (const stepMs of [...deps.steps].sort((a, b) => b - a)) {
    // Keyed by the step's age, so a changed schedule keeps what was already done.
    const key = `delay-warning-${stepMs}`;
    const watermark = (await jobState(pool, key)) ?? 0;
    const upTo = now - stepMs;
    let complete = true;
    const messageIds = new Set<number>();
    for (const domain of domains.values()) {
      const ids = await delayedMessageIds(pool, domain.name, watermark, upTo, stepMs, DELAY_BATCH);
      if (ids.length === DELAY_BATCH) complete = false;
      for (const id of ids) messageIds.add(id);
    }
    // One warning per message, whatever domains its recipients are in.
    for (const messageId of messageIds) {
      const rows = await delayedRecipients(pool, messageId, upTo, stepMs);
      if (rows.length === 0) continue;
      const result = await warn(deps, messageId, rows, stepMs, domains);
      if (result === "sent") sent++;
      // Its recipients changed under the warning (one was delivered meanwhile): the watermark stays,
      // so the next run warns the ones still waiting instead of passing them by.
      if (result === "retry") complete = false;
    }
    // A domain with more than one batch is finished on the next run (the watermark waits for it).
    if (complete && upTo > watermark) await setJobState(pool, key, upTo);
  }
  return sent;
}

async function warn(
  deps: PgDelayWarningDeps,
  messageId: number,
  rows: DelayedRecipient[],
  stepMs: number,
  domains: ReadonlyMap<string, DomainFacts>,
): Promise<"sent" | "none" | "retry"> {
  const message = await reportedMessage(deps.db.pool, messageId);
  if (!message) return "none";
  const recipients = delayedDsnRecipients(deps, message, rows, domains);
  const routed = await unlessDone(deps, async (client, done) => {
    let where = null;
    if (recipients.length > 0) {
      const content = await readBodyOn(
        client,
        messageId,
        Math.max(deps.maxFullBytes, DEFAULT_MAX_HEADER_BYTES),
      );
      const composed = composeWith(deps, message, recipients, content);
      where = await deps.router.route(
        client,
        dsnReports({ postmasterCopy: null }, message, composed, false)[0],
      );
    }
    // Routed first, marked after: the domain row (if any) is locked before recipient rows, as a
    // delivery locks them. Fewer marked than read: another node warned them; this warning goes back.
    const marked = await markWarned(client, rows.map((r) => r.id), stepMs);
    if (marked.length < rows.length) done();
    return { where };
  });
  if (!routed) return "retry";
  if (!routed.where) return "none";
  logWarned(deps, message, recipients.length, routed.where.where);
  if (routed.where.where === "local" && routed.where.domain !== null) {
    deps.onQueuedLocally?.(routed.where.domain);
  }
  return "sent";
}
