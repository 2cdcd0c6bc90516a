/**
 * Assembles the running relay: one process, one event loop, listeners over one SQLite queue
 * (DESIGN.md 1). `startRelay` binds everything or fails with a clear message; `stop` shuts down
 * in order: refuse new connections, let sessions finish within the grace period, close the DB.
 */
import type { Config } from "./config/fields.ts";
import { createApp } from "./http/app.ts";
import type { Logger } from "./log/logger.ts";
import { openServingStore } from "./cli/open_store.ts";
import type { QueueStore } from "./queue/store.ts";
import { RelayState } from "./relay_state.ts";
import { type HttpServer, serveHttp } from "./runtime/http_serve.ts";

/** A started relay. */
export interface Relay {
  store: QueueStore;
  state: RelayState;
  http: HttpServer | null;
  /** Graceful stop; resolves when everything is closed. */
  stop(): Promise<void>;
}

/** Starts every configured listener. */
export async function startRelay(config: Config, logger: Logger): Promise<Relay> {
  const { store, staleSpoolFiles } = openServingStore(config.dataDir);
  if (staleSpoolFiles > 0) {
    logger.warn("removed spool files of unfinished messages", { count: staleSpoolFiles });
  }
  const state = new RelayState();
  const closers: (() => Promise<void>)[] = [];
  let http: HttpServer | null = null;
  try {
    if (config.httpListen) {
      const app = createApp({ store, state, logger, token: config.httpToken });
      http = await serveHttp(config.httpListen.host, config.httpListen.port, app.fetch);
      state.listeners.push({ name: "http", host: http.host, port: http.port, tls: "none", bound: true });
      logger.info("listening", { listener: "http", address: `${http.host}:${http.port}` });
      const server = http;
      closers.push(() => server.stop());
    }
  } catch (error) {
    for (const close of closers.reverse()) await close().catch(() => {});
    store.database.close();
    throw error;
  }
  let stopped: Promise<void> | null = null;
  return {
    store,
    state,
    http,
    stop() {
      stopped ??= (async () => {
        state.shuttingDown = true;
        for (const close of closers.reverse()) {
          await close().catch((error) => logger.error("error while stopping", { error: String(error) }));
        }
        store.database.close();
      })();
      return stopped;
    },
  };
}
