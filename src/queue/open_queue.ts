/**
 * Opens the queue for the serving relay and every admin command. Today that is the embedded SQLite in
 * `dataDir`; the PostgreSQL backend (src/queue/pg/) plugs in here once its schema lands.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Config } from "../config/fields.ts";
import type { Queue } from "./queue.ts";
import { SqliteQueue } from "./sqlite_queue.ts";

/** The settings that choose and shape the queue. */
export type QueueConfig = Pick<Config, "dataDir" | "queueCacheSize">;

/** Opens (creating and migrating when needed) the configured queue. */
export function openQueue(
  config: QueueConfig,
  options: { clock?: Clock; serving?: boolean } = {},
): Promise<Queue> {
  // The page cache matters for the long-running relay's /status and ATRN reads, not for one command.
  return Promise.resolve(
    SqliteQueue.open(
      config.dataDir,
      options.clock,
      options.serving ? { cacheBytes: config.queueCacheSize } : {},
    ),
  );
}
