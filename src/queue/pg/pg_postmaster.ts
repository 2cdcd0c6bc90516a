/**
 * The relay's own postmaster mailbox on the shared PostgreSQL queue (src/queue/postmaster.ts): mail
 * for an outside `postmasterAddress` is moved to the outbound table, each message in one transaction
 * with its removal, and a forward the outside address refused is reported to its sender. The
 * forwarding runs from the housekeeping round (one node at a time); each recipient is taken under a
 * `FOR UPDATE SKIP LOCKED` lock anyway, so no message is forwarded twice.
 *
 * @module
 */
import type { Logger } from "../../log/logger.ts";
import type { OutboundRow } from "../outbound_queue.ts";
import { addressDomain, forwardBounce, forwardedRow, MAX_FORWARDED_BYTES } from "../postmaster.ts";
import { concat } from "../spool.ts";
import type { PostgresDatabase } from "./database.ts";
import type { PgOutbound } from "./pg_outbound.ts";
import { type PgReportJobDeps, unlessDone } from "./pg_report_deps.ts";
import {
  domainFacts,
  lockPostmaster,
  postmasterWaiting,
  readBodyOn,
  removePostmaster,
} from "./pg_report_store.ts";

/** Moves the postmaster mailbox to the outbound table for `address`; resolves with how many moved. */
export async function pgForwardPostmasterMail(
  deps: { db: PostgresDatabase; outbound: PgOutbound; lifetimeMs: number; logger: Logger },
  address: string,
): Promise<number> {
  const domain = addressDomain(address);
  if (domain === null || (await domainFacts(deps.db.pool, domain)) !== null) return 0;
  let moved = 0;
  for (const row of await postmasterWaiting(deps.db.pool, 50)) {
    if (row.size > MAX_FORWARDED_BYTES) continue;
    const forwarded = await unlessDone(deps, async (client, done) => {
      // Locked first: gone, or being forwarded by another node, means nothing to do here.
      if (!(await lockPostmaster(client, row.id))) done();
      const body = concat(await readBodyOn(client, row.messageId, Infinity));
      await deps.outbound.add(client, forwardedRow(row, address, domain, body, deps.lifetimeMs));
      await removePostmaster(client, row);
      return true;
    });
    if (!forwarded) continue;
    deps.logger.info("postmaster mail forwarded", { msgId: row.messageId, to: address });
    moved++;
  }
  return moved;
}

/**
 * A forward with its sender's reverse-path that the outside address refused, or could not take within
 * its lifetime: its sender is told (RFC 5321 6.1), in one transaction; never for `<>`.
 */
export async function pgBounceForwarded(
  deps: PgReportJobDeps,
  row: OutboundRow,
  answer: { code: number; text: string; remoteMta: string | null },
): Promise<void> {
  const report = forwardBounce(deps, row, answer);
  if (!report) return;
  const routed = await deps.db.transaction((client) => deps.router.route(client, report));
  deps.logger.info("postmaster forward failed; its sender is told", { to: row.mailFrom, code: answer.code });
  if (routed.where === "local" && routed.domain !== null) deps.onQueuedLocally?.(routed.domain);
}
