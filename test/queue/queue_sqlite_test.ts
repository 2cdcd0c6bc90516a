/** The Queue contract (queue_suite.ts) over the embedded SQLite queue, one fresh data directory per test. */
import { rmSync } from "node:fs";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";
import { tempDir } from "../support/temp.ts";
import { queueSuite } from "./queue_suite.ts";

queueSuite("sqlite", (clock) => {
  const dataDir = tempDir("odmr-queue-suite-");
  const queue = SqliteQueue.open(dataDir, clock);
  return Promise.resolve({
    queue,
    cleanup: () => Promise.resolve(rmSync(dataDir, { recursive: true, force: true })),
  });
});
