/**
 * What every reporting job (the DSN step, delay warnings, customer notices, bounced postmaster forwards)
 * works with, and the one way they name the messages they write.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log/logger.ts";
import type { ReportRouter } from "./report_router.ts";
import type { ReportStore } from "./report_store.ts";
import type { QueueStore } from "./store.ts";

/** The queue, the reporting rows, where reports go, and who writes them. */
export interface ReportJobDeps {
  store: QueueStore;
  reports: ReportStore;
  router: ReportRouter;
  /** Our host name: Reporting-MTA, From: MAILER-DAEMON@, the Message-ID's right-hand side. */
  hostname: string;
  clock: Clock;
  logger: Logger;
}

/** A unique Message-ID left-hand side for a report (time, then 48 random bits). */
export function reportMessageId(clock: Clock): string {
  return `${clock.now().toString(36)}.${randomBytes(6).toString("hex")}`;
}
