/**
 * Where a report the relay writes itself goes, on the shared PostgreSQL queue: the same rules as the
 * SQLite router (src/queue/report_router.ts). To a recipient in a hosted domain it joins the main
 * queue, after the intake's RCPT verdict (routing syntax, mailboxes) and under its quota, checked on
 * the domain row locked `FOR UPDATE` (src/queue/pg/pg_enqueue.ts); to anyone else it goes on the
 * outbound table. Everything happens on the caller's transaction, so the report is committed
 * together with the change it reports, or not at all.
 *
 * @module
 */
import type pg from "pg";
import type { Logger } from "../../log/logger.ts";
import { QuotaExceededError } from "../enqueue.ts";
import {
  dropReport,
  localReport,
  outboundReport,
  type Report,
  reportDomain,
  type Routed,
} from "../report_router.ts";
import type { PgEnqueue } from "./pg_enqueue.ts";
import type { PgOutbound } from "./pg_outbound.ts";

/** Where a report went, and for "local" the hosted domain it waits in. */
export interface PgRouted {
  where: Routed;
  domain: string | null;
}

/** Routes reports on a caller's transaction; see the module documentation. */
export class PgReportRouter {
  constructor(
    readonly enqueue: PgEnqueue,
    readonly outbound: PgOutbound,
    readonly options: { hostname: string; lifetimeMs: number; logger: Logger },
  ) {}

  /**
   * Queues `report` from the null sender `<>` (RFC 3461 6.2) on `client`'s open transaction. A report
   * that joins the main queue is announced to every node at COMMIT (pg_notify, pg_enqueue.ts).
   */
  async route(client: pg.PoolClient, report: Report): Promise<PgRouted> {
    const { logger } = this.options;
    const domain = reportDomain(report.rcpt);
    if (domain === null) return { where: dropReport(logger, report, "no-domain"), domain: null };
    const localPart = report.rcpt.slice(0, report.rcpt.lastIndexOf("@"));
    // The same rules as the intake's RCPT: a DSN must not carry mail where a sender could not send it.
    const verdict = await this.enqueue.recipientVerdict(domain, localPart, report.bytes.length, client);
    if (verdict === "unknown-domain") {
      await this.outbound.add(client, outboundReport(report, domain, this.options.lifetimeMs));
      return { where: "outbound", domain };
    }
    if (verdict !== "accept") return { where: dropReport(logger, report, verdict), domain };
    const { message, body } = localReport(report, domain, this.options.hostname);
    await client.query("SAVEPOINT report_local");
    try {
      await this.enqueue.enqueueWith(client, message, body);
      await client.query("RELEASE SAVEPOINT report_local");
      return { where: "local", domain };
    } catch (error) {
      // A failed statement aborts the whole transaction unless rolled back to the savepoint.
      await client.query("ROLLBACK TO SAVEPOINT report_local; RELEASE SAVEPOINT report_local");
      if (!(error instanceof QuotaExceededError)) throw error;
      // The sender's own domain is full: like an undeliverable DSN, logged and dropped.
      return { where: dropReport(logger, report, "over-quota"), domain };
    }
  }
}
