/**
 * The HTTP status API as a Hono app (docs/design.md#seams, 7): `createApp(deps)` builds it, tests call
 * `app.request()`, and the runtime adapter serves it.
 *
 * Endpoints (docs/http_api.md has the full reference):
 *   GET /healthz                  liveness, always open
 *   GET /readyz                   database writable and listeners bound (reader)
 *   GET /status                   JSON status report (reader)
 *   GET /metrics                  Prometheus text format (reader)
 *   GET /                         HTML status page (reader)
 *   /queue..., /domains/...       administration (token always; see queue_routes.ts)
 * Who is a "reader" and who an administrator is decided in auth.ts.
 */
import { type Clock, systemClock } from "../clock.ts";
import { Hono } from "hono";
import type { Queue } from "../queue/queue.ts";
import type { Logger } from "../log/logger.ts";
import type { RelayState } from "../relay_state.ts";
import { runtimeInfo } from "../runtime/runtime.ts";
import { VERSION } from "../version.ts";
import { requireAdmin, requireReader } from "./auth.ts";
import { BadRequest, errorResponse } from "./errors.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { PAGE_HEADERS, renderStatusPage } from "./page.ts";
import { queueRoutes } from "./queue_routes.ts";
import type { WatchingSession } from "../server/watch_sessions.ts";
import { buildStatus, type OutboundCountSource, type PendingDsnSource } from "./status.ts";

/** What the HTTP API needs from the running relay. */
export interface AppDeps {
  store: Queue;
  state: RelayState;
  logger: Logger;
  /** Bearer token; null means none configured. */
  token: string | null;
  /**
   * True when the HTTP listener is bound to a loopback address: only then may read-only
   * endpoints go without a token (auth.ts). Defaults to false, the safe side.
   */
  listenerIsLoopback?: boolean;
  /** Reported version (default: the build's VERSION). */
  version?: string;
  /** Clock in epoch ms, injected so tests control ages (docs/design.md#seams, 9). */
  clock?: Clock;
  /** Recipients waiting for their DSN (for /status, /metrics and the page). */
  reports?: PendingDsnSource | undefined;
  /** DSNs and notices waiting to go out. */
  outbound?: OutboundCountSource | undefined;
  /** An operator bounced a message: run the DSN step. */
  onBounced?: () => void;
  /** Domains being delivered right now: their mail cannot be bounced until the session ends. */
  busyDomains?: () => Promise<readonly string[]>;
  /** Sessions watching for new mail (push delivery). */
  watching?: () => WatchingSession[];
}

/** Builds the HTTP API. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const clock = deps.clock ?? systemClock;
  const runtime = runtimeInfo();
  const sources = () => ({
    store: deps.store,
    state: deps.state,
    reports: deps.reports,
    outbound: deps.outbound,
    watching: deps.watching?.() ?? [],
    version: deps.version ?? VERSION,
    runtime: `${runtime.name} ${runtime.version}`,
    now: clock.now(),
  });
  const auth = { token: deps.token, listenerIsLoopback: deps.listenerIsLoopback ?? false };
  const reader = requireReader(auth);
  const admin = requireAdmin(auth);

  app.onError((error, c) => {
    if (error instanceof BadRequest) return errorResponse(c, 400, error.message);
    deps.logger.error("http handler failed", { path: c.req.path, error: String(error), stack: error.stack });
    return errorResponse(c, 500, "Internal error (see the relay's log)");
  });
  app.notFound((c) => errorResponse(c, 404, `No such endpoint: ${c.req.method} ${c.req.path}`));

  // Liveness: the process answers. Open so probes need no secret.
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  // Readiness: the database takes writes and every configured listener is bound.
  app.get("/readyz", reader, async (c) => {
    const dbOk = await deps.store.isWritable().catch(() => false);
    const listenersOk = deps.state.listeners.every((l) => l.bound);
    const ok = dbOk && listenersOk && !deps.state.shuttingDown;
    return c.json(
      { status: ok ? "ready" : "not-ready", database: dbOk, listeners: listenersOk },
      ok ? 200 : 503,
    );
  });
  app.get("/status", reader, async (c) => c.json(await buildStatus(sources())));
  app.get(
    "/metrics",
    reader,
    async (c) => c.body(await renderMetrics(sources()), 200, { "Content-Type": METRICS_CONTENT_TYPE }),
  );
  app.get(
    "/",
    reader,
    async (c) => c.html(renderStatusPage(await buildStatus(sources())), 200, PAGE_HEADERS),
  );

  app.use("/queue", admin);
  app.use("/queue/*", admin);
  app.use("/domains/*", admin);
  app.route(
    "/",
    queueRoutes(deps.store, deps.logger, { onBounced: deps.onBounced, busyDomains: deps.busyDomains }),
  );
  return app;
}
