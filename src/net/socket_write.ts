/**
 * One write to a socket with backpressure and a deadline, for `LineConnection.write`
 * (src/net/line_connection.ts).
 *
 * @module
 */

import type { Socket } from "node:net";
import { ConnectionClosedError, WriteTimeoutError } from "./errors.ts";

/**
 * Hands `bytes` to `sock`. Resolves at once when the socket took them, else on `'drain'`. Rejects with
 * {@linkcode ConnectionClosedError} when the write throws or the socket closes first, and with
 * {@linkcode WriteTimeoutError} after `timeoutMs` (when finite), once `onTimeout` has been called.
 */
export function writeToSocket(
  sock: Socket,
  bytes: Uint8Array,
  timeoutMs: number,
  onTimeout: () => void,
): Promise<void> {
  let ok: boolean;
  try {
    ok = sock.write(bytes);
  } catch (err) {
    return Promise.reject(new ConnectionClosedError("Write failed", { cause: err }));
  }
  if (ok) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = (err?: Error): void => {
      clearTimeout(timer);
      sock.off("drain", onDrain);
      sock.off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new ConnectionClosedError("Connection closed while writing"));
    sock.on("drain", onDrain);
    sock.on("close", onClose);
    if (Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => {
        onTimeout();
        done(new WriteTimeoutError(timeoutMs));
      }, timeoutMs);
    }
  });
}
