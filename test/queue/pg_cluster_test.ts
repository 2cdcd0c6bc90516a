/** The throwaway PostgreSQL cluster the PostgreSQL queue tests run against (test/support/postgres.ts). */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import pg from "pg";
import { postgresSkipReason, startPostgres, type TestPostgresTls } from "../support/postgres.ts";

/** One statement on a fresh connection, closed afterwards. */
async function queryOnce(url: string, sql: string): Promise<pg.QueryResultRow[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on("error", () => {}); // a server going away must not kill Deno (docs/postgres_driver.md)
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

const SSL_OF_THIS_SESSION = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

describe("throwaway PostgreSQL cluster", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgresTls | undefined;
  const pgc = () => cluster ?? assert.fail("cluster did not start");

  before(async () => {
    const started = Date.now();
    cluster = await startPostgres({ tls: true });
    console.log(`cluster started in ${Date.now() - started} ms`);
  });
  after(async () => {
    await cluster?.stop();
  });

  test("plaintext connection with the generated password; TLS is not used", async () => {
    assert.deepEqual(await queryOnce(pgc().url, SSL_OF_THIS_SESSION), [{ ssl: false }]);
  });

  test("tlsUrl connects with verify-full against the throwaway CA", async () => {
    assert.match(pgc().tlsUrl, /sslmode=verify-full/);
    assert.deepEqual(await queryOnce(pgc().tlsUrl, SSL_OF_THIS_SESSION), [{ ssl: true }]);
  });

  test("a wrong password is refused (SCRAM, not trust)", async () => {
    const wrong = pgc().url.replace(pgc().password, "wrong");
    await assert.rejects(queryOnce(wrong, "SELECT 1"), /password authentication failed/);
  });

  test("createDatabase returns the URL of a new, empty database", async () => {
    const url = await pgc().createDatabase("cluster_test");
    assert.deepEqual(await queryOnce(url, "SELECT current_database() AS db"), [{ db: "cluster_test" }]);
    const tables = await queryOnce(
      url,
      "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'",
    );
    assert.deepEqual(tables, [{ n: 0 }]);
  });

  test("commits are synchronous and fsync is on", async () => {
    const rows = await queryOnce(
      pgc().url,
      "SELECT current_setting('synchronous_commit') AS sc, current_setting('fsync') AS f",
    );
    assert.deepEqual(rows, [{ sc: "on", f: "on" }]);
  });

  test("stopServer makes queries fail with a connection error; startServer brings it back on the same port", async () => {
    await pgc().stopServer();
    await assert.rejects(queryOnce(pgc().url, "SELECT 1"), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, "ECONNREFUSED");
      return true;
    });
    // While another process holds the port, startServer fails and says why from the server log.
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(pgc().port, "127.0.0.1", resolve));
    try {
      await assert.rejects(pgc().startServer(), /server log[\s\S]*Address already in use/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    await pgc().startServer();
    assert.deepEqual(await queryOnce(pgc().url, "SELECT 1 AS one"), [{ one: 1 }]);
  });

  test("stop() removes the directory and may be called twice", async () => {
    const { dir, dataDir } = pgc();
    assert.ok(existsSync(dataDir));
    await pgc().stop();
    await pgc().stop();
    assert.equal(existsSync(dir), false);
  });
});
