/** Opens the queue under a data directory: for the serving relay and for admin commands. */
import type { Clock } from "../clock.ts";
import { databasePath, openDatabase, type OpenOptions } from "./db.ts";
import { cleanSpoolDir } from "./spool.ts";
import { QueueStore } from "./store.ts";

/** Opens (creating and migrating when needed) the store under `dataDir`. */
export function openStore(dataDir: string, clock?: Clock, options: OpenOptions = {}): QueueStore {
  return new QueueStore(openDatabase(databasePath(dataDir), options), clock);
}

/** Opens the store for the serving process: also clears spool files a crash left behind. */
export function openServingStore(
  dataDir: string,
  clock?: Clock,
  options: OpenOptions = {},
): { store: QueueStore; staleSpoolFiles: number } {
  const store = openStore(dataDir, clock, options);
  return { store, staleSpoolFiles: cleanSpoolDir(spoolDir(dataDir)) };
}

/** Where incoming bodies larger than a chunk are spooled while DATA streams in. */
export function spoolDir(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/spool`;
}
