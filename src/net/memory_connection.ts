/**
 * An in-memory connection pair, the analogue of Go's `net.Pipe`: what one end writes, the other reads,
 * delivered on a later microtask as a socket would. Protocol code runs on it unchanged, so transcripts
 * of the intake and ODMR sessions (including the ATRN turn) need no socket and no loopback port.
 *
 * What it does not do: TLS (`startTlsServer`/`startTlsClient` throw `TlsHandshakeError`; STARTTLS is
 * tested on real sockets) and backpressure (writes are accepted at once).
 *
 * @module
 */

import type * as tls from "node:tls";
import { BufferedConnection, type PeerInfo } from "./buffered_connection.ts";
import type { LineConnectionOptions } from "./connection_options.ts";
import { TlsHandshakeError } from "./errors.ts";
import type { TlsInfo, TlsUpgradeResult } from "./tls_upgrade.ts";

const encoder = new TextEncoder();

/** Addresses the two ends claim, and limits for each end. */
export interface MemoryPipeOptions {
  /** The address the server end sees as its peer (default 127.0.0.1), for per-IP rules and logs. */
  clientAddress?: string;
  /** The server end's own address (default 127.0.0.1). */
  serverAddress?: string;
  /** Limits of the server end (line length, flood, timeouts). */
  server?: LineConnectionOptions;
  /** Limits of the client end. */
  client?: LineConnectionOptions;
}

/** One end of an in-memory pipe. */
export class MemoryConnection extends BufferedConnection {
  #peer: MemoryConnection | undefined;

  /** Use {@linkcode memoryPipe}. */
  constructor(peer: PeerInfo, options: LineConnectionOptions = {}) {
    super(peer, options);
  }

  /** Joins two ends; each one's writes become the other's input. */
  static join(a: MemoryConnection, b: MemoryConnection): void {
    a.#peer = b;
    b.#peer = a;
  }

  get isTls(): boolean {
    return false;
  }

  tlsInfo(): TlsInfo | null {
    return null;
  }

  write(data: string | Uint8Array): Promise<void> {
    return this.writeNoWait(data) ? Promise.resolve() : Promise.reject(this.closedError());
  }

  writeNoWait(data: string | Uint8Array): boolean {
    if (this.isClosed) return false;
    // A copy, as a socket would hand over: the writer may reuse its buffer.
    const bytes = typeof data === "string" ? encoder.encode(data) : new Uint8Array(data);
    this.bytesOut += bytes.length;
    const peer = this.#peer;
    if (peer) queueMicrotask(() => peer.#deliver(bytes));
    return true;
  }

  startTlsServer(_secureContext: tls.SecureContext): Promise<TlsUpgradeResult> {
    return this.#noTls();
  }

  startTlsClient(): Promise<TlsUpgradeResult> {
    return this.#noTls();
  }

  /**
   * Closes this end; the peer reads what was written before, then end of input, and closes too (a
   * socket that is not half-open does the same on FIN).
   */
  close(): Promise<void> {
    if (!this.isClosed) {
      this.markClosed();
      const peer = this.#peer;
      if (peer) queueMicrotask(() => peer.#peerClosed());
    }
    return this.closed;
  }

  /** Closes at once; the same as {@linkcode close} in memory, where nothing is left to flush. */
  destroy(): void {
    void this.close();
  }

  protected pauseInput(): void {
    // Nothing to pause: the writer's bytes are already in memory.
  }

  protected resumeInput(): void {}

  #deliver(bytes: Uint8Array): void {
    if (!this.isClosed) this.received(bytes);
  }

  #peerClosed(): void {
    this.markClosed();
  }

  #noTls(): Promise<TlsUpgradeResult> {
    return Promise.reject(new TlsHandshakeError("TLS is not available on an in-memory connection"));
  }
}

/** A connected pair: `[server, client]`. */
export function memoryPipe(options: MemoryPipeOptions = {}): [MemoryConnection, MemoryConnection] {
  const clientAddress = options.clientAddress ?? "127.0.0.1";
  const serverAddress = options.serverAddress ?? "127.0.0.1";
  const server = new MemoryConnection({
    remoteAddress: clientAddress,
    remotePort: 40000,
    localAddress: serverAddress,
    localPort: 25,
  }, options.server);
  const client = new MemoryConnection({
    remoteAddress: serverAddress,
    remotePort: 25,
    localAddress: clientAddress,
    localPort: 40000,
  }, options.client);
  MemoryConnection.join(server, client);
  return [server, client];
}
