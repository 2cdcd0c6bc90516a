import { test } from "node:test";
import assert from "node:assert/strict";
import { GroupCommitter } from "../../src/queue/group_commit.ts";
import { concat } from "../../src/queue/spool.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

function seeded() {
  const { store } = tempStore();
  store.addAccount("alice", testSecrets("secret"));
  store.addDomain("a.test", "alice");
  return store;
}

const broken = {
  size: 3,
  eightBit: false,
  *chunks(): Generator<Uint8Array> {
    yield new Uint8Array(300_000);
    throw new Error("spool read failed");
  },
};

test("enqueueMany isolates a failing message in its savepoint; the others commit", () => {
  const store = seeded();
  const results = store.enqueueMany([
    { message: incoming("s@x.test", ["u1@a.test"]), body: bodyOf("one\r\n") },
    { message: incoming("s@x.test", ["u2@a.test"]), body: broken },
    { message: incoming("s@x.test", ["u3@a.test"]), body: bodyOf("three\r\n") },
  ]);
  assert.equal(typeof results[0], "number");
  assert.ok(results[1] instanceof Error);
  assert.equal(typeof results[2], "number");
  assert.deepEqual(store.totals(), {
    messages: 2,
    bytes: 12,
    queuedRecipients: 2,
    oldestQueuedAt: store.totals().oldestQueuedAt,
  });
  assert.equal(new TextDecoder().decode(concat([...store.readBody(results[2] as number)])), "three\r\n");
  assert.equal(
    store.database.raw.prepare("SELECT COUNT(*) AS n FROM message_chunks").get()!.n,
    0,
    "no chunk of the failed message remains",
  );
});

test("concurrent enqueues share commits and each resolves with its own id", async () => {
  const store = seeded();
  const committer = new GroupCommitter(new SqliteQueue(store));
  const ids = await Promise.all(
    Array.from(
      { length: 40 },
      (_, i) => committer.enqueue(incoming("s@x.test", [`u${i}@a.test`]), bodyOf(`m${i}\r\n`)),
    ),
  );
  assert.equal(new Set(ids).size, 40);
  assert.equal(committer.committed, 40);
  assert.ok(committer.commits < 40, `40 messages took ${committer.commits} commits`);
  for (const [i, id] of ids.entries()) {
    assert.equal(new TextDecoder().decode(concat([...store.readBody(id)])), `m${i}\r\n`);
  }
});

test("a failing message in a group rejects only its own promise", async () => {
  const store = seeded();
  const committer = new GroupCommitter(new SqliteQueue(store));
  const results = await Promise.allSettled([
    committer.enqueue(incoming("s@x.test", ["u1@a.test"]), bodyOf("ok\r\n")),
    committer.enqueue(incoming("s@x.test", ["u2@a.test"]), broken),
    committer.enqueue(incoming("s@x.test", ["u3@a.test"]), bodyOf("ok\r\n")),
  ]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.equal(store.totals().messages, 2);
});

test("a failed COMMIT rejects the whole group and stores nothing", async () => {
  const store = seeded();
  const committer = new GroupCommitter(new SqliteQueue(store));
  // A second connection holding the write lock makes BEGIN IMMEDIATE fail after busy_timeout.
  store.database.raw.exec("PRAGMA busy_timeout = 50");
  const { DatabaseSync } = await import("node:sqlite");
  const other = new DatabaseSync(store.database.path);
  other.exec("BEGIN IMMEDIATE");
  const results = await Promise.allSettled([
    committer.enqueue(incoming("s@x.test", ["u1@a.test"]), bodyOf("a\r\n")),
    committer.enqueue(incoming("s@x.test", ["u2@a.test"]), bodyOf("b\r\n")),
  ]);
  other.exec("ROLLBACK");
  other.close();
  assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
  assert.equal(store.totals().messages, 0);
});

test("messages from sessions still in DATA wait briefly and share one commit", async () => {
  const store = seeded();
  const committer = new GroupCommitter(new SqliteQueue(store), { maxWaitMs: 1000 });
  for (let i = 0; i < 3; i++) committer.beginData();
  const first = committer.enqueue(incoming("s@x.test", ["u1@a.test"]), bodyOf("1\r\n"), { fromData: true });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(committer.commits, 0, "the first message waits for the two sessions still in DATA");
  const second = committer.enqueue(incoming("s@x.test", ["u2@a.test"]), bodyOf("2\r\n"), { fromData: true });
  committer.abandonData(); // the third session's message was refused: nobody is receiving now
  await Promise.all([first, second]);
  assert.equal(committer.commits, 1);
  assert.equal(committer.committed, 2);
});

test("a lone sender is committed without waiting for the timer", async () => {
  const store = seeded();
  const committer = new GroupCommitter(new SqliteQueue(store), { maxWaitMs: 60_000 });
  committer.beginData();
  await committer.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf("x\r\n"), { fromData: true });
  assert.equal(committer.commits, 1);
});
