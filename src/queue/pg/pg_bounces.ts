/**
 * The DSN step on the shared PostgreSQL queue: the same reports as SQLite's (src/queue/bounces.ts, one
 * DSN per message, RFC 3464; none for `<>` or when NOTIFY says not to, RFC 3461 4.1), made safe for
 * several nodes running it at once. Each message is one transaction: the message row is locked with
 * `FOR UPDATE SKIP LOCKED` (a message another node is reporting is skipped, never reported twice),
 * its non-queued recipients are read under that lock, the DSN is composed and routed
 * (src/queue/pg/pg_report_router.ts), and exactly those recipients are deleted, with the message when
 * none is left. A crash before COMMIT leaves everything pending for the next run.
 *
 * Lock order: the message row, then (routing a DSN to a hosted sender) that domain's row, then the
 * deletions, and at COMMIT, through the counter triggers (deferred), `queue_totals`. The
 * intake and the delivery also take a domain row before `queue_totals`, so no cycle forms; a delivery
 * never waits for the message row, since it deletes only messages without recipients, and this one
 * still has the recipients being reported.
 *
 * @module
 */
import { DEFAULT_MAX_HEADER_BYTES } from "../../dsn/compose.ts";
import { composeWith, DSN_BATCH, dsnReports, logReported } from "../bounces.ts";
import type { BounceDeps } from "../bounces.ts";
import { planDsn } from "../bounces.ts";
import type { Routed } from "../report_router.ts";
import type { PgReportJobDeps } from "./pg_report_deps.ts";
import {
  domainFacts,
  finishReported,
  lockMessage,
  pendingMessageIds,
  pendingRecipients,
  readBodyOn,
} from "./pg_report_store.ts";

/** What the DSN step needs. */
export interface PgBounceDeps
  extends PgReportJobDeps, Pick<BounceDeps, "maxFullBytes" | "postmasterCopy" | "onDsn"> {}

/**
 * Reports up to one batch of pending messages, each in its own transaction; resolves with how many
 * messages it looked at, as on SQLite: a full batch tells `Reporting` that more may be pending, even
 * when some were skipped (locked by another node, or failing on their own).
 */
export async function pgReportPendingDsns(deps: PgBounceDeps): Promise<number> {
  const ids = await pendingMessageIds(deps.db.pool, DSN_BATCH);
  for (const id of ids) {
    try {
      await reportMessage(deps, id);
    } catch (error) {
      // This message stays pending and is tried again on the next run; the others go on.
      deps.logger.error("DSN step failed", { msgId: id, error: String(error) });
    }
  }
  return ids.length;
}

/** One message's DSN and the removal of what it reports, in one transaction; false when skipped. */
async function reportMessage(deps: PgBounceDeps, messageId: number): Promise<boolean> {
  const result = await deps.db.transaction(async (client) => {
    const message = await lockMessage(client, messageId);
    // Gone, or another node holds it: that node reports it.
    if (!message) return null;
    const pending = await pendingRecipients(client, messageId);
    if (pending.length === 0) return null;
    const lastAtrn = new Map<string, number | null>();
    for (const domain of new Set(pending.map((r) => r.domain))) {
      lastAtrn.set(domain, (await domainFacts(client, domain))?.lastAtrnAt ?? null);
    }
    const plan = planDsn(message, pending, (domain) => lastAtrn.get(domain) ?? null);
    let composed = null;
    let where: Routed = "dropped";
    const local: string[] = [];
    if (plan.reported.length > 0) {
      // The composer stops after the header section, or after maxFullBytes for RET=FULL.
      const content = await readBodyOn(
        client,
        messageId,
        Math.max(deps.maxFullBytes, DEFAULT_MAX_HEADER_BYTES),
      );
      composed = composeWith(deps, message, plan.reported, content);
      const reports = dsnReports(deps, message, composed, plan.failures);
      for (const [i, report] of reports.entries()) {
        const routed = await deps.router.route(client, report);
        if (i === 0) where = routed.where;
        if (routed.where === "local" && routed.domain !== null) local.push(routed.domain);
      }
    }
    // Only the recipients read under the lock: one that failed since waits for its own DSN.
    await finishReported(client, messageId, pending.map((r) => r.id));
    return { message, plan, composed, where, local };
  });
  if (!result) return false;
  // Logged and counted only once the commit has made them true.
  logReported(deps, result.message, result.plan, result.composed, result.where);
  for (const domain of result.local) deps.onQueuedLocally?.(domain);
  return true;
}
