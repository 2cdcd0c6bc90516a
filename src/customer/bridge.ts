/**
 * The bridge after the turn (RFC 2645 4, docs/protocol.md#customer-bridge): the provider, now the SMTP
 * client, talks to the local mail server through us. Raw chunks are copied both ways until either side closes:
 * the local server's 220 greeting is the first thing the provider reads, and its replies are the
 * only acknowledgements the provider gets, so nothing is confirmed that the local server did not
 * accept. Unlike fetchmail's line relay, chunks are not split into lines and Nagle is off on both
 * sockets, so a prompt local server gets the provider's pipelined batches at once.
 *
 * A {@link SessionTally} watches the stream to count messages; it never changes or delays a byte.
 * The bridge has no limit of its own on how long it stays open, only on silence (`timeoutMs`): a
 * session the provider keeps open and alive (a later `--watch`) stays bridged.
 */
import type net from "node:net";
import type { Connection } from "../net/connection.ts";
import { dial } from "./dial.ts";
import { SessionTally } from "./session_tally.ts";
import { WatchAdvertiser } from "./watch_offer.ts";

/** Options of {@link bridge}. */
export interface BridgeOptions {
  localHost: string;
  localPort: number;
  /** Wait for the TCP connection to the local server. */
  connectTimeoutMs: number;
  /** Longest silence from the provider, and longest wait for the local server to take data. */
  timeoutMs: number;
  /** Cuts the session at once (both sockets closed): the provider keeps what was not confirmed. */
  abandon?: AbortSignal;
  /** Push delivery: add `XWATCH` to the local server's EHLO reply (watch_offer.ts). */
  advertiseWatch?: boolean;
}

/** How a bridged session ended. */
export interface BridgeResult {
  /** False when the local server could not be reached (nothing was bridged). */
  reached: boolean;
  /** Why the local server could not be reached. */
  error?: string;
  /** True when `abandon` cut the session. */
  abandoned: boolean;
  bytesToLocal: number;
  bytesToProvider: number;
  tally: SessionTally;
}

/** Connects to the local server and copies bytes both ways; never throws. Closes `conn` in the end. */
export async function bridge(conn: Connection, options: BridgeOptions): Promise<BridgeResult> {
  const tally = new SessionTally();
  let local: net.Socket;
  try {
    local = await dial(options.localHost, options.localPort, options.connectTimeoutMs, options.abandon);
  } catch (error) {
    // Like fetchmail: close without a word; the provider keeps every message queued.
    conn.destroy();
    const abandoned = options.abandon?.aborted === true;
    return {
      reached: false,
      error: (error as Error).message,
      abandoned,
      bytesToLocal: 0,
      bytesToProvider: 0,
      tally,
    };
  }
  let toLocal = 0;
  let toProvider = 0;
  let abandoned = false;
  const localClosed = new Promise<void>((resolve) => {
    local.on("close", () => resolve());
    local.on("error", () => resolve());
  });
  const onAbandon = () => {
    abandoned = true;
    local.destroy();
    conn.destroy();
  };
  if (options.abandon?.aborted) onAbandon();
  else options.abandon?.addEventListener("abort", onAbandon, { once: true });
  // local -> provider: the greeting and the replies. The tally sees each chunk before the provider
  // can answer it, so it knows about a 354 before the message content arrives.
  const advertiser = options.advertiseWatch ? new WatchAdvertiser() : null;
  local.on("data", (chunk: Uint8Array) => {
    tally.fromLocal(chunk);
    const out = advertiser ? advertiser.fromLocal(chunk) : chunk;
    if (out.length === 0) return;
    toProvider += out.length;
    local.pause();
    conn.write(out).then(() => local.resume(), () => local.destroy());
  });
  // provider -> local: the commands and message content.
  const pump = (async () => {
    try {
      for (;;) {
        const chunk = await conn.readChunk({ timeoutMs: options.timeoutMs });
        if (local.destroyed) break;
        toLocal += chunk.length;
        advertiser?.fromProvider(chunk);
        const flushed = local.write(chunk);
        tally.fromProvider(chunk);
        // Backpressure: wait for the local server to take the data, but not past its closing or the
        // timeout (a closed socket never emits "drain"; a stuck one must not hang the bridge).
        if (!flushed && !(await drained(local, localClosed, options.timeoutMs))) break;
      }
    } catch {
      // The provider closed, timed out or failed: the session is over.
    }
    local.end();
  })();
  await Promise.race([localClosed, pump]);
  await conn.close().catch(() => {});
  local.destroy();
  await pump;
  options.abandon?.removeEventListener("abort", onAbandon);
  return { reached: true, abandoned, bytesToLocal: toLocal, bytesToProvider: toProvider, tally };
}

/** Resolves true on "drain", false when the socket closes first or `timeoutMs` passes. */
function drained(socket: net.Socket, closed: Promise<void>, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => finish(false), timeoutMs);
    const onDrain = () => finish(true);
    function finish(ok: boolean): void {
      clearTimeout(timer);
      socket.off("drain", onDrain);
      resolve(ok);
    }
    socket.once("drain", onDrain);
    void closed.then(() => finish(false));
  });
}
