/**
 * The Queue contract (queue_suite.ts) over the shared PostgreSQL queue: one throwaway cluster for this
 * file (test/support/postgres.ts), a fresh database for every test, dropped when the test is done.
 */
import { after, before, describe } from "node:test";
import pg from "pg";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { queueSuite } from "./queue_suite.ts";

describe("PostgreSQL queue contract", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres | undefined;
  let databases = 0;

  before(async () => {
    cluster = await startPostgres();
  });

  after(async () => {
    await cluster?.stop();
  });

  /** Drops a test's database once its queue is closed (a cluster of ~100 databases would fill /tmp). */
  async function dropDatabase(name: string): Promise<void> {
    const client = new pg.Client({ connectionString: cluster!.url, connectionTimeoutMillis: 10_000 });
    client.on("error", () => {}); // a server going away must not kill Deno (docs/postgres_driver.md)
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
    } finally {
      await client.end();
    }
  }

  queueSuite("postgres", async (clock) => {
    const name = `queue_suite_${++databases}`;
    const url = await cluster!.createDatabase(name);
    const queue = await PostgresQueue.open(url, { clock, node: "suite", poolSize: 4 });
    return { queue, cleanup: () => dropDatabase(name) };
  });
});
