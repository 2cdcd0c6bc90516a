/**
 * Notices to customers that mail is waiting uncollected, on the shared PostgreSQL queue: the rules of
 * src/queue/waiting_notices.ts. They run from the housekeeping round (one node at a time); the write is
 * guarded anyway: the notice commits only if `notified_at` still says no notice went within the
 * threshold, so two nodes cannot both tell the customer.
 *
 * @module
 */
import { noticeMayBeDue, waitingNotice, type WaitingNoticeDeps } from "../waiting_notices.ts";
import { type PgReportJobDeps, unlessDone } from "./pg_report_deps.ts";
import { domainsWithMail, oldestQueued, setNotified } from "./pg_report_store.ts";

/** What the notices need. */
export interface PgWaitingNoticeDeps
  extends PgReportJobDeps, Pick<WaitingNoticeDeps, "defaultAfterMs" | "lifetimeMs"> {}

/** Queues the notices that are due; resolves with how many. */
export async function pgSendWaitingNotices(deps: PgWaitingNoticeDeps): Promise<number> {
  const pool = deps.db.pool;
  const now = deps.clock.now();
  let sent = 0;
  for (const domain of await domainsWithMail(pool)) {
    if (!noticeMayBeDue(deps, domain, now)) continue;
    const { oldest, count } = await oldestQueued(pool, domain.name);
    const notice = waitingNotice(deps, domain, now, oldest, count);
    if (!notice) continue;
    const after = domain.notifyAfterMs ?? deps.defaultAfterMs;
    const routed = await unlessDone(deps, async (client, done) => {
      const routed = await deps.router.route(client, notice);
      // Another notice within the threshold (another node's): this one goes back.
      if (!(await setNotified(client, domain.name, now, now - after))) done();
      return routed;
    });
    if (!routed) continue;
    deps.logger.info("waiting notice queued", {
      domain: domain.name,
      to: domain.notifyAddress,
      waiting: count,
    });
    if (routed.where === "local" && routed.domain !== null) deps.onQueuedLocally?.(routed.domain);
    sent++;
  }
  return sent;
}
