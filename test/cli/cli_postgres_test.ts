/**
 * The admin commands on the shared queue: `migrate`, `user` and `domain` take `--database` (or
 * ODMR_RELAY_DATABASE), `migrate --to` copies a data directory's SQLite queue over, and the password in
 * the URL never appears in what the commands print. A real throwaway PostgreSQL cluster.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "../../src/cli/run.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { tempDir } from "../support/temp.ts";

async function cli(args: string[], env: Record<string, string> = {}, stdin = "") {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    readStdin: () => Promise.resolve(stdin),
    env,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("admin commands on PostgreSQL", { skip: postgresSkipReason() }, () => {
  let server: TestPostgres;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  test("migrate, user and domain with --database; the password is never printed", async () => {
    const url = await server.createDatabase("cli_admin");
    const first = await cli(["migrate", "--database", url]);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /^applied .+; schema version \d+$/);
    const again = await cli(["migrate", "--database", url]);
    assert.match(again.out, /^schema is current \(version (\d+) of \1\)$/);

    const add = await cli(["user", "add", "alice", "--generate", "--database", url]);
    assert.equal(add.code, 0, add.err);
    // The environment selects the database as well as the flag.
    const env = { ODMR_RELAY_DATABASE: url };
    assert.equal((await cli(["domain", "add", "example.test", "--user", "alice"], env)).code, 0);
    const list = await cli(["domain", "list", "--json"], env);
    assert.deepEqual(
      (JSON.parse(list.out) as { name: string; username: string }[]).map((d) => [d.name, d.username]),
      [["example.test", "alice"]],
    );
    const users = await cli(["user", "list", "--json", "--database", url]);
    assert.equal((JSON.parse(users.out) as unknown[]).length, 1);

    const shown = await cli(["check-config", "--database", url]);
    assert.equal(shown.code, 0, shown.err);
    assert.ok(!shown.out.includes(server.password), "check-config masks the password");
    assert.match(shown.out, /database\s+postgres(ql)?:\/\/relay:\*\*\*@127\.0\.0\.1/);
  });

  test("a URL that is not PostgreSQL is refused with the reason", async () => {
    const bad = await cli(["domain", "list", "--database", "mysql://x@127.0.0.1/db"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /database.*postgres:\/\/ URL/);
  });

  test("an unreachable database is a clear error, not a hang", async () => {
    const url = await server.createDatabase("cli_gone");
    const gone = url.replace(/:(\d+)\//, ":1/");
    const result = await cli(["user", "list", "--database", gone]);
    assert.equal(result.code, 1);
    assert.match(result.err, /ECONNREFUSED|connect/);
    assert.ok(!result.err.includes(server.password));
  });

  test("migrate --to copies a SQLite queue that the nodes then share", async () => {
    const dir = tempDir();
    assert.equal((await cli(["user", "add", "bob", "--generate", "--data-dir", dir])).code, 0);
    assert.equal((await cli(["domain", "add", "b.test", "--user", "bob", "--data-dir", dir])).code, 0);
    const url = await server.createDatabase("cli_copy");
    const copied = await cli(["migrate", "--data-dir", dir, "--to", url]);
    assert.equal(copied.code, 0, copied.err);
    assert.match(copied.out, /^accounts 1 -> 1$/m);
    assert.match(copied.out, /^domains 1 -> 1$/m);
    assert.ok(!copied.out.includes(server.password));
    const list = await cli(["domain", "list", "--json", "--database", url]);
    assert.deepEqual((JSON.parse(list.out) as { name: string }[]).map((d) => d.name), ["b.test"]);
    // A second copy would merge two queues: refused, and the target stays as it is.
    const twice = await cli(["migrate", "--data-dir", dir, "--to", url]);
    assert.equal(twice.code, 1);
    const both = await cli(["migrate", "--database", url, "--to", url]);
    assert.equal(both.code, 2);
  });
});
