/**
 * The shared queue over TLS to the database: `database = postgres://...?sslmode=verify-full&sslrootcert=...`
 * carries every pooled session over TLS with the server's certificate verified, and a CA that did not sign
 * it is refused (a real throwaway cluster with a throwaway CA).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { postgresSkipReason, startPostgres, type TestPostgresTls } from "../support/postgres.ts";
import { bodyOf, incoming, testSecrets } from "../support/store.ts";

/** A bundle of public CAs: it does not hold the throwaway CA, so verify-full must fail with it. */
const SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt";

describe("PostgreSQL queue over TLS", { skip: postgresSkipReason() }, () => {
  let server: TestPostgresTls;
  before(async () => {
    server = await startPostgres({ tls: true });
  });
  after(async () => {
    await server?.stop();
  });

  /** The TLS URL of database `name` (tlsUrl names the `postgres` database). */
  async function tlsUrlOf(name: string): Promise<string> {
    await server.createDatabase(name);
    return server.tlsUrl.replace(/\/postgres\?/, `/${name}?`);
  }

  test("intake and delivery run over verify-full TLS; every session is encrypted", async () => {
    const url = await tlsUrlOf("tls_queue");
    const queue = await PostgresQueue.open(url, { node: "tls-test", poolSize: 3 });
    try {
      await queue.addAccount("alice", testSecrets("pw"));
      await queue.addDomain("tls.test", "alice");
      const id = await queue.enqueue(
        incoming("s@x.test", ["u@tls.test"]),
        bodyOf("Subject: t\r\n\r\nhi\r\n"),
      );
      const [message] = await queue.nextDeliverable(["tls.test"], 0);
      assert.equal(message?.id, id);
      const chunks: Uint8Array[] = [];
      for await (const chunk of queue.readBody(id)) chunks.push(chunk);
      assert.equal(new TextDecoder().decode(Buffer.concat(chunks)), "Subject: t\r\n\r\nhi\r\n");
      const ssl = await queue.db.query<{ ssl: boolean; version: string }>(
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
      );
      assert.equal(ssl.rows[0]?.ssl, true);
      assert.match(ssl.rows[0]!.version, /^TLSv1\.[23]$/);
      // No session of this database is in plaintext.
      const plain = await queue.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) " +
          "WHERE a.datname = current_database() AND NOT s.ssl",
      );
      assert.equal(plain.rows[0]?.n, 0);
    } finally {
      await queue.close();
    }
  });

  test(
    "a CA that did not sign the server's certificate is refused",
    { skip: !existsSync(SYSTEM_CAS) },
    async () => {
      const url = (await tlsUrlOf("tls_wrong_ca")).replace(
        /sslrootcert=[^&]+/,
        `sslrootcert=${encodeURIComponent(SYSTEM_CAS)}`,
      );
      await assert.rejects(
        PostgresQueue.open(url, { node: "tls-wrong", poolSize: 1 }),
        /certificate|self.signed|issuer/i,
      );
    },
  );
});
