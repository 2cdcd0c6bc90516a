/** Opens the queue store for admin commands that work on the database directly. */
import { cleanSpoolDir } from "../queue/spool.ts";
import { databasePath, openDatabase } from "../queue/db.ts";
import { QueueStore } from "../queue/store.ts";

/** Opens (creating and migrating when needed) the store under `dataDir`. */
export function openStore(dataDir: string): QueueStore {
  return new QueueStore(openDatabase(databasePath(dataDir)));
}

/** Opens the store for the serving process: also clears spool files a crash left behind. */
export function openServingStore(dataDir: string): { store: QueueStore; staleSpoolFiles: number } {
  const store = openStore(dataDir);
  return { store, staleSpoolFiles: cleanSpoolDir(spoolDir(dataDir)) };
}

/** Where incoming bodies larger than a chunk are spooled while DATA streams in. */
export function spoolDir(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/spool`;
}
