/**
 * The administrative half of the PostgreSQL queue against a real throwaway cluster: accounts, domains,
 * ATRN history, queue administration and status (src/queue/pg/pg_{accounts,domains,atrn,admin,status}.ts).
 *
 * The first part is differential: every call runs on the SQLite store (the reference,
 * src/queue/*_store.ts) and on the PostgreSQL classes, and the results, or the StoreErrors, must be
 * equal, and so must the whole visible state after each step. Mail is enqueued through SQLite and its
 * rows copied to PostgreSQL as they are (same ids), so the admin side is tested alone.
 *
 * The second part races two nodes (two connection pools on one database) against each other: the
 * checks that SQLite makes by reading before writing must hold when another node writes in between.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { PostgresDatabase } from "../../src/queue/pg/database.ts";
import { migratePostgres } from "../../src/queue/pg/migrate.ts";
import { PgAccounts } from "../../src/queue/pg/pg_accounts.ts";
import { PgAdmin } from "../../src/queue/pg/pg_admin.ts";
import { PgAtrn } from "../../src/queue/pg/pg_atrn.ts";
import { PgDomains } from "../../src/queue/pg/pg_domains.ts";
import { PgStatus } from "../../src/queue/pg/pg_status.ts";
import { POSTMASTER_MAILBOX } from "../../src/queue/postmaster_store.ts";
import type { AtrnRecord, QueueStore } from "../../src/queue/store.ts";
import { StoreError } from "../../src/queue/store_error.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";

const T0 = 1_700_000_000_000;

type Method = (...args: unknown[]) => unknown;

/** The PostgreSQL classes under test, as one object with the store's method names. */
function pgSide(db: PostgresDatabase, clock: ManualClock): Record<string, Method> {
  const parts = [
    new PgAccounts(db, clock),
    new PgDomains(db, clock),
    new PgAtrn(db),
    new PgAdmin(db, clock),
    new PgStatus(db),
  ];
  const side: Record<string, Method> = {};
  for (const part of parts) {
    for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(part))) {
      if (name === "constructor") continue;
      assert.equal(side[name], undefined, `${name} is defined once`);
      const method = (part as unknown as Record<string, Method>)[name]!;
      side[name] = (...args) => method.apply(part, args);
    }
  }
  return side;
}

/** What a call gave: its value, or the StoreError's name, kind and message. */
type Outcome = { value: unknown } | { error: { name: string; kind: string; message: string } };

function storeErrorOf(error: unknown): Outcome {
  assert.ok(error instanceof StoreError, `a StoreError, not ${String(error)}`);
  return { error: { name: error.name, kind: error.kind, message: error.message } };
}

/** The domain rows the customer-facing code never shows, compared too: mailboxes and counters. */
const RAW_MAILBOXES = "SELECT domain, local_part FROM domain_mailboxes ORDER BY domain, local_part";

describe("PostgreSQL admin side", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres;
  let serial = 0;
  const opened: PostgresDatabase[] = [];

  before(async () => {
    cluster = await startPostgres();
  });

  after(async () => {
    for (const db of opened) await db.close().catch(() => {});
    await cluster?.stop();
  });

  /** A fresh migrated database; `pools` connection pools on it (one per "node"). */
  async function freshDatabase(pools = 1): Promise<PostgresDatabase[]> {
    const url = await cluster.createDatabase(`admin_side_${++serial}`);
    const dbs = Array.from({ length: pools }, () => new PostgresDatabase(url, { poolSize: 4 }));
    opened.push(...dbs);
    await migratePostgres(dbs[0]!);
    return dbs;
  }

  describe("the same answers as the SQLite store", () => {
    let store: QueueStore;
    let db: PostgresDatabase;
    let pg: Record<string, Method>;
    let clock: ManualClock;

    before(async () => {
      clock = new ManualClock(T0);
      store = tempStore(clock).store;
      [db] = (await freshDatabase()) as [PostgresDatabase];
      pg = pgSide(db, clock);
    });

    /** Runs `name(...args)` on both; asserts equal values or equal StoreErrors; returns the value. */
    async function same(name: string, ...args: unknown[]): Promise<unknown> {
      const sqliteMethod = (store as unknown as Record<string, Method>)[name];
      assert.ok(sqliteMethod, `QueueStore has ${name}`);
      assert.ok(pg[name], `the PostgreSQL side has ${name}`);
      let expected: Outcome;
      try {
        expected = { value: sqliteMethod.apply(store, args) };
      } catch (error) {
        expected = storeErrorOf(error);
      }
      let actual: Outcome;
      try {
        actual = { value: await pg[name]!(...args) };
      } catch (error) {
        actual = storeErrorOf(error);
      }
      assert.deepStrictEqual(actual, expected, `${name}(${JSON.stringify(args)})`);
      return "value" in actual ? actual.value : undefined;
    }

    /** Asserts that `name(...args)` fails on both with this message (and the same StoreError). */
    async function sameError(message: string, name: string, ...args: unknown[]): Promise<void> {
      await assert.rejects(() => pg[name]!(...args) as Promise<unknown>, { name: "StoreError", message });
      await same(name, ...args);
    }

    /** Every read of the admin side, on both. */
    async function sameState(): Promise<void> {
      await same("listAccounts");
      await same("listDomains");
      await same("totals");
      await same("queueCounts");
      await same("domainQueueStatus");
      await same("postmasterMailboxBytes");
      await same("postmasterMailboxCount");
      await same("recentAtrnSessions", 100);
      const listing = await same("listQueue", { limit: 500 }) as { id: number }[];
      for (const { id } of listing) await same("getMessage", id);
      const sqliteMailboxes = store.database.raw.prepare(RAW_MAILBOXES).all()
        .map((r) => ({ domain: r.domain, local_part: r.local_part }));
      assert.deepStrictEqual((await db.query(RAW_MAILBOXES)).rows, sqliteMailboxes, "domain_mailboxes");
    }

    /** Enqueues on SQLite and copies the new message's rows to PostgreSQL unchanged. */
    async function enqueue(
      mailFrom: string,
      rcpts: string[],
      body: string,
      domains?: string[],
    ): Promise<number> {
      const message = incoming(mailFrom, rcpts);
      domains?.forEach((domain, i) => message.recipients[i]!.domain = domain);
      const id = store.enqueue(message, bodyOf(body));
      const raw = store.database.raw;
      const booleans = new Set(["tls", "smtputf8", "eight_bit"]);
      const copy = async (table: string, row: Record<string, unknown>) => {
        const columns = Object.keys(row);
        const values = columns.map((c) =>
          booleans.has(c) ? Boolean(row[c]) : row[c] instanceof Uint8Array ? Buffer.from(row[c]) : row[c]
        );
        await db.query(
          `INSERT INTO ${table} (${columns.join(", ")}) OVERRIDING SYSTEM VALUE VALUES (${
            columns.map((_, i) => `$${i + 1}`).join(", ")
          })`,
          values,
        );
      };
      await copy(
        "messages",
        raw.prepare("SELECT * FROM messages WHERE id = ?").get(id) as Record<string, unknown>,
      );
      for (const r of raw.prepare("SELECT * FROM recipients WHERE message_id = ? ORDER BY id").all(id)) {
        await copy("recipients", r as Record<string, unknown>);
      }
      clock.advance(1000);
      return id;
    }

    test("accounts: create, find, secrets, disable, list, and the refusals", async () => {
      await same("addAccount", "alice", testSecrets("alice-secret"));
      clock.advance(10);
      await same("addAccount", "Bob", testSecrets("bob-secret"));
      await sameError(
        "Username must be 1-64 printable ASCII characters without spaces",
        "addAccount",
        "has space",
        testSecrets("x"),
      );
      await sameError(
        "Username must be 1-64 printable ASCII characters without spaces",
        "addAccount",
        "x".repeat(65),
        testSecrets("x"),
      );
      await sameError("Account alice already exists", "addAccount", "alice", testSecrets("x"));
      await sameError(
        "Account alice already exists (names differ only in case)",
        "addAccount",
        "ALICE",
        testSecrets("x"),
      );
      await sameError(
        "Account Bob already exists (names differ only in case)",
        "addAccount",
        "bob",
        testSecrets("x"),
      );
      await same("findAccount", "alice");
      await same("findAccount", "Alice");
      await same("findAccount", "nobody");
      await same("setAccountSecrets", "alice", testSecrets("new-secret"));
      await sameError("No account nobody", "setAccountSecrets", "nobody", testSecrets("x"));
      await same("setAccountDisabled", "Bob", true);
      await sameError("No account nobody", "setAccountDisabled", "nobody", true);
      // Byte order: "Bob" before "alice" (as SQLite's BINARY collation), whatever the locale.
      const names = (await same("listAccounts") as { username: string }[]).map((a) => a.username);
      assert.deepStrictEqual(names, ["Bob", "alice"]);
      await same("setAccountDisabled", "Bob", false);
      await sameState();
    });

    test("domains: add with IDNA keys and mailboxes, hold, update, lookups, and the refusals", async () => {
      await same("addDomain", "A.Test", "alice");
      await same("addDomain", "böb.test", "Bob", { mailboxes: ["info", "Sales"] });
      await same("addDomain", " a2.test ", "alice", {});
      await sameError("Not a valid domain name: nodot", "addDomain", "nodot", "alice");
      await sameError("Not a valid domain name: bad..test", "addDomain", "bad..test", "alice");
      await sameError("No account nobody", "addDomain", "x.test", "nobody");
      await sameError("Domain a.test already exists", "addDomain", "a.TEST", "Bob");
      await sameError("Domain xn--bb-fka.test already exists", "addDomain", "xn--bb-fka.test", "alice");
      for (const name of ["A.TEST", "böb.test", "xn--bb-fka.test", "zz.test", "", "nodot", " a.test"]) {
        await same("hasDomain", name);
      }
      const alice = await same("findAccount", "alice") as { id: number };
      await same("domainsOfAccount", alice.id);
      await same("domainsOfAccount", 9999);

      await same("setDomainHold", "A2.test", true);
      await sameError("No domain ZZ.test", "setDomainHold", "ZZ.test", true);
      await sameError("Not a valid domain name: nodot", "setDomainHold", "nodot", true);

      await same("updateDomain", "a.test", {
        retentionMs: 3_600_000,
        quotaBytes: 5000,
        allowRoutingSyntax: true,
        notifyAddress: "ops@elsewhere.test",
        notifyAfterMs: 60_000,
      });
      await same("updateDomain", "a.test", {});
      await same("updateDomain", "a.test", { retentionMs: null, quotaBytes: null });
      await same("updateDomain", "a2.test", { mailboxes: ["x", "x", "Y"] });
      await sameState();
      await same("updateDomain", "a2.test", { mailboxes: [] });
      await sameState();
      await same("updateDomain", "a2.test", { mailboxes: null, notifyAddress: null });
      await same("updateDomain", "böb.test", { mailboxes: ["info", "more"] });
      await sameError("No domain zz.test", "updateDomain", "ZZ.test", { quotaBytes: 1 });
      await sameError("Not a valid domain name: nodot", "updateDomain", "nodot", {});
      await sameState();
    });

    test("queue administration and status over the same mail", async () => {
      const m1 = await enqueue("s1@x.test", ["u@a.test"], "one\r\n");
      const m2 = await enqueue("", ["v@a.test", "w@a2.test", "z@xn--bb-fka.test"], "two two\r\n");
      const m3 = await enqueue("s3@x.test", ["postmaster@relay.test"], "three\r\n", [POSTMASTER_MAILBOX]);
      const m4 = await enqueue("s4@x.test", ["w@a2.test"], "four four four\r\n");
      await enqueue("s5@x.test", ["postmaster@relay.test", "u@a.test"], "five\r\n", [POSTMASTER_MAILBOX]);
      await sameState();
      assert.ok((await same("postmasterMailboxCount")) === 2, "the mailbox holds two messages");

      for (
        const filter of [
          {},
          { domain: "A.TEST" },
          { domain: "böb.test" },
          { domain: "nowhere.test" },
          { status: "queued" },
          { status: "failed" },
          { domain: "a2.test", status: "queued" },
          { afterId: m1, limit: 2 },
          { afterId: m4 },
          { limit: 0 },
          { limit: -5 },
          { limit: 1000 },
        ]
      ) await same("listQueue", filter);
      for (const domain of ["a.test", "a2.test", "xn--bb-fka.test", POSTMASTER_MAILBOX, "zz.test"]) {
        await same("oldestQueuedAt", domain);
      }
      await same("getMessage", 9999);

      assert.equal(await same("bounceMessage", m2, "Returned by the operator"), 3);
      await same("bounceMessage", m2, "again: nothing queued is left");
      await same("bounceMessage", 9999, "no such message");
      await same("listQueue", { status: "failed" });
      await same("listQueue", { status: "queued", domain: "a.test" });
      await sameState();

      assert.equal(await same("deleteMessage", m1), true);
      assert.equal(await same("deleteMessage", m1), false);
      assert.equal(await same("deleteMessage", m3), true);
      await sameState();
    });

    test("ATRN history: sessions, polls, the collection fields and pruning", async () => {
      const alice = await same("findAccount", "alice") as { id: number };
      const bob = await same("findAccount", "Bob") as { id: number };
      const session = (overrides: Partial<AtrnRecord>): AtrnRecord => ({
        accountId: alice.id,
        username: "alice",
        domains: ["a.test", "a2.test"],
        peer: "192.0.2.7",
        tls: true,
        startedAt: clock.now(),
        endedAt: clock.now() + 500,
        delivered: 2,
        deferred: 0,
        failed: 0,
        outcome: "turned",
        detail: null,
        ...overrides,
      });
      await same("recordAtrnSession", session({}));
      clock.advance(60_000);
      await same("recordAtrnSession", session({ delivered: 1, deferred: 1, failed: 1 }));
      clock.advance(60_000);
      await same("recordAtrnSession", session({ outcome: "error", detail: "451 try later", delivered: 0 }));
      // Another account's domain is not touched by alice's session.
      await same(
        "recordAtrnSession",
        session({ domains: ["a.test", "xn--bb-fka.test"], outcome: "no-mail" }),
      );
      await same("recordAtrnSession", session({ accountId: null, username: "mallory", outcome: "refused" }));
      await same("recordAtrnSession", session({ domains: [], outcome: "busy" }));
      await sameState();
      clock.advance(60_000);
      await same("recordPoll", bob.id, ["xn--bb-fka.test", "a.test"], "198.51.100.1", clock.now());
      await same("recordPoll", bob.id, [], "198.51.100.1", clock.now());
      await same("recentAtrnSessions");
      await same("recentAtrnSessions", 2);
      await same("recentAtrnSessions", 0);
      await same("recentAtrnSessions", -1);
      await sameState();
      assert.equal(await same("pruneAtrnHistory", T0), 0);
      assert.ok((await same("pruneAtrnHistory", clock.now() - 90_000)) as number > 0);
      await sameState();
    });

    test("removals: domains with and without force, then accounts", async () => {
      await sameError(
        "Domain a.test has 2 recipient(s) in the queue: deliver or delete them, or use --force",
        "removeDomain",
        "A.test",
      );
      await sameError("No domain zz.test", "removeDomain", "zz.test", { force: true });
      await sameError("Not a valid domain name: nodot", "removeDomain", "nodot");
      await same("removeDomain", "a.test", { force: true });
      await sameState();
      await sameError("Account alice still owns 1 domain(s): remove them first", "removeAccount", "alice");
      await same("removeDomain", "a2.test", { force: true });
      await same("removeDomain", "böb.test", { force: true });
      await sameState();
      await same("removeAccount", "alice");
      await sameError("No account alice", "removeAccount", "alice");
      await same("addDomain", "c.test", "Bob", { mailboxes: ["only"] });
      await same("removeDomain", "c.test");
      await sameState();
      const queued = (await db.query("SELECT COUNT(*) AS n FROM recipients WHERE domain <> ''")).rows[0]!.n;
      assert.equal(queued, 0, "nothing left of the removed domains");
    });
  });

  test("listings sort in byte order (as SQLite) in a database whose collation is not C", async () => {
    const admin = new PostgresDatabase(cluster.url, { poolSize: 1 });
    opened.push(admin);
    const name = `admin_side_icu_${++serial}`;
    // ICU's root order puts "alice" before "Bob"; byte order (SQLite's BINARY) the other way round.
    await admin.query(
      `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C'`,
    );
    const db = new PostgresDatabase(cluster.url.replace(/\/postgres$/, `/${name}`), { poolSize: 2 });
    opened.push(db);
    await migratePostgres(db);
    const sorted = (await db.query("SELECT x FROM (VALUES ('alice'), ('Bob')) v(x) ORDER BY x")).rows;
    assert.deepStrictEqual(sorted.map((r) => r.x), ["alice", "Bob"], "the database's own order differs");
    const side = pgSide(db, new ManualClock(T0));
    for (const username of ["alice", "Bob", "_x", "Zed"]) await side.addAccount!(username, testSecrets("x"));
    const accounts = (await side.listAccounts!()) as { username: string }[];
    assert.deepStrictEqual(accounts.map((a) => a.username), ["Bob", "Zed", "_x", "alice"]);
  });

  describe("two nodes at once", () => {
    let nodeA: Record<string, Method>;
    let nodeB: Record<string, Method>;
    let db: PostgresDatabase;

    before(async () => {
      const [a, b] = (await freshDatabase(2)) as [PostgresDatabase, PostgresDatabase];
      db = a;
      nodeA = pgSide(a, new ManualClock(T0));
      nodeB = pgSide(b, new ManualClock(T0));
      await nodeA.addAccount!("owner", testSecrets("x"));
    });

    /** Settles both calls; asserts exactly one succeeded and the other failed with `message`. */
    async function oneWins(message: RegExp, calls: Promise<unknown>[]): Promise<number> {
      const results = await Promise.allSettled(calls);
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, `one of ${results.length} wins: ${JSON.stringify(results)}`);
      for (const r of results) {
        if (r.status === "rejected") {
          assert.ok(r.reason instanceof StoreError, String(r.reason));
          assert.match(r.reason.message, message);
        }
      }
      return results.findIndex((r) => r.status === "fulfilled");
    }

    test("two nodes creating names that differ only in case: one account", async () => {
      for (let round = 0; round < 8; round++) {
        await oneWins(/^Account user\d+ already exists|^Account USER\d+ already exists/i, [
          nodeA.addAccount!(`user${round}`, testSecrets("a")) as Promise<unknown>,
          nodeB.addAccount!(`USER${round}`, testSecrets("b")) as Promise<unknown>,
          nodeB.addAccount!(`user${round}`, testSecrets("c")) as Promise<unknown>,
        ]);
      }
      const rows =
        (await db.query("SELECT lower(username) AS l, COUNT(*) AS n FROM accounts GROUP BY 1")).rows;
      assert.ok(rows.every((r) => r.n === 1), JSON.stringify(rows));
    });

    test("two nodes adding one domain: one row, one 'already exists'", async () => {
      for (let round = 0; round < 8; round++) {
        await oneWins(new RegExp(`^Domain race${round}\\.test already exists$`), [
          nodeA.addDomain!(`race${round}.test`, "owner", { mailboxes: ["a"] }) as Promise<unknown>,
          nodeB.addDomain!(`RACE${round}.test`, "owner", { mailboxes: ["b"] }) as Promise<unknown>,
        ]);
        const mailboxes = (await db.query(
          "SELECT local_part FROM domain_mailboxes WHERE domain = $1",
          [`race${round}.test`],
        )).rows;
        assert.equal(mailboxes.length, 1, "only the winner's mailboxes");
      }
    });

    test("removing an account while another node adds a domain to it: never both", async () => {
      for (let round = 0; round < 8; round++) {
        const name = `doomed${round}`;
        await nodeA.addAccount!(name, testSecrets("x"));
        const winner = await oneWins(
          /^(No account doomed\d+|Account doomed\d+ still owns 1 domain\(s\).*)$/,
          [
            nodeA.removeAccount!(name) as Promise<unknown>,
            nodeB.addDomain!(`${name}.test`, name) as Promise<unknown>,
          ],
        );
        const account = await nodeA.findAccount!(name);
        const hasDomain = await nodeA.hasDomain!(`${name}.test`);
        assert.deepStrictEqual(
          { account: account !== null, hasDomain },
          winner === 0 ? { account: false, hasDomain: false } : { account: true, hasDomain: true },
        );
      }
    });

    test("removeDomain waits for an uncommitted enqueue into the domain, then counts its mail", async () => {
      await nodeA.addDomain!("busy.test", "owner");
      const intake = await db.pool.connect();
      try {
        // What the intake does (src/queue/pg/pg_enqueue.ts): lock the domain row, insert, commit later.
        await intake.query("BEGIN");
        await intake.query("SELECT name FROM domains WHERE name = 'busy.test' FOR UPDATE");
        await intake.query(
          "WITH m AS (INSERT INTO messages (received_at, mail_from, size, client_ip, client_helo) " +
            "VALUES ($1, 's@x.test', 10, '127.0.0.1', 'h') RETURNING id) " +
            "INSERT INTO recipients (message_id, address, domain, queued_at, message_size) " +
            "SELECT id, 'u@busy.test', 'busy.test', $1, 10 FROM m",
          [T0],
        );
        let settled = false;
        const removal = (nodeB.removeDomain!("busy.test") as Promise<unknown>).finally(() => settled = true);
        removal.catch(() => {}); // observed below
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(settled, false, "removeDomain waits for the domain row");
        await intake.query("COMMIT");
        await assert.rejects(removal, {
          name: "StoreError",
          message: "Domain busy.test has 1 recipient(s) in the queue: deliver or delete them, or use --force",
        });
      } finally {
        intake.release();
      }
      assert.deepStrictEqual(await nodeB.removeDomain!("busy.test", { force: true }), {
        deletedRecipients: 1,
      });
      assert.deepStrictEqual(await nodeA.queueCounts!(), { messages: 0, bytes: 0, queuedRecipients: 0 });
    });

    test("deletes and bounces of messages spanning domains, from both nodes, never deadlock", async () => {
      await nodeA.addDomain!("p.test", "owner");
      await nodeA.addDomain!("q.test", "owner");
      const ids: number[] = [];
      for (let i = 0; i < 24; i++) {
        // Recipients in opposite orders, so row order alone would lock the two domains both ways.
        const [first, second] = i % 2 ? ["p.test", "q.test"] : ["q.test", "p.test"];
        const id = (await db.query<{ id: number }>(
          "WITH m AS (INSERT INTO messages (received_at, mail_from, size, client_ip, client_helo) " +
            "VALUES ($1, 's@x.test', 100, '127.0.0.1', 'h') RETURNING id) " +
            "INSERT INTO recipients (message_id, address, domain, queued_at, message_size) " +
            "SELECT id, v.address, v.domain, $1, 100 FROM m, (VALUES ($2, $3, 1), ($4, $5, 2)) AS v(address, domain, o) " +
            "ORDER BY v.o RETURNING message_id AS id",
          [T0 + i, `a@${first}`, first, `b@${second}`, second],
        )).rows[0]!.id;
        ids.push(id);
      }
      const results = await Promise.allSettled(ids.map((id, i) => {
        const node = i % 2 ? nodeA : nodeB;
        return (i % 3 === 0 ? node.bounceMessage!(id, "bounced") : node.deleteMessage!(id)) as Promise<
          unknown
        >;
      }));
      const failures = results.filter((r) => r.status === "rejected");
      assert.deepStrictEqual(failures, [], "no deadlock (40P01) or other error");
      const bounced = ids.filter((_, i) => i % 3 === 0).length;
      assert.deepStrictEqual(
        results.map((r) => (r as PromiseFulfilledResult<unknown>).value),
        ids.map((_, i) => i % 3 === 0 ? 2 : true),
      );
      // The trigger-kept counters agree with the rows.
      assert.deepStrictEqual(await nodeA.queueCounts!(), {
        messages: bounced,
        bytes: bounced * 100,
        queuedRecipients: 0,
      });
      const domains = (await nodeA.domainQueueStatus!()) as {
        name: string;
        queuedRecipients: number;
        queuedBytes: number;
      }[];
      for (const d of domains.filter((d) => d.name === "p.test" || d.name === "q.test")) {
        assert.deepStrictEqual([d.queuedRecipients, d.queuedBytes], [0, 0], d.name);
      }
    });
  });
});
