/**
 * Drains the queue for the granted domains over a connection handed over by the ODMR server after the
 * ATRN turn (RFC 2645 4; DESIGN.md 6).
 *
 * Order of events: wait for the customer's greeting, EHLO, then page through the queue by message id
 * (keyset pagination) and send each message, recording its outcomes IMMEDIATELY after the end-of-data
 * reply (a recipient is removed only after a 2xx to the final dot). When a page comes back empty the
 * queue has been looked at again, so mail that arrived during the session has gone out too; deferred
 * recipients are not retried in the same session (their message id is behind the cursor). Then QUIT.
 *
 * Any connection loss, timeout (RFC 5321 4.5.3.2 per command, `atrnSessionTimeout` overall) or protocol
 * violation ends the session: the in-flight message's unconfirmed recipients are recorded deferred with a
 * 4.4.2-style note and stay queued; messages not yet attempted are not touched at all.
 *
 * @module
 */

import type { Config } from "../config/fields.ts";
import type { Logger } from "../log/logger.ts";
import type { LineConnection } from "../net/line_connection.ts";
import type { QueueStore } from "../queue/store.ts";
import { type AbortKind, DeliveryAbort } from "./errors.ts";
import { type ClientTimeouts, SmtpClient } from "./smtp_client.ts";

/** The configuration fields the delivery session reads (all durations in milliseconds). */
export type DeliveryConfig = Pick<
  Config,
  | "atrnGreetingTimeout"
  | "atrnCommandTimeout"
  | "atrnDataInitTimeout"
  | "atrnDataBlockTimeout"
  | "atrnDataTermTimeout"
  | "atrnSessionTimeout"
  | "atrnPipelining"
>;

/** Options of {@linkcode deliverQueued}. */
export interface DeliverOptions {
  /** The turned connection (same socket and read buffer as the ODMR session). */
  conn: LineConnection;
  /** The queue. */
  store: QueueStore;
  /** Granted domains, lower-case (only their recipients are sent). */
  domains: readonly string[];
  /** Our name for EHLO (an address literal is used when it is empty). */
  hostname: string;
  /** Timeouts and the pipelining policy. */
  config: DeliveryConfig;
  /** Logger (a child with the connection id is a good choice). */
  logger?: Logger;
  /** Wall clock in ms, for the session's start/end times in the result. Default `Date.now`. */
  now?: () => number;
  /** Aborting ends the session at once (shutdown); unconfirmed recipients stay queued. */
  signal?: AbortSignal;
  /** Messages fetched per queue page. Default 50. */
  pageSize?: number;
  /** Caps on reply size; defaults 100 lines of 512 octets. */
  maxReplyLines?: number;
  /** Longest reply line in octets including CRLF. Default 512. */
  maxReplyLineLength?: number;
  /** Most RCPTs per transaction. Default 100. */
  maxRecipientsPerTransaction?: number;
}

/** How the session ended: `completed` after QUIT, otherwise why it stopped early. */
export type DeliveryOutcome = "completed" | AbortKind;

/** Counts for the ATRN session record. */
export interface DeliverResult {
  /** Recipients delivered (removed from the queue). */
  delivered: number;
  /** Recipients attempted and left queued (4xx, lost connection, timeout). */
  deferred: number;
  /** Recipients failed (5xx or refused locally); they wait for their DSN. */
  failed: number;
  /** Messages attempted. */
  messages: number;
  /** `completed`, or the kind of problem that ended the session. */
  outcome: DeliveryOutcome;
  /** Human-readable reason when the session ended early (also recorded on deferred recipients). */
  detail: string | null;
  /** Whether PIPELINING was used, and why. */
  pipelining: boolean;
  /** The reason for the pipelining decision. */
  pipeliningReason: string;
  /** Start and end of the session (from `now`). */
  startedAt: number;
  /** End of the session. */
  endedAt: number;
}

/** Client timeouts from the config fields (RFC 5321 4.5.3.2). */
export function clientTimeouts(config: DeliveryConfig): ClientTimeouts {
  return {
    greetingMs: config.atrnGreetingTimeout,
    commandMs: config.atrnCommandTimeout,
    dataInitMs: config.atrnDataInitTimeout,
    dataBlockMs: config.atrnDataBlockTimeout,
    dataTermMs: config.atrnDataTermTimeout,
  };
}

/**
 * Delivers queued mail for `domains` over the handed connection and returns the counts. Never throws for
 * anything the customer does; the connection is closed when it returns.
 */
export async function deliverQueued(options: DeliverOptions): Promise<DeliverResult> {
  const { conn, store, domains, config } = options;
  const now = options.now ?? Date.now;
  const log = options.logger;
  const startedAt = now();
  const clientOptions: ConstructorParameters<typeof SmtpClient>[1] = {
    timeouts: clientTimeouts(config),
    pipelining: config.atrnPipelining,
  };
  if (log !== undefined) clientOptions.logger = log;
  if (options.maxReplyLines !== undefined) clientOptions.maxReplyLines = options.maxReplyLines;
  if (options.maxReplyLineLength !== undefined) clientOptions.maxReplyLineLength = options.maxReplyLineLength;
  if (options.maxRecipientsPerTransaction !== undefined) {
    clientOptions.maxRecipientsPerTransaction = options.maxRecipientsPerTransaction;
  }
  const client = new SmtpClient(conn, clientOptions);

  const counts = { delivered: 0, deferred: 0, failed: 0, messages: 0 };
  // The overall session limit and cancellation destroy the connection; the pending read then fails with
  // the abort's text, so the in-flight message is deferred with it.
  const timer = setTimeout(() => {
    client.abort(
      new DeliveryAbort("timeout", `4.4.2 Session time limit of ${config.atrnSessionTimeout} ms reached`),
    );
  }, config.atrnSessionTimeout);
  const onCancel = (): void =>
    client.abort(new DeliveryAbort("cancelled", "4.3.2 Delivery session cancelled"));
  if (options.signal?.aborted) onCancel();
  else options.signal?.addEventListener("abort", onCancel, { once: true });

  let abort: DeliveryAbort | null = null;
  try {
    await client.readGreeting();
    await client.hello(options.hostname);
    let afterId = 0;
    pages: for (;;) {
      // Keyset pagination: each page starts after the last message attempted, so a deferred message is not
      // tried twice and mail that arrived meanwhile (higher ids) is found by the next look.
      const page = store.nextDeliverable(domains, afterId, options.pageSize ?? 50);
      if (page.length === 0) break;
      for (const message of page) {
        if (!client.usable) {
          // Closed between messages (customer hung up, session limit): nothing more is attempted.
          abort = client.abortReason ?? new DeliveryAbort("lost", "4.4.2 Connection closed by the customer");
          break pages;
        }
        afterId = message.id;
        counts.messages++;
        const result = await client.sendMessage(message, () => store.readBody(message.id));
        // Recorded right after the end-of-data reply (DESIGN 6): a crash after this point loses nothing.
        store.recordOutcomes(message.id, result.outcomes);
        counts.delivered += result.delivered;
        counts.deferred += result.deferred;
        counts.failed += result.failed;
        log?.info("message attempted", {
          msgId: message.id,
          delivered: result.delivered,
          deferred: result.deferred,
          failed: result.failed,
        });
        if (result.abort !== null) {
          abort = result.abort;
          break pages;
        }
      }
    }
    if (abort === null) await client.quit();
  } catch (err) {
    abort = err instanceof DeliveryAbort ? err : client.abortReason ??
      new DeliveryAbort("local", `4.3.0 Local error: ${err instanceof Error ? err.message : String(err)}`);
    if (!(err instanceof DeliveryAbort)) {
      log?.error("delivery session failed", {
        error: err instanceof Error ? err.stack ?? err.message : String(err),
      });
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onCancel);
    // A refusing customer was already sent QUIT and closed politely; every other abort drops the link.
    if (abort !== null && abort.kind !== "refused") conn.destroy();
  }

  return {
    ...counts,
    outcome: abort === null ? "completed" : abort.kind,
    detail: abort === null ? null : abort.text,
    pipelining: client.pipelining,
    pipeliningReason: client.pipeliningDecision.reason,
    startedAt,
    endedAt: now(),
  };
}
