/**
 * Connects the ODMR turn (server side) to the SMTP client (src/client/): after `250 OK now
 * reversing the connection`, the same connection is handed to `deliverQueued`, which waits for
 * the customer's 220 and delivers the granted domains' mail (RFC 2645 5.2.1).
 */
import type { Config } from "../config/fields.ts";
import { deliverQueued } from "../client/deliver_session.ts";
import type { Logger } from "../log/logger.ts";
import type { DeliveryQueue } from "../client/deliver_session.ts";
import type { Deliver } from "./odmr.ts";
import type { WatchSessions } from "./watch_sessions.ts";

/** Builds the delivery function the ODMR protocol calls at the turn. */
export function makeDeliver(deps: {
  config: Config;
  store: DeliveryQueue;
  logger: Logger;
  /** Push delivery (`pull --watch`); absent: every session ends once the queue is drained. */
  watch?: WatchSessions;
  /** Outcomes were recorded (the DSN step may have work). */
  afterRecord?: () => void;
}): Deliver {
  return async (conn, domains, logger, session) => {
    const watch = deps.watch?.optionsFor(session, domains);
    const result = await deliverQueued({
      conn,
      store: deps.store,
      domains,
      hostname: deps.config.hostname,
      config: deps.config,
      ...(watch ? { watch } : { renewLease: () => session.renewLease() }),
      ...(deps.afterRecord ? { afterRecord: deps.afterRecord } : {}),
      logger,
    });
    logger.info("delivery", {
      messages: result.messages,
      pipelining: result.pipelining,
      pipeliningReason: result.pipeliningReason,
      outcome: result.outcome,
    });
    return {
      delivered: result.delivered,
      deferred: result.deferred,
      failed: result.failed,
      outcome: result.outcome === "completed" ? "turned" : "error",
      detail: result.outcome === "completed" ? null : `${result.outcome}: ${result.detail ?? ""}`.trim(),
    };
  };
}
