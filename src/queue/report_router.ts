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
import type { OutboundKind, OutboundQueue } from "./outbound_queue.ts";
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
    const at = report.rcpt.lastIndexOf("@");
    const given = at > 0 ? report.rcpt.slice(at + 1) : "";
    // An address literal (RFC 5321 4.1.3) is delivered to directly; a name in its A-label form.
    const domain = isAddressLiteral(given) ? given : canonicalDomain(given);
    if (domain === null) {
      this.options.logger.warn("report dropped: recipient has no usable domain", { to: report.rcpt });
      return "dropped";
    }
    if (this.store.hasDomain(domain)) {
      // The same rules as the intake's RCPT: no routing syntax, only listed mailboxes, the quota. A DSN
      // must not carry mail where a sender could not send it directly.
      const verdict = this.store.recipientVerdict(domain, report.rcpt.slice(0, at), report.bytes.length);
      if (verdict !== "accept") {
        this.options.logger.warn("report dropped: the hosted recipient does not accept it", {
          to: report.rcpt,
          why: verdict,
        });
        return "dropped";
      }
      try {
        this.store.enqueueInTransaction({
          mailFrom: "",
          clientIp: "127.0.0.1",
          clientHelo: this.options.hostname,
          tls: false,
          bodyType: report.eightBit ? "8BITMIME" : null,
          smtputf8: report.smtputf8,
          envid: null,
          ret: null,
          recipients: [{ address: report.rcpt, domain, notify: null, orcpt: null }],
        }, { size: report.bytes.length, eightBit: report.eightBit, chunks: () => [report.bytes] });
        // Called inside the transaction; the woken session looks only after it has committed (the
        // event loop runs nothing else until then).
        this.options.onQueuedLocally?.(domain);
        return "local";
      } catch (error) {
        if (!(error instanceof QuotaExceededError)) throw error;
        // The sender's own domain is full: like an undeliverable DSN, logged and dropped.
        this.options.logger.warn("report dropped: the recipient's domain is over its quota", {
          to: report.rcpt,
        });
        return "dropped";
      }
    }
    this.outbound.add({
      kind: report.kind,
      mailFrom: "",
      rcpt: report.rcpt,
      domain,
      body: report.bytes,
      eightBit: report.eightBit,
      smtputf8: report.smtputf8,
      lifetimeMs: this.options.lifetimeMs,
      aboutMessageId: report.aboutMessageId ?? null,
    });
    return "outbound";
  }
}
