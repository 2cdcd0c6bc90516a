/**
 * Where a report the relay writes itself (a DSN, a notice, a postmaster copy) goes: to a recipient in
 * a hosted domain it joins the main queue and waits for that customer's ATRN like any other mail (its
 * MX is this relay); to anyone else it goes on the outbound queue. Runs inside the caller's
 * transaction, so the report is committed together with the change it reports.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Logger } from "../log/logger.ts";
import { isAddressLiteral } from "../smtp/domain.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import type { BodySource, IncomingMessage, RecipientVerdict } from "./enqueue.ts";
import type { NewOutbound, OutboundKind, OutboundQueue } from "./outbound_queue.ts";
import { type QueueStore, QuotaExceededError } from "./store.ts";

/** A report ready to be queued. */
export interface Report {
  kind: OutboundKind;
  /** The envelope recipient. */
  rcpt: string;
  bytes: Uint8Array;
  eightBit: boolean;
  smtputf8: boolean;
  aboutMessageId?: number | null;
}

/** Where a report went. */
export type Routed = "local" | "outbound" | "dropped";

/** Routes reports; see the module documentation. */
export class ReportRouter {
  constructor(
    readonly store: QueueStore,
    readonly outbound: OutboundQueue,
    readonly options: {
      hostname: string;
      lifetimeMs: number;
      clock: Clock;
      logger: Logger;
      /** A report joined the main queue for `domain` (wakes a watching session). */
      onQueuedLocally?: (domain: string) => void;
    },
  ) {}

  /** Queues `report` from the null sender `<>` (RFC 3461 6.2); call inside a transaction. */
  route(report: Report): Routed {
    const { logger } = this.options;
    const domain = reportDomain(report.rcpt);
    if (domain === null) return dropReport(logger, report, "no-domain");
    if (this.store.hasDomain(domain)) {
      // The same rules as the intake's RCPT: no routing syntax, only listed mailboxes, the quota. A DSN
      // must not carry mail where a sender could not send it directly.
      const localPart = report.rcpt.slice(0, report.rcpt.lastIndexOf("@"));
      const verdict = this.store.recipientVerdict(domain, localPart, report.bytes.length);
      if (verdict !== "accept") return dropReport(logger, report, verdict);
      try {
        const { message, body } = localReport(report, domain, this.options.hostname);
        this.store.enqueueInTransaction(message, body);
        // Called inside the transaction; the woken session looks only after it has committed (the
        // event loop runs nothing else until then).
        this.options.onQueuedLocally?.(domain);
        return "local";
      } catch (error) {
        if (!(error instanceof QuotaExceededError)) throw error;
        return dropReport(logger, report, "over-quota");
      }
    }
    this.outbound.add(outboundReport(report, domain, this.options.lifetimeMs));
    return "outbound";
  }
}

/** The domain a report goes to: an address literal (RFC 5321 4.1.3) as is, a name in A-label form. */
export function reportDomain(rcpt: string): string | null {
  const at = rcpt.lastIndexOf("@");
  const given = at > 0 ? rcpt.slice(at + 1) : "";
  return isAddressLiteral(given) ? given : canonicalDomain(given);
}

/** A report as a message of the main queue, from `<>`, for its one hosted recipient. */
export function localReport(
  report: Report,
  domain: string,
  hostname: string,
): { message: IncomingMessage; body: BodySource } {
  return {
    message: {
      mailFrom: "",
      clientIp: "127.0.0.1",
      clientHelo: hostname,
      tls: false,
      bodyType: report.eightBit ? "8BITMIME" : null,
      smtputf8: report.smtputf8,
      envid: null,
      ret: null,
      recipients: [{ address: report.rcpt, domain, notify: null, orcpt: null }],
    },
    body: { size: report.bytes.length, eightBit: report.eightBit, chunks: () => [report.bytes] },
  };
}

/** A report as an outbound row, from `<>` (RFC 3461 6.2). */
export function outboundReport(report: Report, domain: string, lifetimeMs: number): NewOutbound {
  return {
    kind: report.kind,
    mailFrom: "",
    rcpt: report.rcpt,
    domain,
    body: report.bytes,
    eightBit: report.eightBit,
    smtputf8: report.smtputf8,
    lifetimeMs,
    aboutMessageId: report.aboutMessageId ?? null,
  };
}

/**
 * Logs why a report is dropped: no usable domain, or a hosted recipient that would refuse it (like an
 * undeliverable DSN, it is not reported on).
 */
export function dropReport(
  logger: Logger,
  report: Report,
  why: Exclude<RecipientVerdict, "accept"> | "no-domain",
): "dropped" {
  if (why === "no-domain") {
    logger.warn("report dropped: recipient has no usable domain", { to: report.rcpt });
  } else if (why === "over-quota") {
    // The sender's own domain is full.
    logger.warn("report dropped: the recipient's domain is over its quota", { to: report.rcpt });
  } else {
    logger.warn("report dropped: the hosted recipient does not accept it", { to: report.rcpt, why });
  }
  return "dropped";
}
