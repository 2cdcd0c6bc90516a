/**
 * Opens the queue for the serving relay and every admin command: the embedded SQLite in `dataDir` by
 * default, or the PostgreSQL database that the `database` setting names (one queue shared by several
 * relay nodes; the README's "Several relay nodes"). The PostgreSQL driver is loaded only then, so the default keeps
 * its start-up time.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Config } from "../config/fields.ts";
import type { Queue } from "./queue.ts";
import { SqliteQueue } from "./sqlite_queue.ts";

/** The settings that choose and shape the queue. */
export type QueueConfig = Pick<
  Config,
  "dataDir" | "queueCacheSize" | "database" | "nodeName" | "databasePoolSize" | "clusterLeaseTtl"
>;

/** Options of {@linkcode openQueue}. */
export interface OpenQueueOptions {
  clock?: Clock;
  /** The long-running relay (a bigger SQLite page cache) rather than one admin command. */
  serving?: boolean;
  /** Told of connection errors the PostgreSQL pool recovers from by itself (logged by the relay). */
  onConnectionError?: (error: Error) => void;
  /** Told when this node's lease heartbeat fails (PostgreSQL; its leases lapse after clusterLeaseTtl). */
  onHeartbeatError?: (error: Error) => void;
}

/** Opens (creating and migrating when needed) the configured queue. */
export async function openQueue(config: QueueConfig, options: OpenQueueOptions = {}): Promise<Queue> {
  if (config.database !== null) {
    const { PostgresQueue } = await import("./pg/postgres_queue.ts");
    return await PostgresQueue.open(config.database, {
      ...(options.clock ? { clock: options.clock } : {}),
      node: config.nodeName,
      poolSize: config.databasePoolSize,
      leaseTtlMs: config.clusterLeaseTtl,
      onIdleError: options.onConnectionError ?? (() => {}),
      ...(options.onHeartbeatError ? { onHeartbeatError: options.onHeartbeatError } : {}),
    });
  }
  // The page cache matters for the long-running relay's /status and ATRN reads, not for one command.
  return SqliteQueue.open(config.dataDir, options.clock, {
    node: config.nodeName,
    ...(options.serving ? { cacheBytes: config.queueCacheSize } : {}),
  });
}
