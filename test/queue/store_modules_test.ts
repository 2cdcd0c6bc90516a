/**
 * The shape of the queue layer: transactions behave as the store promises, each store module keeps to
 * one SQL style, and SQL runs only in the store modules (never past the store). The behaviour of each
 * module is tested through QueueStore in store_test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DatabaseSync } from "node:sqlite";
import { POSTMASTER_MAILBOX } from "../../src/queue/postmaster.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";
import { ManualClock } from "../../src/clock.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function seeded() {
  const clock = new ManualClock(1_000_000);
  const { store } = tempStore(clock);
  store.addAccount("alice", testSecrets("alice-secret"));
  store.addDomain("a.test", "alice");
  return { store, advance: (ms: number) => clock.advance(ms) };
}

const count = (store: ReturnType<typeof seeded>["store"], table: string) =>
  (store.database.raw.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;

describe("transactions", () => {
  test("transaction commits, rolls back on a throw and rethrows, and is not re-entrant", () => {
    const { store } = seeded();
    const id = store.transaction(() =>
      store.enqueueInTransaction(incoming("s@x.test", ["u@a.test"]), bodyOf("1"))
    );
    assert.equal(typeof id, "number");
    assert.equal(count(store, "messages"), 1);
    assert.throws(
      () =>
        store.transaction(() => {
          store.enqueueInTransaction(incoming("s@x.test", ["u@a.test"]), bodyOf("2"));
          throw new Error("boom");
        }),
      /boom/,
    );
    assert.equal(count(store, "messages"), 1, "the rolled-back message is gone");
    assert.equal(store.database.raw.isTransaction, false);
    assert.throws(() => store.transaction(() => store.transaction(() => 1)));
    assert.equal(store.database.raw.isTransaction, false, "the outer one was rolled back too");
  });

  test("transaction takes the write lock at BEGIN (IMMEDIATE), not at the first write", () => {
    const { store } = seeded();
    const other = new DatabaseSync(store.database.path);
    other.exec("PRAGMA busy_timeout = 0");
    try {
      store.transaction(() => {
        assert.throws(() => other.exec("BEGIN IMMEDIATE"), /locked|busy/i);
      });
      other.exec("BEGIN IMMEDIATE");
      other.exec("ROLLBACK");
    } finally {
      other.close();
    }
  });

  test("a savepoint rolls back alone and the transaction goes on", () => {
    const { store } = seeded();
    store.transaction(() => {
      store.enqueueInTransaction(incoming("s@x.test", ["u1@a.test"]), bodyOf("kept"));
      assert.throws(() =>
        store.savepoint("inner", () => {
          store.enqueueInTransaction(incoming("s@x.test", ["u2@a.test"]), bodyOf("dropped"));
          throw new Error("inner failure");
        }), /inner failure/);
      assert.equal(store.savepoint("again", () => 7), 7);
    });
    assert.deepEqual(store.listQueue().map((m) => m.recipients[0]!.address), ["u1@a.test"]);
  });
});

describe("store modules", () => {
  test("expireQueued fails a domain's old recipients only, keeping their last reply", () => {
    const { store, advance } = seeded();
    const old = store.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf("old"));
    const [m] = store.nextDeliverable(["a.test"], 0);
    store.recordOutcomes(old, [{ id: m!.recipients[0]!.id, result: "deferred", code: 421, text: "busy" }]);
    const cutoff = advance(1000);
    store.enqueue(incoming("s@x.test", ["v@a.test"]), bodyOf("new"));
    assert.deepEqual(store.expiryCandidates().map((d) => ({ ...d })), [{
      name: "a.test",
      retentionMs: null,
    }]);
    assert.equal(store.transaction(() => store.expireQueued("a.test", cutoff, "expired")), 1);
    const rows = store.getMessage(old)!.recipients;
    assert.deepEqual(rows.map((r) => [r.status, r.failureKind, r.lastCode, r.lastText]), [
      ["failed", "expired", 421, "busy"],
    ]);
    assert.equal(store.totals().queuedRecipients, 1);
  });

  test("the postmaster mailbox: bytes, count, waiting rows and removal with the message", () => {
    const { store } = seeded();
    const message = incoming("s@x.test", []);
    message.recipients.push({ address: "Postmaster", domain: POSTMASTER_MAILBOX, notify: null, orcpt: null });
    message.recipients.push({ address: "u@a.test", domain: "a.test", notify: null, orcpt: null });
    const id = store.enqueue(message, bodyOf("to the postmaster\r\n"));
    assert.equal(store.postmasterMailboxCount(), 1);
    assert.equal(store.postmasterMailboxBytes(), "to the postmaster\r\n".length);
    const [row, ...rest] = store.postmasterWaiting(50);
    assert.deepEqual(rest, []);
    assert.deepEqual({ ...row!, id: 0 }, {
      id: 0,
      messageId: id,
      mailFrom: "s@x.test",
      size: 19,
      eightBit: false,
      smtputf8: false,
    });
    store.transaction(() => store.removeForwardedPostmaster(row!.id, id));
    assert.equal(store.postmasterMailboxCount(), 0);
    assert.notEqual(store.getMessage(id), null, "the message stays for its other recipient");
  });

  test("ATRN history is pruned by start time", () => {
    const { store } = seeded();
    const record = (startedAt: number) =>
      store.recordAtrnSession({
        accountId: null,
        username: "alice",
        domains: [],
        peer: "192.0.2.1",
        tls: false,
        startedAt,
        endedAt: startedAt + 1,
        delivered: 0,
        deferred: 0,
        failed: 0,
        outcome: "no-mail",
        detail: null,
      });
    record(10);
    record(20);
    assert.equal(store.pruneAtrnHistory(20), 1);
    assert.deepEqual(store.recentAtrnSessions().map((s) => s.startedAt), [20]);
  });
});

/** Every .ts file under `dir`, relative to the repository. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return sources(path);
    return e.isFile() && e.name.endsWith(".ts") ? [path] : [];
  });
}

const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

/** Where SQL may run: the store modules, the database opener and migrations, and the runtime adapter. */
const SQL_HOMES = new Set([
  "src/queue/accounts_store.ts",
  "src/queue/admin_store.ts",
  "src/queue/atrn_store.ts",
  "src/queue/copy_to_postgres.ts",
  "src/queue/db.ts",
  "src/queue/delivery_store.ts",
  "src/queue/domains_store.ts",
  "src/queue/enqueue.ts",
  "src/queue/migrate.ts",
  "src/queue/outbound_queue.ts",
  "src/queue/postmaster_store.ts",
  "src/queue/report_store.ts",
  "src/queue/status_store.ts",
  "src/queue/store.ts",
  "src/queue/transaction.ts",
  "src/runtime/sqlite.ts",
]);

/** A prepared statement or raw SQL on the node:sqlite handle. */
const RAW_SQL = /\braw\.(?:prepare|exec)\(/;
/** A drizzle query builder call. */
const BUILDER = /\bdb\.(?:select|selectDistinct|insert|update|delete)\(/;

describe("queue layering", () => {
  test("SQL runs only in the store modules, never past the store", () => {
    const offenders = sources("src").filter((path) =>
      !SQL_HOMES.has(path) && (RAW_SQL.test(read(path)) || BUILDER.test(read(path)))
    );
    assert.deepEqual(offenders, []);
  });

  test("each store module keeps to one SQL style", () => {
    const builder = ["accounts_store.ts", "admin_store.ts", "atrn_store.ts", "domains_store.ts"];
    const prepared = [
      "delivery_store.ts",
      "enqueue.ts",
      "outbound_queue.ts",
      "postmaster_store.ts",
      "report_store.ts",
      "status_store.ts",
    ];
    for (const name of builder) {
      const text = read(`src/queue/${name}`);
      assert.equal(RAW_SQL.test(text), false, `${name} uses drizzle's builder only`);
      assert.equal(BUILDER.test(text), true, name);
    }
    for (const name of prepared) {
      const text = read(`src/queue/${name}`);
      assert.equal(BUILDER.test(text), false, `${name} uses prepared statements only`);
      assert.equal(RAW_SQL.test(text), true, name);
    }
  });

  test("no queue source file is over 500 lines", () => {
    for (const path of sources("src/queue")) {
      const lines = read(path).split("\n").length;
      assert.ok(lines <= 500 || path === "src/queue/migrations_bundle.ts", `${path}: ${lines} lines`);
    }
  });
});
