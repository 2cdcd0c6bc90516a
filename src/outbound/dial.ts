/**
 * Dialling for the outbound path: connect to the first destination that will talk, and hand back an
 * {@linkcode SmtpClient} ready for MAIL. The client itself never dials (docs/design.md#seams, 1); this module
 * does, beside it.
 *
 * For each endpoint in order (MX hosts by preference, each host's addresses in order; or the smarthost):
 * TCP connect (bounded), greeting, EHLO, STARTTLS as the policy says, EHLO again, AUTH when credentials
 * are given. Any failure before MAIL (connection refused or timed out, a 4xx or 5xx greeting, EHLO and
 * HELO refused, TLS problems) moves on to the next endpoint (RFC 5321 5.1: "try the next"); when all are
 * used up the attempt is DEFERRED, never failed: only a reply to MAIL, RCPT or DATA fails mail.
 *
 * TLS policy, decided here:
 * - `opportunistic` (direct MX delivery; RFC 3207, RFC 7435): STARTTLS when offered, certificate not
 *   checked; plaintext when it is not offered or the server answers STARTTLS with 454. If the TLS
 *   handshake itself fails, that same address is dialled once more without TLS, as Postfix documents for
 *   its `may` level ("rather than give up on mail delivery, the Postfix SMTP client retries the
 *   transaction with TLS disabled"; TLS_README, client_tls_may). Without the retry, a site with a
 *   broken TLS stack could never receive our bounces.
 * - `required` (smarthost): STARTTLS must be offered and the certificate must verify for the host name
 *   against the given CA or the system roots; otherwise nothing is sent (deferred, no plaintext retry).
 * - Credentials are only ever sent over TLS (PLAIN and LOGIN are cleartext, RFC 4954 4, RFC 4616 6), so
 *   with credentials an opportunistic session that ends up in plaintext is deferred too. A refused AUTH
 *   is the operator's problem: it is logged at level `error`, deferred, and no further address of the
 *   same smarthost is tried with the same credentials.
 *
 * @module
 */

import * as net from "node:net";
import { ConnectionClosedError, LineConnection, type TlsInfo } from "../net/line_connection.ts";
import { TlsHandshakeError } from "../net/errors.ts";
import type { Connection } from "../net/connection.ts";
import type { Logger } from "../log/logger.ts";
import { DeliveryAbort, toAbort } from "../client/errors.ts";
import { type ClientTimeouts, SmtpClient, type SmtpClientOptions } from "../client/smtp_client.ts";
import { describeReply } from "../client/outcome.ts";
import { Code235AuthSucceeded, Code451LocalError } from "../smtp/codes.ts";
import type { PipeliningMode } from "../client/pipelining.ts";
import type { MxHost } from "./mx.ts";

/** RFC 5321 5.1 / 4.5.4: SMTP relaying between MTAs is on port 25. */
export const SMTP_PORT = 25;
/** Time allowed for a TCP connection to be set up (Postfix `smtp_connect_timeout` is 30 s). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** Time allowed for a TLS handshake after STARTTLS. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 30_000;
/** Connections opened per attempt at most, across all endpoints (Postfix: 5 addresses, 2 sessions). */
export const DEFAULT_MAX_CONNECTIONS = 10;
/** Grace period for the FIN exchange when a session is given up. */
const CLOSE_GRACE_MS = 1000;

/** One place to connect to. */
export interface Endpoint {
  /**
   * The name the remote is known by: the MX host name (or address literal), or the smarthost's name.
   * Used in logs, as Remote-MTA, and for SNI and certificate checks.
   */
  host: string;
  /**
   * What to connect to: an IP address (MX hosts, resolved by mx.ts), or the smarthost's own name, which
   * the operating system resolves (so `/etc/hosts` works for `localhost:587`).
   */
  address: string;
  /** TCP port. */
  port: number;
}

/** How STARTTLS is used. */
export type StartTlsPolicy =
  /** STARTTLS when offered, certificate not checked (RFC 7435); plaintext otherwise. */
  | { mode: "opportunistic" }
  /** STARTTLS must be offered and the certificate must verify against `ca` (PEM) or the system roots. */
  | { mode: "required"; ca?: string | string[] };

/** SMTP AUTH credentials (from the config file or the environment; never a flag). */
export interface Credentials {
  username: string;
  password: string;
}

/** Options of {@linkcode dial}. */
export interface DialOptions {
  /** Our name for EHLO (RFC 5321 4.1.1.1). */
  hostname: string;
  /** STARTTLS policy. */
  tls: StartTlsPolicy;
  /** AUTH PLAIN/LOGIN credentials (smarthost); none for MX delivery. */
  credentials?: Credentials;
  /** Per-command timeouts of the SMTP client (RFC 5321 4.5.3.2). */
  timeouts: ClientTimeouts;
  /** TCP connect timeout in milliseconds. Default 30 s. */
  connectTimeoutMs?: number;
  /** TLS handshake timeout in milliseconds. Default 30 s. */
  tlsHandshakeTimeoutMs?: number;
  /** Connections opened at most (including the plaintext retry). Default 10. */
  maxConnections?: number;
  /** PIPELINING policy for the session. Default `"auto"`. */
  pipelining?: PipeliningMode;
  /** Logger. */
  logger?: Logger;
  /** Aborting ends the attempt at once; a {@linkcode DeliveryAbort} as the reason is used as the text. */
  signal?: AbortSignal;
  /** Monotonic clock handed to the client. Default `performance.now`. */
  monotonicNow?: () => number;
}

/** An endpoint that did not work out, and why (texts start with an enhanced status code). */
export interface DialAttempt {
  endpoint: Endpoint;
  text: string;
}

/** A session ready for MAIL. */
export interface OutboundSession {
  /** The client; call `sendMessage` then `quit`. */
  client: SmtpClient;
  /** Where it is connected. */
  endpoint: Endpoint;
  /** TLS parameters, or `null` in plaintext. */
  tls: TlsInfo | null;
  /** Whether AUTH succeeded. */
  authenticated: boolean;
}

/** The outcome of {@linkcode dial}. */
export type DialResult =
  | { ok: true; session: OutboundSession; attempts: DialAttempt[] }
  | { ok: false; code: number; text: string; attempts: DialAttempt[] };

/** Why one endpoint did not work: `retryPlain` = dial it again without TLS; `stop` = try no other. */
interface SetupFailure {
  text: string;
  retryPlain?: boolean;
  stop?: boolean;
}

/** The endpoints of resolved MX hosts, in order: each host's addresses, on `port` (default 25). */
export function mxEndpoints(hosts: readonly MxHost[], port: number = SMTP_PORT): Endpoint[] {
  return hosts.flatMap((h) => h.addresses.map((address) => ({ host: h.name, address, port })));
}

/**
 * Parses a smarthost setting `HOST:PORT` (`[2001:db8::1]:587` for IPv6). Throws an error naming the
 * problem when it is malformed.
 */
export function parseSmarthost(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  const host = m?.[1] ?? m?.[2];
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(
      `Smarthost must be HOST:PORT (for example smtp.example.net:587), not ${JSON.stringify(text)}`,
    );
  }
  if (m?.[1] !== undefined && net.isIP(host) !== 6) throw new Error(`Smarthost ${text}: not an IPv6 address`);
  return { host: host.toLowerCase(), port };
}

/**
 * Tries `endpoints` in order until one gives a session ready for MAIL (see the module text for the
 * policy). Never throws for anything the network or a peer does.
 */
export async function dial(endpoints: readonly Endpoint[], options: DialOptions): Promise<DialResult> {
  const attempts: DialAttempt[] = [];
  const max = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const log = options.logger;
  let opened = 0;
  for (const endpoint of endpoints) {
    let allowTls = true;
    while (opened < max) {
      const stopped = abortText(options.signal);
      if (stopped !== null) return { ok: false, code: Code451LocalError, text: stopped, attempts };
      opened++;
      const outcome = await openSession(endpoint, allowTls, options);
      if ("client" in outcome) return { ok: true, session: outcome, attempts };
      attempts.push({ endpoint, text: outcome.text });
      log?.info("outbound endpoint failed", {
        host: endpoint.host,
        address: endpoint.address,
        port: endpoint.port,
        why: outcome.text,
        retryPlain: outcome.retryPlain === true,
      });
      if (outcome.stop) return { ok: false, code: Code451LocalError, text: outcome.text, attempts };
      if (!outcome.retryPlain || !allowTls) break;
      allowTls = false; // the same address once more, without STARTTLS (module text)
    }
    if (opened >= max) break;
  }
  return { ok: false, code: Code451LocalError, text: summarize(attempts), attempts };
}

/**
 * The deferral text after every endpoint failed: the last failure's text (it starts with a 4.x.x code)
 * with where it happened, e.g. `4.4.1 Connection failed: ECONNREFUSED (mx2.example[192.0.2.2]:25; 3
 * destinations tried)`.
 */
function summarize(attempts: readonly DialAttempt[]): string {
  const last = attempts[attempts.length - 1];
  if (last === undefined) return "4.4.4 No address to deliver to"; // RFC 3463 X.4.4: unable to route
  const tried = attempts.length > 1 ? `; ${attempts.length} destinations tried` : "";
  // Deferred, so the class is 4 whatever the last text said.
  return `${last.text.replace(/^5\./, "4.")} (${where(last.endpoint)}${tried})`;
}

/** Connect, greet, EHLO, STARTTLS, EHLO, AUTH on one endpoint. */
async function openSession(
  endpoint: Endpoint,
  allowTls: boolean,
  options: DialOptions,
): Promise<OutboundSession | SetupFailure> {
  let socket: net.Socket;
  try {
    socket = await connectTcp(
      endpoint,
      options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      options.signal,
    );
  } catch (err) {
    return { text: `4.4.1 Connection failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  // LineConnection applies setNoDelay(true): commands and replies are small and latency-bound.
  const conn = new LineConnection(socket, { closeGraceMs: CLOSE_GRACE_MS });
  const clientOptions: SmtpClientOptions = {
    timeouts: options.timeouts,
    pipelining: options.pipelining ?? "auto",
  };
  if (options.logger !== undefined) clientOptions.logger = options.logger.child({ remote: where(endpoint) });
  if (options.monotonicNow !== undefined) clientOptions.monotonicNow = options.monotonicNow;
  const client = new SmtpClient(conn, clientOptions);
  const onAbort = (): void => {
    const reason = options.signal?.reason;
    client.abort(
      reason instanceof DeliveryAbort ? reason : new DeliveryAbort("cancelled", "4.3.0 Cancelled"),
    );
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const failure = await setUp(client, conn, endpoint, allowTls, options);
    if (failure !== null) {
      await client.quit();
      return failure;
    }
    return { client, endpoint, tls: conn.tlsInfo(), authenticated: options.credentials !== undefined };
  } catch (err) {
    // readGreeting/hello/startTls/authenticate throw a DeliveryAbort and have closed the connection.
    conn.destroy();
    const abort = toAbort(err, "session setup");
    const handshake = abort.cause instanceof TlsHandshakeError;
    return {
      text: abort.text,
      retryPlain: handshake && options.tls.mode === "opportunistic" && options.credentials === undefined,
    };
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** The SMTP steps before MAIL; `null` when the session is ready, else why not (the caller QUITs). */
async function setUp(
  client: SmtpClient,
  conn: Connection,
  endpoint: Endpoint,
  allowTls: boolean,
  options: DialOptions,
): Promise<SetupFailure | null> {
  const { tls, credentials } = options;
  await client.readGreeting(); // RFC 5321 3.1: 220, or a DeliveryAbort (the next endpoint is tried)
  await client.hello(options.hostname);

  const offered = client.capabilities.has("STARTTLS");
  if (tls.mode === "required" && !offered) {
    return { text: `4.7.0 ${endpoint.host} does not offer STARTTLS, which is required` };
  }
  if (allowTls && offered) {
    const refused = await client.startTls({
      // An address literal is no name for SNI or the certificate check; its address is.
      servername: endpoint.host.startsWith("[") ? endpoint.address : endpoint.host,
      // Opportunistic TLS checks no certificate (RFC 7435 3); required TLS verifies it.
      rejectUnauthorized: tls.mode === "required",
      ...(tls.mode === "required" && tls.ca !== undefined ? { ca: tls.ca } : {}),
      handshakeTimeoutMs: options.tlsHandshakeTimeoutMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    });
    if (refused !== null && tls.mode === "required") {
      return { text: `4.7.0 ${endpoint.host} refused STARTTLS: ${describeReply(refused)}` };
    }
    // RFC 3207 4.2: after the handshake the client SHOULD send EHLO first (earlier keywords are void).
    if (refused === null) await client.hello(options.hostname);
  }

  if (credentials === undefined) return null;
  if (!conn.isTls) {
    // RFC 4954 4 / RFC 4616 6: PLAIN and LOGIN expose the password; never send them unencrypted.
    return { text: `4.7.0 Not sending credentials to ${endpoint.host} without TLS` };
  }
  const mechanisms = (client.capabilities.get("AUTH") ?? []).map((m) => m.toUpperCase());
  const mechanism = mechanisms.includes("PLAIN") ? "PLAIN" : mechanisms.includes("LOGIN") ? "LOGIN" : null;
  if (mechanism === null) {
    const text = client.capabilities.has("AUTH")
      ? `4.7.0 ${endpoint.host} offers no AUTH mechanism we use (PLAIN, LOGIN): ${mechanisms.join(" ")}`
      : `4.7.0 ${endpoint.host} does not offer AUTH`;
    options.logger?.error("smarthost authentication impossible", { host: endpoint.host, why: text });
    return { text, stop: true };
  }
  const reply = await client.authenticate(mechanism, credentials.username, credentials.password);
  if (reply.code === Code235AuthSucceeded) return null;
  // RFC 4954 6: 535 5.7.8 credentials invalid, 454 4.7.0 temporary. Either way the operator must look.
  const text = `4.7.0 ${endpoint.host} refused AUTH ${mechanism} for ${credentials.username}: ${
    describeReply(reply)
  }`;
  options.logger?.error("smarthost refused our credentials; outbound mail stays queued", {
    host: endpoint.host,
    user: credentials.username,
    reply: describeReply(reply),
  });
  return { text, stop: true };
}

/** A TCP connection within `timeoutMs`; rejects with a short reason (ECONNREFUSED, timed out). */
export function connectTcp(endpoint: Endpoint, timeoutMs: number, signal?: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(new ConnectionClosedError("cancelled"));
      return;
    }
    const socket = net.connect({ host: endpoint.address, port: endpoint.port });
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      if (err === null) {
        resolve(socket);
        return;
      }
      socket.on("error", () => {});
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => done(null);
    const onError = (err: Error): void => {
      const code = (err as { code?: unknown }).code;
      done(new ConnectionClosedError(typeof code === "string" ? code : err.message, { cause: err }));
    };
    const onAbort = (): void => done(new ConnectionClosedError("cancelled"));
    const timer = setTimeout(
      () => done(new ConnectionClosedError(`timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `mx.example[192.0.2.1]:25`, as logs and texts name an endpoint. */
export function where(endpoint: Endpoint): string {
  return endpoint.address === endpoint.host
    ? `${endpoint.host}:${endpoint.port}`
    : `${endpoint.host}[${endpoint.address}]:${endpoint.port}`;
}

function abortText(signal: AbortSignal | undefined): string | null {
  if (signal?.aborted !== true) return null;
  return signal.reason instanceof DeliveryAbort ? signal.reason.text : "4.3.0 Cancelled";
}
