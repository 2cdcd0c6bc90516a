/** Opening a TCP connection with a time limit and a way to give up (the customer dials both ends). */
import net from "node:net";

/**
 * Connects to `host:port`; rejects after `timeoutMs`, or at once when `signal` fires (the socket is
 * destroyed either way). Nagle is turned off: SMTP replies are small and latency-bound.
 */
export function dial(
  host: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("stopped"));
    const socket = net.connect({ host, port });
    const fail = (error: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    };
    const onAbort = () => fail(new Error("stopped"));
    const timer = setTimeout(() => fail(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", fail);
    socket.once("connect", () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", fail);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}
