/**
 * Serves a fetch handler (a Hono app's `fetch`) with the runtime's own HTTP server:
 * `Deno.serve` or `Bun.serve`. The only place that knows how (docs/design.md#seams, 7).
 */
import { describeBindError } from "../net/bind_errors.ts";

type FetchHandler = (request: Request, info?: unknown) => Response | Promise<Response>;

/** A running HTTP server. */
export interface HttpServer {
  /** The address actually bound (port 0 resolves to the real port). */
  readonly host: string;
  readonly port: number;
  /** Stops accepting and closes open connections. */
  stop(): Promise<void>;
}

interface BunServer {
  port: number;
  hostname: string;
  stop(closeActive?: boolean): void | Promise<void>;
}
declare const Bun: { serve(options: Record<string, unknown>): BunServer } | undefined;

/** Starts serving `fetch` on host:port; rejects with a clear message when the bind fails. */
export function serveHttp(host: string, port: number, fetch: FetchHandler): Promise<HttpServer> {
  try {
    if (typeof Deno !== "undefined") return Promise.resolve(serveDeno(host, port, fetch));
    if (typeof Bun !== "undefined") return Promise.resolve(serveBun(host, port, fetch));
  } catch (error) {
    return Promise.reject(new Error(describeBindError(error, host, port), { cause: error }));
  }
  return Promise.reject(new Error("The HTTP server needs Deno or Bun (run with `deno run -A` or `bun run`)"));
}

function serveDeno(host: string, port: number, fetch: FetchHandler): HttpServer {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: host, port, signal: controller.signal, onListen: () => {} },
    (request, info) => fetch(request, info),
  );
  const addr = server.addr as Deno.NetAddr;
  return {
    host: addr.hostname,
    port: addr.port,
    stop: async () => {
      controller.abort();
      await server.finished;
    },
  };
}

function serveBun(host: string, port: number, fetch: FetchHandler): HttpServer {
  const server = Bun!.serve({ hostname: host, port, fetch: (request: Request) => fetch(request) });
  return {
    host: server.hostname,
    port: server.port,
    stop: async () => {
      await server.stop(true);
    },
  };
}
