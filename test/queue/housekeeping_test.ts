import { test } from "node:test";
import assert from "node:assert/strict";
import { EXPIRED_TEXT, expireRecipients, pruneAtrnHistory } from "../../src/queue/housekeeping.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";
import { ManualClock } from "../../src/clock.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

test("recipients older than the lifetime (or the domain's override) are failed with 4.4.7", async () => {
  const clock = new ManualClock(0);
  const { store } = tempStore(clock);
  store.addAccount("alice", testSecrets("secret"));
  store.addDomain("a.test", "alice");
  store.addDomain("short.test", "alice");
  store.database.raw.prepare("UPDATE domains SET retention_ms = 1000 WHERE name = 'short.test'").run();
  const old = store.enqueue(incoming("s@x.test", ["u@a.test", "v@short.test"]), bodyOf("old"));
  clock.set(5_000);
  store.enqueue(incoming("s@x.test", ["w@a.test"]), bodyOf("new"));
  clock.set(8_000);
  // Lifetime 6 s: the first a.test recipient (age 8 s) expires, the second (age 3 s) does not;
  // short.test's 1 s override expires its recipient too.
  const expired = await expireRecipients(new SqliteQueue(store), 6_000, clock);
  assert.deepEqual(Object.fromEntries(expired), { "a.test": 1, "short.test": 1 });
  const rcpts = store.getMessage(old)!.recipients;
  assert.ok(rcpts.every((r) => r.status === "failed" && r.lastText === EXPIRED_TEXT));
  assert.equal(store.totals().queuedRecipients, 1);
  assert.equal(
    (await expireRecipients(new SqliteQueue(store), 6_000, clock)).size,
    0,
    "a second pass finds nothing",
  );
});

test("ATRN history older than the retention is pruned", async () => {
  const clock = new ManualClock(0);
  const { store } = tempStore(clock);
  const record = (startedAt: number) =>
    store.recordAtrnSession({
      accountId: null,
      username: "x",
      domains: [],
      peer: "127.0.0.1",
      tls: false,
      startedAt,
      endedAt: startedAt,
      delivered: 0,
      deferred: 0,
      failed: 0,
      outcome: "refused",
      detail: null,
    });
  record(1_000);
  record(50_000);
  clock.set(60_000);
  assert.equal(await pruneAtrnHistory(new SqliteQueue(store), 20_000, clock), 1);
  assert.equal(store.recentAtrnSessions(10).length, 1);
});
