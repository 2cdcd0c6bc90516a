/**
 * Group commit of delivery outcomes (deliver_session.ts): outcomes of several messages are recorded in
 * one `recordOutcomesMany` transaction. The queue after a session must be exactly what per-message
 * recording gives; a dropped connection leaves every unconfirmed recipient queued and every confirmed,
 * flushed one gone; a failing store write is logged and loses nothing.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type DeliverOptions, deliverQueued, type DeliverResult } from "../../src/client/deliver_session.ts";
import { Logger } from "../../src/log/logger.ts";
import type { QueueStore } from "../../src/queue/store.ts";
import { type FakeScript, type FakeSession, sleep, startFakeCustomer } from "../support/fake_customer.ts";
import { customerStore, DOMAIN, enqueue, queueState, testConfig, textBody } from "./_helpers.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

type Extra = Partial<Pick<DeliverOptions, "outcomeBatch" | "logger" | "pageSize">> & {
  pipelining?: "never" | "always";
};

async function run(
  store: QueueStore,
  script: FakeScript,
  extra: Extra = {},
): Promise<{ result: DeliverResult; session: FakeSession }> {
  const fake = await startFakeCustomer(script);
  try {
    const { conn, session } = await fake.connect();
    const options: DeliverOptions = {
      conn,
      store: new SqliteQueue(store),
      domains: [DOMAIN],
      hostname: "relay.test",
      config: testConfig({ atrnPipelining: extra.pipelining ?? "never" }),
    };
    if (extra.outcomeBatch !== undefined) options.outcomeBatch = extra.outcomeBatch;
    if (extra.logger !== undefined) options.logger = extra.logger;
    if (extra.pageSize !== undefined) options.pageSize = extra.pageSize;
    const result = await deliverQueued(options);
    return { result, session };
  } finally {
    await fake.close();
  }
}

/** A logger that keeps its lines. */
function memoryLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level: "info", sink: (l) => lines.push(l) }), lines };
}

/** 30 messages with mixed fates: bad@ fails (550), busy@ is deferred (450), the rest delivered. */
function seedMixed(store: QueueStore): number[] {
  const ids: number[] = [];
  for (let i = 0; i < 30; i++) {
    const rcpts = [`u${i}@example.test`];
    if (i % 5 === 0) rcpts.push(`bad${i}@example.test`);
    if (i % 7 === 0) rcpts.push(`busy${i}@example.test`);
    if (i % 4 === 0) rcpts.push(`x${i}@other.test`); // not granted: untouched
    ids.push(enqueue(store, rcpts, textBody(`m${i}`)));
  }
  return ids;
}

const mixedScript: FakeScript = {
  respond: (line) => {
    if (line.includes("<bad")) return "550 5.1.1 User unknown";
    if (line.includes("<busy")) return "450 4.2.1 Mailbox busy";
    return undefined;
  },
};

/** Every message's queue state (attempt times excluded, they come from the clock). */
function snapshot(store: QueueStore, ids: number[]): unknown {
  return ids.map((id) => queueState(store, id));
}

describe("outcome batching (group commit)", () => {
  for (const pipelining of ["never", "always"] as const) {
    test(`the queue after a session is the same as with per-message records (pipelining ${pipelining})`, async () => {
      const states: unknown[] = [];
      const results: number[][] = [];
      for (const outcomeBatch of [{ messages: 1 }, {}, { messages: 7 }, { messages: 1000, ms: 5 }]) {
        const store = customerStore();
        const ids = seedMixed(store);
        const { result } = await run(store, mixedScript, { outcomeBatch, pipelining, pageSize: 8 });
        assert.equal(result.outcome, "completed");
        results.push([result.delivered, result.deferred, result.failed, result.messages]);
        states.push(snapshot(store, ids));
      }
      assert.deepEqual(results[0], [30, 5, 6, 30]);
      for (let i = 1; i < states.length; i++) {
        assert.deepEqual(results[i], results[0]);
        assert.deepEqual(states[i], states[0]);
      }
    });
  }

  test("mail that arrives mid-session is still found before QUIT (flush before the next page)", async () => {
    const store = customerStore();
    for (let i = 0; i < 5; i++) enqueue(store, [`a${i}@example.test`], textBody(`a${i}`));
    let added = 0;
    const { result, session } = await run(store, {
      endOfData: () => {
        if (added < 3) enqueue(store, [`late${added++}@example.test`], textBody("late"));
        return undefined;
      },
    }, { outcomeBatch: { messages: 1000, ms: 60_000 } });
    assert.equal(result.outcome, "completed");
    assert.equal(result.delivered, 8);
    assert.equal(session.messages.length, 8);
    assert.equal(store.totals().messages, 0);
  });

  test("a flush happens after N messages: confirmed ones leave the queue during the session", async () => {
    const store = customerStore();
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(enqueue(store, [`u${i}@example.test`], textBody(`m${i}`)));
    const seen: number[] = [];
    await run(store, {
      // At the k-th final dot (k from 1), the first floor((k-1)/4)*4 messages are recorded and gone.
      endOfData: (_m, s) => {
        const k = s.messages.length;
        seen.push(ids.filter((id) => queueState(store, id) === null).length);
        assert.equal(seen.at(-1), Math.floor((k - 1) / 4) * 4);
        return undefined;
      },
    }, { outcomeBatch: { messages: 4, ms: 60_000 }, pageSize: 100 });
    assert.deepEqual(seen, [0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8]);
    assert.equal(store.totals().messages, 0);
  });

  test("the timer flushes a slow session's outcomes without waiting for N messages", async () => {
    const store = customerStore();
    const first = enqueue(store, ["a@example.test"], textBody("one"));
    enqueue(store, ["b@example.test"], textBody("two"));
    let firstGoneAtSecondDot: boolean | null = null;
    await run(store, {
      endOfData: (_m, s) => {
        if (s.messages.length === 2) {
          firstGoneAtSecondDot = queueState(store, first) === null;
        }
        return s.messages.length === 1 ? { kind: "delay", ms: 0, reply: "250 2.0.0 Ok" } : undefined;
      },
      respond: (
        line,
      ) => (line.startsWith("MAIL") ? { kind: "delay", ms: 150, reply: "250 2.1.0 Ok" } : undefined),
    }, { outcomeBatch: { messages: 1000, ms: 20 }, pageSize: 100 });
    assert.equal(firstGoneAtSecondDot, true);
    assert.equal(store.totals().messages, 0);
  });

  for (const batchSize of [4, 1000]) {
    test(`a drop mid-session (batch ${batchSize}): confirmed gone, unconfirmed queued, untried untouched`, async () => {
      const store = customerStore();
      const ids: number[] = [];
      for (let i = 0; i < 10; i++) ids.push(enqueue(store, [`u${i}@example.test`], textBody(`m${i}`)));
      const { result } = await run(store, {
        // The customer hangs up in the middle of the 7th message's content.
        onContent: (_bytes, s) => (s.messages.length === 6 ? { kind: "close" } : undefined),
      }, { outcomeBatch: { messages: batchSize, ms: 60_000 }, pageSize: 100 });
      assert.equal(result.outcome, "lost");
      assert.equal(result.delivered, 6);
      for (const id of ids.slice(0, 6)) assert.equal(queueState(store, id), null);
      assert.deepEqual(queueState(store, ids[6]!)!.map((r) => [r.status, r.attempts, r.lastCode]), [
        ["queued", 1, 451],
      ]);
      for (const id of ids.slice(7)) {
        assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.attempts]), [["queued", 0]]);
      }
    });
  }

  test("recordOutcomesMany fails: logged, the session stops with QUIT, nothing is lost", async () => {
    const store = customerStore();
    const ids: number[] = [];
    for (let i = 0; i < 10; i++) ids.push(enqueue(store, [`u${i}@example.test`], textBody(`m${i}`)));
    const original = store.recordOutcomesMany.bind(store);
    let calls = 0;
    store.recordOutcomesMany = () => {
      calls++;
      throw new Error("disk I/O error (injected)");
    };
    const { logger, lines } = memoryLogger();
    const { result, session } = await run(store, {}, {
      outcomeBatch: { messages: 3, ms: 60_000 },
      logger,
      pageSize: 100,
    });
    assert.equal(result.outcome, "local");
    assert.match(result.detail!, /Queue update failed: disk I\/O error \(injected\)/);
    // Three messages went out, the flush failed, nothing more was sent; the final retry failed too.
    assert.equal(session.messages.length, 3);
    assert.equal(session.commands.at(-1), "QUIT");
    assert.equal(calls, 2);
    assert.deepEqual([result.delivered, result.deferred], [0, 3]);
    assert.ok(lines.some((l) => /level=error/.test(l) && /recording delivery outcomes failed/.test(l)));
    assert.ok(lines.some((l) => /not recorded; the messages stay queued/.test(l) && /msgIds=1,2,3/.test(l)));
    // Nothing lost: every message is still queued (the first three will be delivered again: duplicates).
    for (const id of ids) assert.notEqual(queueState(store, id), null);
    // The next session, with a working store, delivers all ten.
    store.recordOutcomesMany = original;
    const again = await run(store, {}, {});
    assert.equal(again.result.delivered, 10);
    assert.equal(store.totals().messages, 0);
  });

  test("a transient recording failure: the final retry records what the customer confirmed", async () => {
    const store = customerStore();
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push(enqueue(store, [`u${i}@example.test`], textBody(`m${i}`)));
    const original = store.recordOutcomesMany.bind(store);
    let calls = 0;
    store.recordOutcomesMany = (entries) => {
      if (calls++ === 0) throw new Error("database is locked (injected)");
      original(entries);
    };
    const { logger, lines } = memoryLogger();
    const { result } = await run(store, {}, {
      outcomeBatch: { messages: 2, ms: 60_000 },
      logger,
      pageSize: 100,
    });
    assert.equal(result.outcome, "local");
    assert.deepEqual([result.delivered, result.deferred], [2, 0]);
    assert.deepEqual(ids.map((id) => queueState(store, id) === null), [true, true, false, false, false]);
    assert.ok(lines.some((l) => /recorded on the final try/.test(l)));
  });

  test("a failure in a timer flush also stops the session and loses nothing", async () => {
    const store = customerStore();
    const ids: number[] = [];
    for (let i = 0; i < 4; i++) ids.push(enqueue(store, [`u${i}@example.test`], textBody(`m${i}`)));
    store.recordOutcomesMany = () => {
      throw new Error("readonly database (injected)");
    };
    const { logger } = memoryLogger();
    const { result, session } = await run(store, {
      respond: (
        line,
      ) => (line.startsWith("MAIL") ? { kind: "delay", ms: 60, reply: "250 2.1.0 Ok" } : undefined),
    }, { outcomeBatch: { messages: 1000, ms: 10 }, logger, pageSize: 100 });
    assert.equal(result.outcome, "local");
    assert.ok(session.messages.length < 4);
    for (const id of ids) assert.notEqual(queueState(store, id), null);
    await sleep(0);
  });
});
