/**
 * One outbound delivery attempt, the only mail this relay sends to the internet (DSNs, notices): find
 * the destination (the recipient domain's MX hosts, or the smarthost), dial it, send ONE message with
 * the same {@linkcode SmtpClient} that runs after the ATRN turn, and QUIT.
 *
 * No queueing and no retry here: the caller (the outbound queue) records each recipient's result and
 * decides when to try again. Every wait is bounded: DNS by its deadline, the TCP connect and the TLS
 * handshake by their timeouts, each SMTP command by RFC 5321 4.5.3.2, and the whole attempt by
 * `timeouts.attemptMs`.
 *
 * Results per recipient, as docs/protocol.md#reply-mapping maps replies (the client does that mapping):
 * - `delivered`: 2xx to RCPT and to the final dot.
 * - `failed`: a 5xx to MAIL, RCPT or DATA, a refusal by the client itself (SIZE, 8BITMIME, SMTPUTF8),
 *   or a permanent DNS answer (no such domain, null MX, no MX host with an address).
 * - `deferred`: everything else: temporary DNS trouble, no destination reachable, TLS or AUTH
 *   problems with the smarthost, a 4xx, a connection lost before the reply to the final dot.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import type { Logger } from "../log/logger.ts";
import type { TlsInfo } from "../net/line_connection.ts";
import type { DeliverableMessage } from "../queue/store.ts";
import { DeliveryAbort } from "../client/errors.ts";
import { Code451LocalError, Code550NotTaken, Code556DomainAcceptsNoMail } from "../smtp/codes.ts";
import type { PipeliningMode } from "../client/pipelining.ts";
import type { BodyOpener, ClientTimeouts } from "../client/smtp_client.ts";
import {
  type Credentials,
  dial,
  type DialAttempt,
  type Endpoint,
  mxEndpoints,
  type StartTlsPolicy,
} from "./dial.ts";
import { type MxResolverOptions, resolveMx } from "./mx.ts";

/** Timeouts of one attempt, in milliseconds. */
export interface OutboundTimeouts extends ClientTimeouts {
  /** TCP connect. */
  connectMs: number;
  /** TLS handshake after STARTTLS. */
  tlsHandshakeMs: number;
  /** The whole attempt, whatever it is doing; unconfirmed recipients are then deferred. */
  attemptMs: number;
}

/** RFC 5321 4.5.3.2 client timeouts, 30 s to connect and to shake hands, 30 minutes in all. */
export const DEFAULT_OUTBOUND_TIMEOUTS: Readonly<OutboundTimeouts> = {
  greetingMs: 5 * 60_000, // 4.5.3.2.1
  commandMs: 5 * 60_000, // 4.5.3.2.2, 4.5.3.2.3
  dataInitMs: 2 * 60_000, // 4.5.3.2.4
  dataBlockMs: 3 * 60_000, // 4.5.3.2.5
  dataTermMs: 10 * 60_000, // 4.5.3.2.6
  connectMs: 30_000,
  tlsHandshakeMs: 30_000,
  attemptMs: 30 * 60_000,
};

/** Direct delivery to the recipient domain's MX hosts (RFC 5321 5.1), opportunistic STARTTLS. */
export interface MxDestination {
  kind: "mx";
  /** The recipients' domain (or an address literal such as `[192.0.2.1]`). */
  domain: string;
  /**
   * Port on the MX hosts. Default 25, which is what MX delivery means (RFC 5321 5.1); a test and
   * advanced knob, so tests can run an MX on a high loopback port.
   */
  mxPort?: number;
}

/** Delivery through a smarthost. */
export interface SmarthostDestination {
  kind: "smarthost";
  /** Host name or IP address (names are resolved by the operating system, not by `dnsServers`). */
  host: string;
  /** TCP port (587 for submission, 25 for a relay). */
  port: number;
  /**
   * `required`: STARTTLS must be offered and the certificate must verify for `host` (system roots, or
   * `caFile`); otherwise nothing is sent. `opportunistic`: STARTTLS when offered, not verified.
   */
  tls: "required" | "opportunistic";
  /** PEM file of the CA to trust instead of the system roots (`required` only). */
  caFile?: string;
  /** AUTH PLAIN/LOGIN credentials; only ever sent over TLS. */
  credentials?: Credentials;
}

/** Where one attempt goes. */
export type OutboundDestination = MxDestination | SmarthostDestination;

/** Options of {@linkcode sendOutbound}. */
export interface SendOutboundOptions {
  /** The recipients' MX hosts or the smarthost. */
  destination: OutboundDestination;
  /** Reverse path; `""` for a DSN (RFC 3461 6.2, RFC 5321 4.5.5). */
  mailFrom: string;
  /** Recipient addresses, without angle brackets. */
  recipients: readonly string[];
  /** Exact size in octets of the content `body` yields (sent as SIZE=, RFC 1870). */
  size: number;
  /** The content (CRLF lines, not dot-stuffed), in chunks; called again for a second transaction. */
  body: BodyOpener;
  /** The content has 8-bit octets (sent with BODY=8BITMIME, or failed 5.6.3 without it). */
  eightBit?: boolean;
  /** The envelope or headers need SMTPUTF8 (RFC 6531). */
  smtputf8?: boolean;
  /** Our name for EHLO. */
  hostname: string;
  /** DNS servers, timeouts and the random source for MX ordering. */
  dns?: MxResolverOptions;
  /** Timeouts; each missing field takes its default from {@linkcode DEFAULT_OUTBOUND_TIMEOUTS}. */
  timeouts?: Partial<OutboundTimeouts>;
  /** Connections opened at most in this attempt. Default 10. */
  maxConnections?: number;
  /** PIPELINING policy. Default `"auto"`. */
  pipelining?: PipeliningMode;
  /** Logger. */
  logger?: Logger;
  /** Aborting (shutdown) ends the attempt at once; unconfirmed recipients are deferred. */
  signal?: AbortSignal;
  /** Monotonic clock for the client's measurements. Default `performance.now`. */
  monotonicNow?: () => number;
}

/** What happened to one recipient. */
export interface OutboundRecipientResult {
  /** The address as handed in. */
  address: string;
  /** `delivered`, `deferred` (try again later) or `failed` (permanent). */
  result: "delivered" | "deferred" | "failed";
  /** The remote reply code, or the code recorded for a local outcome. */
  code: number;
  /** The reply (`550 5.1.1 ...`) or the local reason; starts with a code. */
  text: string;
  /** Name of the MTA that answered (for a DSN's `Remote-MTA: dns; ...`), or `null` when none did. */
  remoteMta: string | null;
}

/** The result of one attempt. */
export interface OutboundResult {
  /** One entry per recipient, in the order handed in. */
  recipients: OutboundRecipientResult[];
  /** The host the session ran with, or `null` when no session was established. */
  remoteMta: string | null;
  /** Its address and port (`192.0.2.1:25`), or `null`. */
  remoteAddress: string | null;
  /** TLS parameters of that session, or `null` for plaintext (or no session). */
  tls: TlsInfo | null;
  /** Endpoints that were tried and did not work, in order. */
  attempts: DialAttempt[];
}

/** Where to dial, with which TLS policy and credentials; or why there is nowhere. */
type Route =
  | { ok: true; endpoints: Endpoint[]; tls: StartTlsPolicy; credentials?: Credentials }
  | { ok: false; result: "deferred" | "failed"; code: number; text: string };

/**
 * Makes one delivery attempt of one message to `recipients` and returns a result per recipient. Never
 * throws for anything the DNS, the network or a peer does.
 */
export async function sendOutbound(options: SendOutboundOptions): Promise<OutboundResult> {
  const timeouts: OutboundTimeouts = { ...DEFAULT_OUTBOUND_TIMEOUTS, ...options.timeouts };
  const log = options.logger;
  const result: OutboundResult = {
    recipients: [],
    remoteMta: null,
    remoteAddress: null,
    tls: null,
    attempts: [],
  };
  const everyone = (outcome: OutboundRecipientResult["result"], code: number, text: string) => {
    result.recipients = options.recipients.map((address) => ({
      address,
      result: outcome,
      code,
      text,
      remoteMta: null,
    }));
    return result;
  };
  if (options.recipients.length === 0) return result;

  // One signal for the whole attempt: the caller's (shutdown) or our own time limit.
  const stop = new AbortController();
  const limit = setTimeout(() => {
    stop.abort(
      new DeliveryAbort("timeout", `4.4.2 Outbound attempt took longer than ${timeouts.attemptMs} ms`),
    );
  }, timeouts.attemptMs);
  const onCancel = (): void => {
    stop.abort(new DeliveryAbort("cancelled", "4.3.0 Outbound delivery cancelled"));
  };
  if (options.signal?.aborted === true) onCancel();
  options.signal?.addEventListener("abort", onCancel, { once: true });
  try {
    const route = await routeOf(options.destination, options.dns);
    if (!route.ok) {
      log?.info("outbound not attempted", { destination: describe(options.destination), why: route.text });
      return everyone(route.result, route.code, route.text);
    }
    const dialOptions: Parameters<typeof dial>[1] = {
      hostname: options.hostname,
      tls: route.tls,
      timeouts,
      connectTimeoutMs: timeouts.connectMs,
      tlsHandshakeTimeoutMs: timeouts.tlsHandshakeMs,
      signal: stop.signal,
    };
    if (route.credentials !== undefined) dialOptions.credentials = route.credentials;
    if (options.maxConnections !== undefined) dialOptions.maxConnections = options.maxConnections;
    if (options.pipelining !== undefined) dialOptions.pipelining = options.pipelining;
    if (log !== undefined) dialOptions.logger = log;
    if (options.monotonicNow !== undefined) dialOptions.monotonicNow = options.monotonicNow;

    const dialed = await dial(route.endpoints, dialOptions);
    result.attempts = dialed.attempts;
    if (!dialed.ok) {
      log?.warn("outbound deferred: no destination", {
        destination: describe(options.destination),
        why: dialed.text,
      });
      return everyone("deferred", dialed.code, dialed.text);
    }

    const { client, endpoint, tls } = dialed.session;
    result.remoteMta = endpoint.host;
    result.remoteAddress = `${endpoint.address}:${endpoint.port}`;
    result.tls = tls;
    const onStop = (): void => client.abort(stop.signal.reason as DeliveryAbort);
    stop.signal.addEventListener("abort", onStop, { once: true });
    try {
      const sent = await client.sendMessage(toDeliverable(options), options.body);
      await client.quit();
      result.recipients = sent.outcomes.map((o, i) => ({
        address: options.recipients[i]!,
        // The client reports "relayed" only where a caller maps it; here a 2xx is simply delivered.
        result: o.result === "relayed" ? "delivered" : o.result,
        code: o.code ?? Code451LocalError,
        text: o.text ?? "",
        remoteMta: endpoint.host,
      }));
      log?.info("outbound attempt", {
        remote: result.remoteMta,
        address: result.remoteAddress,
        tls: tls?.protocol ?? "none",
        delivered: sent.delivered,
        deferred: sent.deferred,
        failed: sent.failed,
        abort: sent.abort?.text,
      });
      return result;
    } finally {
      stop.signal.removeEventListener("abort", onStop);
    }
  } finally {
    clearTimeout(limit);
    options.signal?.removeEventListener("abort", onCancel);
  }
}

/** The endpoints and TLS policy of a destination (MX lookup for direct delivery). */
async function routeOf(destination: OutboundDestination, dns: MxResolverOptions | undefined): Promise<Route> {
  if (destination.kind === "smarthost") {
    const endpoints = [{ host: destination.host, address: destination.host, port: destination.port }];
    let tls: StartTlsPolicy = { mode: "opportunistic" };
    if (destination.tls === "required") {
      tls = { mode: "required" };
      if (destination.caFile !== undefined) {
        try {
          tls = { mode: "required", ca: readFileSync(destination.caFile, "utf8") };
        } catch (err) {
          const why = err instanceof Error ? err.message : String(err);
          return {
            ok: false,
            result: "deferred",
            code: Code451LocalError,
            text: `4.7.0 Cannot read CA file: ${why}`,
          };
        }
      }
    }
    return destination.credentials === undefined
      ? { ok: true, endpoints, tls }
      : { ok: true, endpoints, tls, credentials: destination.credentials };
  }
  const mx = await resolveMx(destination.domain, dns);
  if (mx.kind === "temporary") {
    return { ok: false, result: "deferred", code: Code451LocalError, text: mx.reason };
  }
  if (mx.kind === "permanent") {
    // RFC 7505 4.1: a null MX is reported as 556 5.1.10; the other permanent DNS answers as 550
    // "mailbox unavailable" (RFC 5321 4.2.3).
    const code = mx.nullMx ? Code556DomainAcceptsNoMail : Code550NotTaken;
    return { ok: false, result: "failed", code, text: mx.reason };
  }
  return { ok: true, endpoints: mxEndpoints(mx.hosts, destination.mxPort), tls: { mode: "opportunistic" } };
}

/** The envelope in the shape the client sends (no DSN parameters: a DSN asks for none). */
function toDeliverable(options: SendOutboundOptions): DeliverableMessage {
  return {
    id: 0,
    mailFrom: options.mailFrom,
    size: options.size,
    bodyType: null,
    smtputf8: options.smtputf8 ?? false,
    eightBit: options.eightBit ?? false,
    envid: null,
    ret: null,
    receivedAt: 0,
    recipients: options.recipients.map((address, i) => ({ id: i + 1, address, notify: null, orcpt: null })),
  };
}

function describe(destination: OutboundDestination): string {
  return destination.kind === "mx"
    ? `mx:${destination.domain}`
    : `smarthost:${destination.host}:${destination.port}`;
}
