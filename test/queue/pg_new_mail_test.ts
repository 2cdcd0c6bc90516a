/**
 * New mail across nodes on the shared PostgreSQL queue: enqueue transactions NOTIFY at COMMIT
 * (src/queue/pg/pg_enqueue.ts), another node's dedicated LISTEN connection wakes its watching sessions
 * (src/queue/pg/pg_new_mail.ts), and survives a server restart by reconnecting and waking everyone.
 * Also the cluster's node list (src/queue/pg/pg_leases.ts). One throwaway cluster for the file; every
 * wait is bounded.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { NewMailSignal } from "../../src/queue/new_mail.ts";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import {
  MAX_PAYLOAD_BYTES,
  newMailPayloads,
  parseNewMailPayload,
  PgNewMailListener,
} from "../../src/queue/pg/pg_new_mail.ts";
import { type NewMailEvent, QuotaExceededError } from "../../src/queue/queue.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { bodyOf, incoming, testSecrets } from "../support/store.ts";

/** Bound on waits that must succeed: a failure shows as a timeout error, never a hang. */
const LONG = 15_000;

/** Rejects with `what` when `promise` does not settle within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every 20 ms until it is true, for at most `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A listener's reports, and a signal fed by them as the relay feeds its own. */
function recorder() {
  const events: NewMailEvent[] = [];
  const signal = new NewMailSignal();
  let listened = 0;
  const errors: Error[] = [];
  return {
    events,
    signal,
    errors,
    get listened() {
      return listened;
    },
    onMail: (domains: NewMailEvent) => {
      events.push(domains);
      if (domains === "all") signal.notifyAll();
      else signal.notify(domains);
    },
    options: {
      onListening: () => {
        listened++;
      },
      onError: (error: Error) => {
        errors.push(error);
      },
    },
    /** Every domain announced so far. */
    domains(): Set<string> {
      return new Set(events.flatMap((e) => e === "all" ? [] : e));
    },
  };
}

describe("new-mail payloads", () => {
  test("domains are split across payloads within the limit; nothing is lost or repeated", () => {
    const domains = Array.from({ length: 400 }, (_, i) => `${"x".repeat(50)}-${i}.example`);
    const payloads = newMailPayloads([...domains, ...domains.slice(0, 10)]);
    assert.ok(payloads.length > 1, "more than one payload for ~25 kB of names");
    for (const p of payloads) {
      assert.ok(new TextEncoder().encode(p).length <= MAX_PAYLOAD_BYTES, p.slice(0, 40));
    }
    const back = payloads.flatMap((p) => parseNewMailPayload(p).domains as string[]);
    assert.deepEqual(back, domains);
  });

  test("every payload names its node and stays within the limit with it", () => {
    const node = "n".repeat(300);
    const domains = Array.from({ length: 400 }, (_, i) => `${"x".repeat(50)}-${i}.example`);
    const payloads = newMailPayloads(domains, node);
    for (const p of payloads) {
      assert.ok(new TextEncoder().encode(p).length <= MAX_PAYLOAD_BYTES, p.slice(0, 40));
      assert.equal(parseNewMailPayload(p).node, node);
    }
    assert.deepEqual(payloads.flatMap((p) => parseNewMailPayload(p).domains as string[]), domains);
    // A name too long to carry is left out: the payload still announces the domains.
    assert.deepEqual(parseNewMailPayload(newMailPayloads(["a.test"], "n".repeat(600))[0]), {
      node: null,
      domains: ["a.test"],
    });
  });

  test("a few domains are one payload; none are none; the postmaster key survives", () => {
    assert.deepEqual(newMailPayloads(["a.test", "", "a.test"]), ['["a.test",""]']);
    assert.deepEqual(newMailPayloads(["a.test"], "node-a"), ['{"node":"node-a","domains":["a.test"]}']);
    assert.deepEqual(newMailPayloads([]), []);
  });

  test("wake-all and unreadable payloads mean every domain", () => {
    const all = { node: null, domains: "all" };
    assert.deepEqual(parseNewMailPayload("*"), all);
    assert.deepEqual(parseNewMailPayload("not json"), all);
    assert.deepEqual(parseNewMailPayload('{"a":1}'), all);
    assert.deepEqual(parseNewMailPayload('{"node":"a","domains":[1]}'), all);
    assert.deepEqual(parseNewMailPayload(undefined), all);
    assert.deepEqual(parseNewMailPayload('["a.test"]'), { node: null, domains: ["a.test"] });
  });
});

describe("new mail across PostgreSQL nodes", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres | undefined;
  let databases = 0;
  const pgc = () => cluster ?? assert.fail("cluster did not start");

  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  /** Two nodes on a fresh database with accounts and domains; `quota.test` takes 100 bytes at most. */
  async function twoNodes(): Promise<
    { a: PostgresQueue; b: PostgresQueue; url: string; close: () => Promise<void> }
  > {
    const url = await pgc().createDatabase(`new_mail_${++databases}`);
    const a = await PostgresQueue.open(url, { node: "node-a", poolSize: 3, leaseTtlMs: 3000 });
    const b = await PostgresQueue.open(url, { node: "node-b", poolSize: 3, leaseTtlMs: 3000 });
    await a.addAccount("acct", testSecrets("pw"));
    for (const d of ["a.test", "c.test", "quota.test"]) await a.addDomain(d, "acct");
    await a.updateDomain("quota.test", { quotaBytes: 100 });
    return {
      a,
      b,
      url,
      close: async () => {
        await Promise.allSettled([a.close(), b.close()]);
      },
    };
  }

  test("mail committed on node A wakes a session waiting on node B", async () => {
    const { a, b, close } = await twoNodes();
    const seen = recorder();
    const stop = b.watchNewMail(seen.onMail, seen.options);
    try {
      await until(() => seen.listened === 1, LONG, "B listening");
      const mark = seen.signal.mark(["a.test"]);
      const woken = seen.signal.wait(mark, LONG);
      await a.enqueue(incoming("s@sender.test", ["u@a.test", "v@A.test"]), bodyOf("hello"));
      assert.equal(await woken, true, "B's waiter woke");
      assert.deepEqual(seen.events, [["a.test"]], "one notification, domain keys in lower case");
    } finally {
      await stop();
      await close();
    }
  });

  test("a node does not hear its own notifications (it wakes its watchers itself), only the others'", async () => {
    const { a, b, close } = await twoNodes();
    const seen = recorder();
    const stop = a.watchNewMail(seen.onMail, seen.options);
    try {
      await until(() => seen.listened === 1, LONG, "A listening");
      await a.enqueue(incoming("s@sender.test", ["u@a.test"]), bodyOf("from A itself"));
      await b.enqueue(incoming("s@sender.test", ["u@c.test"]), bodyOf("from B"));
      // B's notification was sent after A's: once it is heard, A's own would have been too.
      await until(() => seen.events.length > 0, LONG, "A hears B");
      await sleep(100);
      assert.deepEqual(seen.events, [["c.test"]]);
    } finally {
      await stop();
      await close();
    }
  });

  test("a rolled-back enqueue notifies nothing; a group commit notifies once with its committed domains", async () => {
    const { a, b, close } = await twoNodes();
    const seen = recorder();
    const stop = b.watchNewMail(seen.onMail, seen.options);
    try {
      await until(() => seen.listened === 1, LONG, "B listening");
      const waitQuota = seen.signal.wait(seen.signal.mark(["quota.test"]), 300);
      await assert.rejects(
        a.enqueue(incoming("s@sender.test", ["u@quota.test"]), bodyOf("x".repeat(500))),
        QuotaExceededError,
      );
      // A later commit is a fence: notifications arrive in commit order, so one from the failed
      // enqueue would have come first.
      await a.enqueue(incoming("s@sender.test", ["u@c.test"]), bodyOf("fence"));
      await until(() => seen.events.length >= 1, LONG, "the fence's notification");
      assert.equal(await waitQuota, false, "no wake for quota.test");
      assert.deepEqual(seen.events, [["c.test"]]);

      const results = await a.enqueueMany([
        { message: incoming("s@sender.test", ["u@a.test"]), body: bodyOf("one") },
        { message: incoming("s@sender.test", ["u@quota.test"]), body: bodyOf("x".repeat(500)) },
        { message: incoming("s@sender.test", ["w@c.test", "x@a.test"]), body: bodyOf("three") },
      ]);
      assert.equal(typeof results[0], "number");
      assert.ok(results[1] instanceof QuotaExceededError);
      assert.equal(typeof results[2], "number");
      await until(() => seen.events.length >= 2, LONG, "the batch's notification");
      await a.enqueue(incoming("s@sender.test", ["u@c.test"]), bodyOf("fence 2"));
      await until(() => seen.events.length >= 3, LONG, "the second fence's notification");
      assert.deepEqual(seen.events, [["c.test"], ["a.test", "c.test"], ["c.test"]]);
    } finally {
      await stop();
      await close();
    }
  });

  test("a message to more domains than one payload holds is announced in several notifications", async () => {
    const { a, b, close } = await twoNodes();
    const seen = recorder();
    const stop = b.watchNewMail(seen.onMail, seen.options);
    try {
      const many = Array.from({ length: 200 }, (_, i) => `${"d".repeat(50)}-${i}.test`);
      for (const d of many) await a.addDomain(d, "acct");
      await until(() => seen.listened === 1, LONG, "B listening");
      await a.enqueue(incoming("s@sender.test", many.map((d) => `u@${d}`)), bodyOf("wide"));
      await until(() => seen.domains().size === many.length, LONG, "every domain announced");
      assert.ok(seen.events.length > 1, `${seen.events.length} notifications`);
      assert.ok(!seen.events.includes("all"));
    } finally {
      await stop();
      await close();
    }
  });

  test("after a server restart the listener reconnects, wakes everyone, and hears new mail again", async () => {
    const { a, b, close } = await twoNodes();
    const seen = recorder();
    const stop = b.watchNewMail(seen.onMail, seen.options);
    try {
      await until(() => seen.listened === 1, LONG, "B listening");
      // A session on a domain nobody mails: only the wake-all can wake it.
      const waiting = seen.signal.wait(seen.signal.mark(["quiet.test"]), LONG);
      await pgc().stopServer();
      await until(() => seen.errors.length >= 1, LONG, "the listener noticed the server going");
      await sleep(300); // a few failed reconnects
      await pgc().startServer();
      await until(() => seen.listened === 2, LONG, "B listening again");
      assert.equal(await within(waiting, LONG, "wake-all"), true);
      assert.deepEqual(seen.events, ["all"]);
      // The pool reconnects by itself; a new commit is heard on the new connection.
      await until(
        () =>
          a.enqueue(incoming("s@sender.test", ["u@a.test"]), bodyOf("after")).then(() => true, () => false),
        LONG,
        "an enqueue after the restart",
      );
      await until(() => seen.events.length >= 2, LONG, "notification after the restart");
      assert.deepEqual(seen.events[1], ["a.test"]);
    } finally {
      await stop();
      await close();
    }
  });

  test("close stops the listener: its connection goes, and no reconnect follows", async () => {
    const url = await pgc().createDatabase(`new_mail_${++databases}`);
    const countListeners = async () => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      client.on("error", () => {}); // a server going away must not kill Deno (docs/postgres_driver.md)
      await client.connect();
      try {
        const rows = (await client.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() " +
            "AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )).rows;
        return rows[0].n as number;
      } finally {
        await client.end().catch(() => {});
      }
    };
    const seen = recorder();
    const listener = new PgNewMailListener({ url, ...seen.options }, seen.onMail);
    await until(() => listener.listening, LONG, "listening");
    assert.equal(await countListeners(), 1);
    await within(listener.close(), 5000, "close");
    assert.equal(listener.listening, false);
    await until(async () => (await countListeners()) === 0, LONG, "the LISTEN backend gone");
    assert.deepEqual(seen.errors, [], "a clean close is not an error");

    // Closed while the server is down and it keeps failing: the retries stop.
    await pgc().stopServer();
    try {
      const down = recorder();
      const retrying = new PgNewMailListener(
        { url, minBackoffMs: 20, maxBackoffMs: 40, ...down.options },
        down.onMail,
      );
      await until(() => down.errors.length >= 3, LONG, "several failed attempts");
      await within(retrying.close(), 5000, "close while retrying");
      const failures = down.errors.length;
      await sleep(300);
      assert.equal(down.errors.length, failures, "no attempt after close");
      assert.equal(down.listened, 0);
    } finally {
      await pgc().startServer();
    }
  });

  test("clusterNodes lists the live nodes with their heartbeats and marks this one", async () => {
    const { a, b, close } = await twoNodes();
    try {
      await until(async () => (await a.clusterNodes()).length === 2, LONG, "both heartbeats");
      const fromA = await a.clusterNodes();
      assert.deepEqual(fromA.map((n) => n.name).sort(), [a.node, b.node].sort());
      assert.match(a.node, /^node-a#/);
      assert.deepEqual(fromA.filter((n) => n.self).map((n) => n.name), [a.node]);
      assert.deepEqual((await b.clusterNodes()).filter((n) => n.self).map((n) => n.name), [b.node]);
      for (const n of fromA) {
        assert.equal(typeof n.heartbeatAt, "number");
        assert.equal(typeof n.startedAt, "number");
        assert.ok(n.heartbeatAgeMs! >= 0 && n.heartbeatAgeMs! < 3000, `age ${n.heartbeatAgeMs}`);
      }
      // A clean shutdown removes the node's row.
      await b.close();
      assert.deepEqual((await a.clusterNodes()).map((n) => n.name), [a.node]);
    } finally {
      await close();
    }
  });
});
