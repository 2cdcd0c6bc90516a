/**
 * The HTTP status API as a Hono app (DESIGN.md 4, seam 7): `createApp(deps)` builds it, tests call
 * `app.request()`, and the runtime adapter serves it.
 */
import { Hono } from "hono";
import type { QueueStore } from "../queue/store.ts";
import type { Logger } from "../log/logger.ts";
import type { RelayState } from "../relay_state.ts";

/** What the HTTP API needs from the running relay. */
export interface AppDeps {
  store: QueueStore;
  state: RelayState;
  logger: Logger;
  /** Bearer token; null means none configured. */
  token: string | null;
}

/** Builds the HTTP API. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  // Liveness: the process answers.
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  // Readiness: the database takes writes and every configured listener is bound.
  app.get("/readyz", (c) => {
    const dbOk = deps.store.isWritable();
    const listenersOk = deps.state.listeners.every((l) => l.bound);
    const ok = dbOk && listenersOk;
    return c.json(
      { status: ok ? "ready" : "not-ready", database: dbOk, listeners: listenersOk },
      ok ? 200 : 503,
    );
  });
  return app;
}
