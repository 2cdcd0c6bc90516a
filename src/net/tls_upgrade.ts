/**
 * The TLS half of a connection upgrade: how a plaintext socket is wrapped on each side, the handshake
 * with its timeout, and what was negotiated. `LineConnection` (src/net/line_connection.ts) owns the
 * buffer and the socket's events around it: it detaches its reader and drops the plaintext input
 * (CVE-2011-0411, RFC 3207 4.2) before calling {@linkcode tlsHandshake}, and reattaches after.
 *
 * The server side is the pattern measured to work on Deno, Bun and Node: `pause()` the socket (without
 * it Deno loses the ClientHello of real peers), write the `220` reply, then
 * `new tls.TLSSocket(socket, { isServer: true, secureContext })`.
 * The client side is `tls.connect({ socket, servername })`.
 *
 * @module
 */

import type * as net from "node:net";
import * as tls from "node:tls";
import { isIP } from "node:net";
import { ConnectionClosedError, TlsHandshakeError } from "./errors.ts";

/** Default time allowed for a TLS handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30 * 1000;

/** Options of `LineConnection.startTlsServer`. */
export interface StartTlsServerOptions {
  /**
   * The `220 Ready to start TLS` reply (with CRLF). Strongly recommended: it is written AFTER the plaintext
   * reader is detached and the socket paused, so the ClientHello can never land in the plaintext buffer.
   * If omitted, the caller must have written it already (and a fast client's ClientHello may race it).
   */
  readyReply?: string;
  /** Handshake timeout in milliseconds. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** Options of `LineConnection.startTlsClient`. */
export interface StartTlsClientOptions {
  /** Server name for SNI and certificate verification (SNI is not sent for IP addresses, RFC 6066 3). */
  servername?: string;
  /** Reject a certificate that does not verify. Opportunistic STARTTLS to MTAs usually passes `false`. */
  rejectUnauthorized?: boolean;
  /** Extra trust anchors in PEM. */
  ca?: string | string[];
  /** Handshake timeout in milliseconds. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** What a STARTTLS upgrade did. */
export interface TlsUpgradeResult {
  /**
   * Plaintext bytes that were buffered after the STARTTLS command (server) or the 220 reply (client) and
   * were thrown away unread (CVE-2011-0411, RFC 3207 4.2). Non-zero means the peer pipelined across TLS.
   */
  discardedBytes: number;
}

/** The negotiated TLS parameters, for logs and the Received header (RFC 3848 ESMTPS). */
export interface TlsInfo {
  /** Protocol version such as `"TLSv1.3"`, or `null` when the runtime does not report it. */
  protocol: string | null;
  /** Cipher suite name, or `null` when the runtime does not report it. */
  cipher: string | null;
  /** Whether the peer certificate verified (client side; `false` on the server side). */
  authorized: boolean;
}

/** How one side wraps the plaintext socket, and the event that says the handshake is done. */
export interface TlsWrap {
  /** Wraps the paused plaintext socket; the handshake starts. */
  wrap: (plain: net.Socket) => tls.TLSSocket;
  /** `"secure"` on the server side, `"secureConnect"` on the client side. */
  secureEvent: "secure" | "secureConnect";
}

/** The server side (STARTTLS after our 220, or implicit TLS at accept, RFC 8314 3.3). */
export function serverWrap(secureContext: tls.SecureContext): TlsWrap {
  return {
    wrap: (plain) => new tls.TLSSocket(plain, { isServer: true, secureContext }),
    secureEvent: "secure",
  };
}

/** The client side (after the server's 220 to STARTTLS): TLS 1.2 or later, SNI for host names only. */
export function clientWrap(options: StartTlsClientOptions): TlsWrap {
  const servername = options.servername;
  return {
    wrap: (plain) => {
      const opts: tls.ConnectionOptions = {
        socket: plain,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
        minVersion: "TLSv1.2",
      };
      if (servername !== undefined) {
        opts.host = servername;
        if (isIP(servername) === 0) opts.servername = servername;
      }
      if (options.ca !== undefined) opts.ca = options.ca;
      return tls.connect(opts);
    },
    secureEvent: "secureConnect",
  };
}

/**
 * Writes `readyReply` (if any) on the paused plaintext socket, wraps it and waits up to `timeoutMs` for the
 * handshake. `onWrapped` learns the TLS socket as soon as it exists (so a failure can destroy it too).
 * Rejects with {@linkcode TlsHandshakeError}, with {@linkcode ConnectionClosedError} when the socket
 * closed before the reply was written, or with what `wrap` threw; the caller destroys the sockets then.
 */
export async function tlsHandshake(
  plain: net.Socket,
  side: TlsWrap,
  timeoutMs: number,
  readyReply: Uint8Array | undefined,
  onWrapped: (sock: tls.TLSSocket) => void,
): Promise<tls.TLSSocket> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cleanup: Array<() => void> = [];
  try {
    if (readyReply !== undefined) {
      await new Promise<void>((resolve, reject) => {
        const onClose = (): void => reject(new ConnectionClosedError("Connection closed before TLS"));
        plain.once("close", onClose);
        cleanup.push(() => plain.off("close", onClose));
        plain.write(
          readyReply,
          (err) => (err ? reject(new ConnectionClosedError("Write failed", { cause: err })) : resolve()),
        );
      });
    }
    const sock = side.wrap(plain);
    onWrapped(sock);
    sock.on("error", noop);
    await new Promise<void>((resolve, reject) => {
      const onSecure = (): void => resolve();
      const onError = (err: unknown): void =>
        reject(new TlsHandshakeError(`TLS handshake failed: ${errorMessage(err)}`, { cause: err }));
      const onClose = (): void => reject(new TlsHandshakeError("Connection closed during TLS handshake"));
      sock.once(side.secureEvent, onSecure);
      sock.once("error", onError);
      sock.once("close", onClose);
      cleanup.push(() => {
        sock.off(side.secureEvent, onSecure);
        sock.off("error", onError);
        sock.off("close", onClose);
      });
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(
          () => reject(new TlsHandshakeError(`TLS handshake timed out after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }
    });
    return sock;
  } finally {
    clearTimeout(timer);
    for (const f of cleanup) f();
  }
}

/** The negotiated parameters, as far as this runtime reports them. */
export function readTlsInfo(sock: tls.TLSSocket): TlsInfo {
  let protocol: string | null = null;
  let cipher: string | null = null;
  try {
    protocol = sock.getProtocol?.() ?? null;
  } catch {
    // not implemented by this runtime
  }
  try {
    cipher = sock.getCipher?.()?.name ?? null;
  } catch {
    // not implemented by this runtime
  }
  return { protocol, cipher, authorized: sock.authorized === true };
}

/** The message of an error, or the value as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A listener that swallows `'error'` events (they must never be uncaught). */
export function noop(): void {}
