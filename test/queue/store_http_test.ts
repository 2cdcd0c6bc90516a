// Store methods the HTTP API added: O(1) counters and per-domain index seeks, never a queue scan.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";
import { ManualClock } from "../../src/clock.ts";

function seeded() {
  const clock = new ManualClock(5_000_000);
  const { store } = tempStore(clock);
  store.addAccount("alice", testSecrets("pw"));
  store.addDomain("a.test", "alice");
  store.addDomain("b.test", "alice");
  store.addDomain("empty.test", "alice");
  const m1 = store.enqueue(
    incoming("s@x.org", ["1@a.test", "2@b.test"]),
    bodyOf("Subject: 1\r\n\r\nhello\r\n"),
  );
  clock.advance(1000);
  const m2 = store.enqueue(incoming("s@x.org", ["3@a.test"]), bodyOf("Subject: 2\r\n\r\nhi\r\n"));
  return { store, m1, m2, advance: (ms: number) => clock.advance(ms) };
}

describe("QueueStore HTTP reads", () => {
  test("queueCounts reads the trigger-kept totals", () => {
    const { store, m1, m2 } = seeded();
    const size1 = store.getMessage(m1)!.size;
    const size2 = store.getMessage(m2)!.size;
    assert.deepEqual(store.queueCounts(), { messages: 2, bytes: size1 + size2, queuedRecipients: 3 });
    store.bounceMessage(m1, "gone");
    assert.deepEqual(store.queueCounts(), { messages: 2, bytes: size1 + size2, queuedRecipients: 1 });
    store.deleteMessage(m1);
    assert.deepEqual(store.queueCounts(), { messages: 1, bytes: size2, queuedRecipients: 1 });
  });

  test("domainQueueStatus: counters, owner, hold and oldest queued time per domain", () => {
    const { store, m1 } = seeded();
    store.setDomainHold("b.test", true);
    const pick = () =>
      store.domainQueueStatus().map((
        d,
      ) => [d.name, d.username, d.hold, d.queuedRecipients, d.oldestQueuedAt]);
    assert.deepEqual(pick(), [
      ["a.test", "alice", false, 2, 5_000_000],
      ["b.test", "alice", true, 1, 5_000_000],
      ["empty.test", "alice", false, 0, null],
    ]);
    store.bounceMessage(m1, "gone");
    assert.deepEqual(pick(), [
      ["a.test", "alice", false, 1, 5_001_000],
      ["b.test", "alice", true, 0, null],
      ["empty.test", "alice", false, 0, null],
    ]);
    const a = store.domainQueueStatus()[0]!;
    assert.equal(a.queuedBytes, store.getMessage(m1 + 1)!.size);
    assert.equal(a.lastAtrnAt, null);
    const { store: fresh } = tempStore();
    assert.deepEqual(fresh.domainQueueStatus(), []);
  });

  test("domainQueueStatus carries the last collection and failure", () => {
    const { store } = seeded();
    store.recordAtrnSession({
      accountId: store.findAccount("alice")!.id,
      username: "alice",
      domains: ["a.test"],
      peer: "198.51.100.7",
      tls: true,
      startedAt: 6_000_000,
      endedAt: 6_000_500,
      delivered: 2,
      deferred: 1,
      failed: 0,
      outcome: "turned",
      detail: null,
    });
    const a = store.domainQueueStatus()[0]!;
    assert.deepEqual(
      [a.lastAtrnAt, a.lastAtrnPeer, a.lastAtrnDelivered, a.lastFailureAt, a.lastFailureText],
      [6_000_500, "198.51.100.7", 2, 6_000_500, "1 deferred, 0 failed"],
    );
  });

  test("the oldest-per-domain lookup is an index seek, not a scan", () => {
    const { store } = seeded();
    const plan = store.database.raw.prepare(
      "EXPLAIN QUERY PLAN SELECT d.name, (SELECT MIN(r.queued_at) FROM recipients r " +
        "WHERE r.domain = d.name AND r.status = 'queued') FROM domains d",
    ).all() as { detail: string }[];
    const text = plan.map((p) => p.detail).join("; ");
    assert.match(text, /USING COVERING INDEX recipients_domain_status_queued_at/);
    assert.doesNotMatch(text, /SCAN recipients/);
  });

  test("hasDomain is case-insensitive", () => {
    const { store } = seeded();
    assert.equal(store.hasDomain("A.Test"), true);
    assert.equal(store.hasDomain("empty.test"), true);
    assert.equal(store.hasDomain("nope.test"), false);
  });
});
