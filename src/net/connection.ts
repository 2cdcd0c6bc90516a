/**
 * The connection the protocol code talks through: lines and chunks in, bytes out, STARTTLS, close, and
 * who the peer is. Two implementations: {@linkcode LineConnection} over a TCP or TLS socket
 * (src/net/line_connection.ts), and {@linkcode MemoryConnection}, an in-memory pipe end for tests
 * (src/net/memory_connection.ts). Servers, the SMTP client and the customer depend on this type only,
 * so a transcript can run without a socket (docs/design.md#seams).
 *
 * @module
 */

import type * as tls from "node:tls";
import type { ReadChunkOptions, ReadLineOptions, WriteOptions } from "./connection_options.ts";
import type {
  StartTlsClientOptions,
  StartTlsServerOptions,
  TlsInfo,
  TlsUpgradeResult,
} from "./tls_upgrade.ts";

/**
 * A line-oriented, full-duplex connection. Reads must not overlap (one reader at a time); errors of the
 * transport surface as `ConnectionClosedError` on the next read or write, never as uncaught exceptions.
 */
export interface Connection {
  /** Bytes received from the peer (after TLS decryption). */
  bytesIn: number;
  /** Bytes handed to the transport for writing (before TLS encryption). */
  bytesOut: number;
  /** Resolves once the connection has closed (never rejects). */
  readonly closed: Promise<void>;
  /** Remote IP address (`""` if unknown). */
  readonly remoteAddress: string;
  /** Remote port (0 if unknown). */
  readonly remotePort: number;
  /** Local IP address (`""` if unknown). */
  readonly localAddress: string;
  /** Local port (0 if unknown). */
  readonly localPort: number;
  /** Whether the connection is currently encrypted. */
  readonly isTls: boolean;
  /** Whether the connection has closed (or `destroy()` was called). */
  readonly isClosed: boolean;
  /** The negotiated TLS parameters, or `null` on a plaintext connection. */
  tlsInfo(): TlsInfo | null;
  /** Whether unread input is buffered (early talker, unauthorised pipelining, bytes after ATRN). */
  hasBufferedInput(): boolean;
  /** Number of unread bytes in the buffer. */
  bufferedByteCount(): number;
  /** Waits up to `ms` for input: `true` once a byte is buffered, `false` on timeout or close. */
  waitForInput(ms: number): Promise<boolean>;
  /** The next CRLF-terminated line without its CRLF, as UTF-8 (RFC 5321 2.3.8). */
  readLine(options?: ReadLineOptions): Promise<string>;
  /** The next line's raw octets without its CRLF. */
  readLineBytes(options?: ReadLineOptions): Promise<Uint8Array>;
  /** The next buffered bytes (at least one), waiting for data if none are buffered. */
  readChunk(options?: ReadChunkOptions): Promise<Uint8Array>;
  /** Puts bytes back in front of the buffer (the pipelined command after DATA, RFC 2920 3.1). */
  unread(bytes: Uint8Array): void;
  /** Writes and waits for the transport to accept the bytes (backpressure, write timeout). */
  write(data: string | Uint8Array, options?: WriteOptions): Promise<void>;
  /** Writes without waiting, for batching pipelined replies (RFC 2920 3.2); `false` if full or closed. */
  writeNoWait(data: string | Uint8Array): boolean;
  /** Server side of STARTTLS (RFC 3207 4): drops buffered plaintext, writes `readyReply`, handshakes. */
  startTlsServer(
    secureContext: tls.SecureContext,
    options?: StartTlsServerOptions,
  ): Promise<TlsUpgradeResult>;
  /** Client side of STARTTLS (RFC 3207 4), after the server's 220. */
  startTlsClient(options?: StartTlsClientOptions): Promise<TlsUpgradeResult>;
  /** Ends politely (FIN), destroying after `graceMs` if the peer does not close. Resolves when closed. */
  close(graceMs?: number): Promise<void>;
  /** Closes at once; pending reads fail with `ConnectionClosedError`. */
  destroy(): void;
}
