/**
 * The contract of the `Queue` interface (src/queue/queue.ts), as one suite of tests that every
 * implementation runs: queue_sqlite_test.ts over `SqliteQueue`, queue_postgres_test.ts over
 * `PostgresQueue`. Only the interface's public methods are used, and every expected value is what the
 * SQLite store (src/queue/*_store.ts, enqueue.ts) does, so both backends behave the same for the relay.
 *
 * Each test opens a fresh queue through `open`, seeds two accounts and three domains through the
 * interface, and closes the queue at the end (then calls `cleanup` to remove what is left of it).
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import {
  type Account,
  type AtrnRecord,
  type BodySource,
  type DomainInfo,
  type IncomingMessage,
  type IncomingRecipient,
  type Queue,
  QuotaExceededError,
  type StoredMessage,
  StoreError,
} from "../../src/queue/queue.ts";
import { DomainGoneError } from "../../src/queue/enqueue.ts";
import { CHUNK_SIZE, concat } from "../../src/queue/spool.ts";
import { bodyOf, incoming, testSecrets } from "../support/store.ts";

/** Opens a fresh, empty queue on `clock`; `cleanup` removes what is left once the queue is closed. */
export type OpenQueue = (clock: ManualClock) => Promise<{ queue: Queue; cleanup: () => Promise<void> }>;

/** What every test starts with: alice owns a.test and a2.test, bob owns b.test (mailboxes info, Sales). */
interface Seeded {
  queue: Queue;
  clock: ManualClock;
  alice: Account;
  bob: Account;
}

/** The clock's start: a plausible time, so nothing depends on small numbers. */
const T0 = 1_700_000_000_000;

// ------------------------------------------------------------------------------------------ helpers

/** JSON round-trip: compares rows by value, whatever prototype the driver gave them. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}

/** An incoming message from sender@x.test to `rcpts`, with `extra` envelope fields. */
function mail(rcpts: string[], extra: Partial<IncomingMessage> = {}): IncomingMessage {
  return { ...incoming("sender@x.test", rcpts), ...extra };
}

/** The recipient the intake queues for the relay's own postmaster mailbox (domain key ""). */
const POSTMASTER_RECIPIENT: IncomingRecipient = {
  address: "Postmaster",
  domain: "",
  notify: null,
  orcpt: null,
};

/** A message to the relay's own postmaster mailbox. */
function toPostmasterMailbox(): IncomingMessage {
  return { ...incoming("sender@x.test", []), recipients: [POSTMASTER_RECIPIENT] };
}

/** `size` bytes of a pattern that does not repeat at chunk boundaries and has 8-bit octets. */
function patterned(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >>> 12)) & 0xff;
  return bytes;
}

/** A body source handing out `bytes` in CHUNK_SIZE pieces (as the spool does). */
function chunked(bytes: Uint8Array): BodySource {
  return {
    size: bytes.length,
    eightBit: bytes.some((b) => b > 127),
    *chunks() {
      for (let at = 0; at < bytes.length; at += CHUNK_SIZE) yield bytes.subarray(at, at + CHUNK_SIZE);
    },
  };
}

/**
 * A body source that reuses two buffers, as the spool file reader does: each piece is overwritten by
 * the piece after next (the look-ahead BodySource allows).
 */
function reusingBuffers(bytes: Uint8Array): BodySource {
  return {
    size: bytes.length,
    eightBit: bytes.some((b) => b > 127),
    *chunks() {
      const buffers = [new Uint8Array(CHUNK_SIZE), new Uint8Array(CHUNK_SIZE)];
      let turn = 0;
      for (let at = 0; at < bytes.length; at += CHUNK_SIZE) {
        const piece = bytes.subarray(at, at + CHUNK_SIZE);
        const buffer = buffers[turn]!;
        buffer.set(piece);
        turn = 1 - turn;
        yield buffer.subarray(0, piece.length);
      }
    },
  };
}

/** Reads a stored body to the end; readBody may be a sync or an async iterable. */
async function readAll(queue: Queue, id: number): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of queue.readBody(id)) chunks.push(new Uint8Array(chunk));
  return chunks;
}

/** Asserts two byte arrays are equal without printing 300 KB on failure. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.equal(actual.length, expected.length, "length");
  const at = actual.findIndex((b, i) => b !== expected[i]);
  assert.equal(at, -1, `first differing byte at ${at}`);
}

/** Asserts that `promise` rejects with a StoreError of `kind` (and a message matching `pattern`). */
async function rejectsStoreError(
  promise: Promise<unknown>,
  kind: StoreError["kind"],
  pattern?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof StoreError, `a StoreError, got ${error}`);
    assert.equal(error.kind, kind);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

/** The listDomains row of `name`. */
async function domainInfo(queue: Queue, name: string): Promise<DomainInfo> {
  const row = (await queue.listDomains()).find((d) => d.name === name);
  assert.ok(row, `domain ${name} is listed`);
  return row;
}

/** The recipient rows of message `id`. */
async function recipientsOf(queue: Queue, id: number): Promise<StoredMessage["recipients"]> {
  const m = await queue.getMessage(id);
  assert.ok(m, `message ${id} exists`);
  return m.recipients;
}

/** The envelope of a stored message, without the recipients and the storage of its body. */
function envelopeOf(m: StoredMessage): Record<string, unknown> {
  const { bodyInline: _inline, chunkCount: _chunks, recipients: _recipients, ...envelope } = m;
  return plain(envelope);
}

/** An ATRN session record of `account` for a.test, with `overrides`. */
function session(account: Account | null, overrides: Partial<AtrnRecord> = {}): AtrnRecord {
  return {
    accountId: account?.id ?? null,
    username: account?.username ?? "nobody",
    domains: ["a.test"],
    peer: "192.0.2.1",
    tls: true,
    startedAt: T0,
    endedAt: T0 + 500,
    delivered: 0,
    deferred: 0,
    failed: 0,
    outcome: "turned",
    detail: null,
    ...overrides,
  };
}

const sorted = (names: string[]) => [...names].sort();

/** Waits until `check` is true, polling; false when `timeoutMs` passed first. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// ------------------------------------------------------------------------------------------- suite

/** Registers the Queue contract tests over the queues `open` makes; `name` is the backend's. */
export function queueSuite(name: string, open: OpenQueue): void {
  /** Wraps a test body: a fresh seeded queue, closed and cleaned up whatever happens. */
  const run = (body: (s: Seeded) => Promise<void>) => async () => {
    const clock = new ManualClock(T0);
    const { queue, cleanup } = await open(clock);
    try {
      const alice = await queue.addAccount("alice", testSecrets("alice-secret"));
      const bob = await queue.addAccount("bob", testSecrets("bob-secret"));
      await queue.addDomain("a.test", "alice");
      await queue.addDomain("a2.test", "alice");
      await queue.addDomain("b.test", "bob", { mailboxes: ["info", "Sales"] });
      await body({ queue, clock, alice, bob });
    } finally {
      await queue.close();
      await cleanup();
    }
  };

  describe(`${name} queue: accounts`, () => {
    test(
      "addAccount returns the new account, and findAccount finds it by its exact name only",
      run(async ({ queue, clock, alice, bob }) => {
        clock.set(T0 + 5);
        const carol = await queue.addAccount("carol", testSecrets("carol-secret"));
        assert.equal(typeof carol.id, "number");
        assert.deepEqual(plain(carol), {
          id: carol.id,
          username: "carol",
          ...testSecrets("carol-secret"),
          disabled: false,
          createdAt: T0 + 5,
        });
        assert.equal(new Set([alice.id, bob.id, carol.id]).size, 3, "ids are distinct");
        assert.deepEqual(plain(await queue.findAccount("carol")), plain(carol));
        assert.equal(await queue.findAccount("CAROL"), null);
        assert.equal(await queue.findAccount("nobody"), null);
      }),
    );

    test(
      "a duplicate account is a conflict, also when the name differs only in case",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.addAccount("alice", testSecrets("x")), "conflict", /already exists/);
        await rejectsStoreError(
          queue.addAccount("Alice", testSecrets("x")),
          "conflict",
          /differ only in case/,
        );
        assert.equal((await queue.listAccounts()).length, 2);
      }),
    );

    test(
      "a username that is empty, has a space or is over 64 characters is invalid",
      run(async ({ queue }) => {
        for (const username of ["", "two words", "x".repeat(65)]) {
          await rejectsStoreError(queue.addAccount(username, testSecrets("x")), "invalid");
        }
        await queue.addAccount("x".repeat(64), testSecrets("x"));
      }),
    );

    test(
      "listAccounts lists every account by name with how many domains it owns",
      run(async ({ queue, alice, bob }) => {
        const carol = await queue.addAccount("carol", testSecrets("carol-secret"));
        assert.deepEqual(plain(await queue.listAccounts()), [
          { ...plain(alice), domains: 2 },
          { ...plain(bob), domains: 1 },
          { ...plain(carol), domains: 0 },
        ]);
      }),
    );

    test(
      "setAccountSecrets replaces both secrets; an unknown account is not found",
      run(async ({ queue }) => {
        const secrets = {
          cramMd5Secret: testSecrets("new-secret").cramMd5Secret,
          passwordHash: "$scrypt$new",
        };
        await queue.setAccountSecrets("bob", secrets);
        const bob = await queue.findAccount("bob");
        assert.deepEqual([bob?.cramMd5Secret, bob?.passwordHash], [
          secrets.cramMd5Secret,
          secrets.passwordHash,
        ]);
        await rejectsStoreError(queue.setAccountSecrets("nobody", secrets), "not-found");
      }),
    );

    test(
      "setAccountDisabled disables and enables; an unknown account is not found",
      run(async ({ queue }) => {
        await queue.setAccountDisabled("bob", true);
        assert.equal((await queue.findAccount("bob"))?.disabled, true);
        assert.equal((await queue.findAccount("alice"))?.disabled, false);
        await queue.setAccountDisabled("bob", false);
        assert.equal((await queue.findAccount("bob"))?.disabled, false);
        await rejectsStoreError(queue.setAccountDisabled("nobody", true), "not-found");
      }),
    );

    test(
      "removeAccount refuses an account that owns domains, and removes it once they are gone",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.removeAccount("alice"), "conflict", /still owns 2 domain/);
        await queue.removeDomain("a.test");
        await queue.removeDomain("a2.test");
        await queue.removeAccount("alice");
        assert.equal(await queue.findAccount("alice"), null);
        assert.deepEqual((await queue.listAccounts()).map((a) => a.username), ["bob"]);
      }),
    );

    test(
      "removeAccount of an unknown account is not found",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.removeAccount("nobody"), "not-found");
      }),
    );
  });

  describe(`${name} queue: domains`, () => {
    test(
      "listDomains lists every domain by name with its owner and its settings at their defaults",
      run(async ({ queue, alice, bob }) => {
        const defaults = {
          hold: false,
          retentionMs: null,
          quotaBytes: null,
          allowRoutingSyntax: false,
          notifyAddress: null,
          notifyAfterMs: null,
          queuedRecipients: 0,
          queuedBytes: 0,
          createdAt: T0,
          lastAtrnAt: null,
          lastAtrnPeer: null,
          lastAtrnDelivered: null,
          lastFailureAt: null,
          lastFailureText: null,
        };
        assert.deepEqual(plain(await queue.listDomains()), [
          {
            name: "a.test",
            accountId: alice.id,
            username: "alice",
            catchAll: true,
            mailboxes: 0,
            ...defaults,
          },
          {
            name: "a2.test",
            accountId: alice.id,
            username: "alice",
            catchAll: true,
            mailboxes: 0,
            ...defaults,
          },
          { name: "b.test", accountId: bob.id, username: "bob", catchAll: false, mailboxes: 2, ...defaults },
        ]);
      }),
    );

    test(
      "adding a domain for an unknown account is not found",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.addDomain("c.test", "nobody"), "not-found", /No account/);
        assert.equal(await queue.hasDomain("c.test"), false);
      }),
    );

    test(
      "a domain that exists already is a conflict, whatever its case",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.addDomain("a.test", "bob"), "conflict", /already exists/);
        await rejectsStoreError(queue.addDomain("A.TEST", "bob"), "conflict", /already exists/);
        assert.equal((await domainInfo(queue, "a.test")).username, "alice");
      }),
    );

    test(
      "domain names are case-insensitive: stored lower-case, found in any case",
      run(async ({ queue }) => {
        await queue.addDomain("MiXeD.Test", "bob");
        assert.ok((await queue.listDomains()).some((d) => d.name === "mixed.test"));
        assert.equal(await queue.hasDomain("MIXED.TEST"), true);
        assert.equal(await queue.hasDomain("mixed.test"), true);
        await queue.setDomainHold("Mixed.TEST", true);
        assert.equal((await domainInfo(queue, "mixed.test")).hold, true);
        await queue.removeDomain("MIXED.test");
        assert.equal(await queue.hasDomain("mixed.test"), false);
      }),
    );

    test(
      "an internationalized domain is stored as its A-label and found by either form",
      run(async ({ queue }) => {
        await queue.addDomain("böb.test", "bob");
        assert.ok((await queue.listDomains()).some((d) => d.name === "xn--bb-fka.test"));
        assert.equal(await queue.hasDomain("XN--BB-FKA.test"), true);
        assert.equal(await queue.hasDomain("böb.test"), true);
        await rejectsStoreError(queue.addDomain("xn--bb-fka.test", "alice"), "conflict");
      }),
    );

    test(
      "an invalid domain name is refused as invalid",
      run(async ({ queue }) => {
        for (const bad of ["nodot", "bad..name.test", "-x.test"]) {
          await rejectsStoreError(queue.addDomain(bad, "bob"), "invalid", /Not a valid domain name/);
        }
        assert.equal((await queue.listDomains()).length, 3);
      }),
    );

    test(
      "hasDomain is false for a domain nobody added",
      run(async ({ queue }) => {
        assert.equal(await queue.hasDomain("elsewhere.test"), false);
        assert.equal(await queue.hasDomain("a.test"), true);
      }),
    );

    test(
      "hold is set and cleared, and shows in listDomains, domainsOfAccount and domainQueueStatus",
      run(async ({ queue, alice }) => {
        await queue.setDomainHold("a2.test", true);
        assert.equal((await domainInfo(queue, "a2.test")).hold, true);
        assert.equal((await domainInfo(queue, "a.test")).hold, false);
        assert.deepEqual(plain(await queue.domainsOfAccount(alice.id)), [
          { name: "a.test", hold: false },
          { name: "a2.test", hold: true },
        ]);
        assert.deepEqual(
          (await queue.domainQueueStatus()).map((d) => [d.name, d.hold]),
          [["a.test", false], ["a2.test", true], ["b.test", false]],
        );
        await queue.setDomainHold("a2.test", false);
        assert.equal((await domainInfo(queue, "a2.test")).hold, false);
      }),
    );

    test(
      "setDomainHold of an unknown domain is not found",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.setDomainHold("elsewhere.test", true), "not-found");
      }),
    );

    test(
      "domainsOfAccount lists an account's domains by name, and none for an unknown account",
      run(async ({ queue, alice, bob }) => {
        assert.deepEqual(plain(await queue.domainsOfAccount(bob.id)), [{ name: "b.test", hold: false }]);
        assert.deepEqual((await queue.domainsOfAccount(alice.id)).map((d) => d.name), ["a.test", "a2.test"]);
        assert.deepEqual(await queue.domainsOfAccount(alice.id + bob.id + 1000), []);
      }),
    );

    test(
      "updateDomain changes the given settings and leaves the others as they were",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", {
          retentionMs: 7 * 86_400_000,
          quotaBytes: 5000,
          allowRoutingSyntax: true,
          notifyAddress: "owner@elsewhere.test",
          notifyAfterMs: 3_600_000,
        });
        await queue.updateDomain("a.test", { quotaBytes: 6000 });
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual(
          [a.retentionMs, a.quotaBytes, a.allowRoutingSyntax, a.notifyAddress, a.notifyAfterMs, a.catchAll],
          [7 * 86_400_000, 6000, true, "owner@elsewhere.test", 3_600_000, true],
        );
        const a2 = await domainInfo(queue, "a2.test");
        assert.deepEqual([a2.retentionMs, a2.quotaBytes, a2.allowRoutingSyntax], [null, null, false]);
      }),
    );

    test(
      "updateDomain with null clears each setting, and mailboxes null makes the domain catch-all again",
      run(async ({ queue }) => {
        await queue.updateDomain("b.test", {
          retentionMs: 1000,
          quotaBytes: 2000,
          notifyAddress: "owner@elsewhere.test",
          notifyAfterMs: 60_000,
        });
        await queue.updateDomain("b.test", {
          retentionMs: null,
          quotaBytes: null,
          mailboxes: null,
          notifyAddress: null,
          notifyAfterMs: null,
        });
        const b = await domainInfo(queue, "b.test");
        assert.deepEqual(
          [b.retentionMs, b.quotaBytes, b.notifyAddress, b.notifyAfterMs, b.catchAll, b.mailboxes],
          [null, null, null, null, true, 0],
        );
        assert.equal(await queue.recipientVerdict("b.test", "anyone"), "accept");
      }),
    );

    test(
      "updateDomain replaces the mailbox list, and a mailbox given twice counts once",
      run(async ({ queue }) => {
        await queue.updateDomain("b.test", { mailboxes: ["sales", "team", "team"] });
        const b = await domainInfo(queue, "b.test");
        assert.deepEqual([b.catchAll, b.mailboxes], [false, 2]);
        assert.equal(await queue.recipientVerdict("b.test", "team"), "accept");
        assert.equal(await queue.recipientVerdict("b.test", "info"), "unknown-mailbox");
        await queue.updateDomain("a.test", { mailboxes: ["info"] });
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.catchAll, a.mailboxes], [false, 1]);
      }),
    );

    test(
      "updateDomain with an empty mailbox list leaves only postmaster accepted",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", { mailboxes: [] });
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.catchAll, a.mailboxes], [false, 0]);
        assert.equal(await queue.recipientVerdict("a.test", "anyone"), "unknown-mailbox");
        assert.equal(await queue.recipientVerdict("a.test", "postmaster"), "accept");
      }),
    );

    test(
      "updateDomain of an unknown domain is not found",
      run(async ({ queue }) => {
        await rejectsStoreError(
          queue.updateDomain("elsewhere.test", { quotaBytes: 1 }),
          "not-found",
          /No domain/,
        );
      }),
    );

    test(
      "listDomains counts each domain's queued recipients, and a message's size once per recipient there",
      run(async ({ queue }) => {
        await queue.enqueue(mail(["u@a.test", "v@a.test", "info@b.test"]), bodyOf("x".repeat(100)));
        await queue.enqueue(mail(["w@a.test"]), bodyOf("y".repeat(50)));
        const counters = (await queue.listDomains()).map((d) => [d.name, d.queuedRecipients, d.queuedBytes]);
        assert.deepEqual(counters, [["a.test", 3, 250], ["a2.test", 0, 0], ["b.test", 1, 100]]);
      }),
    );

    test(
      "removeDomain of a domain without mail removes it and its mailboxes",
      run(async ({ queue, bob }) => {
        assert.deepEqual(await queue.removeDomain("b.test"), { deletedRecipients: 0 });
        assert.equal(await queue.hasDomain("b.test"), false);
        assert.deepEqual(await queue.domainsOfAccount(bob.id), []);
        await queue.addDomain("b.test", "bob");
        const b = await domainInfo(queue, "b.test");
        assert.deepEqual([b.catchAll, b.mailboxes], [true, 0], "the old mailboxes went with the domain");
      }),
    );

    test(
      "removeDomain refuses a domain with queued mail unless forced, and keeps it all",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        await rejectsStoreError(queue.removeDomain("a.test"), "conflict", /1 recipient\(s\).*--force/);
        assert.equal(await queue.hasDomain("a.test"), true);
        assert.equal((await recipientsOf(queue, id)).length, 1);
      }),
    );

    test(
      "a recipient waiting for its DSN also keeps a domain from being removed",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        const [r] = await recipientsOf(queue, id);
        await queue.recordOutcomes(id, [{ id: r!.id, result: "failed", code: 550, text: "no" }]);
        await rejectsStoreError(queue.removeDomain("a.test"), "conflict");
      }),
    );

    test(
      "forced removeDomain deletes the domain's recipients and the messages left without any",
      run(async ({ queue }) => {
        const shared = await queue.enqueue(mail(["u@a.test", "info@b.test"]), bodyOf("x".repeat(10)));
        const only = await queue.enqueue(mail(["v@a.test", "w@a.test"]), bodyOf("y".repeat(20)));
        assert.deepEqual(await queue.removeDomain("a.test", { force: true }), { deletedRecipients: 3 });
        assert.equal(await queue.hasDomain("a.test"), false);
        assert.equal(await queue.getMessage(only), null);
        assert.deepEqual((await recipientsOf(queue, shared)).map((r) => r.address), ["info@b.test"]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 10, queuedRecipients: 1 });
      }),
    );

    test(
      "removeDomain of an unknown domain is not found",
      run(async ({ queue }) => {
        await rejectsStoreError(queue.removeDomain("elsewhere.test"), "not-found");
        await rejectsStoreError(queue.removeDomain("elsewhere.test", { force: true }), "not-found");
      }),
    );
  });

  describe(`${name} queue: recipientVerdict`, () => {
    test(
      "a catch-all domain accepts any local part, in any case of the domain",
      run(async ({ queue }) => {
        assert.equal(await queue.recipientVerdict("a.test", "anyone"), "accept");
        assert.equal(await queue.recipientVerdict("A.Test", "Someone.Else"), "accept");
      }),
    );

    test(
      "a domain nobody hosts is unknown-domain",
      run(async ({ queue }) => {
        assert.equal(await queue.recipientVerdict("elsewhere.test", "x"), "unknown-domain");
        assert.equal(await queue.recipientVerdict("elsewhere.test", "postmaster"), "unknown-domain");
      }),
    );

    test(
      "a mailbox list accepts its local parts exactly as listed, and postmaster in any case",
      run(async ({ queue }) => {
        assert.equal(await queue.recipientVerdict("b.test", "info"), "accept");
        assert.equal(await queue.recipientVerdict("b.test", "Sales"), "accept");
        assert.equal(await queue.recipientVerdict("b.test", "sales"), "unknown-mailbox");
        assert.equal(await queue.recipientVerdict("b.test", "nobody"), "unknown-mailbox");
        assert.equal(await queue.recipientVerdict("B.TEST", "PostMaster"), "accept");
      }),
    );

    test(
      "routing syntax (%, !, @) is refused unless the domain allows it, before the mailbox check",
      run(async ({ queue }) => {
        for (const local of ["user%other.test", "other.test!user", "user@other.test"]) {
          assert.equal(await queue.recipientVerdict("a.test", local), "routing-syntax", local);
          assert.equal(await queue.recipientVerdict("b.test", local), "routing-syntax", local);
        }
        await queue.updateDomain("a.test", { allowRoutingSyntax: true });
        await queue.updateDomain("b.test", { allowRoutingSyntax: true });
        assert.equal(await queue.recipientVerdict("a.test", "user%other.test"), "accept");
        assert.equal(await queue.recipientVerdict("b.test", "user%other.test"), "unknown-mailbox");
      }),
    );

    test(
      "a declared size alone over the quota is over-quota; exactly the quota is accepted",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", { quotaBytes: 150 });
        assert.equal(await queue.recipientVerdict("a.test", "info", 150), "accept");
        assert.equal(await queue.recipientVerdict("a.test", "info", 151), "over-quota");
        assert.equal(await queue.recipientVerdict("a2.test", "info", 10_000_000), "accept", "no quota");
      }),
    );

    test(
      "the quota counts the queued bytes plus the declared size",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", { quotaBytes: 150 });
        await queue.enqueue(mail(["info@a.test"]), bodyOf("x".repeat(118)));
        assert.equal(await queue.recipientVerdict("a.test", "info", 32), "accept");
        assert.equal(await queue.recipientVerdict("a.test", "info", 33), "over-quota");
        assert.equal(await queue.recipientVerdict("a.test", "info"), "accept");
        await queue.updateDomain("a.test", { quotaBytes: 100 });
        assert.equal(await queue.recipientVerdict("a.test", "info"), "over-quota", "already over");
      }),
    );

    test(
      "an unknown mailbox is reported before the quota, and postmaster is subject to the quota",
      run(async ({ queue }) => {
        await queue.updateDomain("b.test", { quotaBytes: 10 });
        assert.equal(await queue.recipientVerdict("b.test", "nobody", 100), "unknown-mailbox");
        assert.equal(await queue.recipientVerdict("b.test", "postmaster", 100), "over-quota");
        assert.equal(await queue.recipientVerdict("b.test", "postmaster", 10), "accept");
      }),
    );

    test(
      'the relay\'s own postmaster mailbox (domain "") is bounded by postmasterQuotaBytes',
      run(async ({ queue }) => {
        queue.postmasterQuotaBytes = 100;
        assert.equal(queue.postmasterQuotaBytes, 100);
        assert.equal(await queue.recipientVerdict("", "Postmaster", 100), "accept");
        assert.equal(await queue.recipientVerdict("", "Postmaster", 101), "over-quota");
        await queue.enqueue(toPostmasterMailbox(), bodyOf("p".repeat(60)));
        assert.equal(await queue.recipientVerdict("", "Postmaster", 40), "accept");
        assert.equal(await queue.recipientVerdict("", "Postmaster", 41), "over-quota");
        queue.postmasterQuotaBytes = 50;
        assert.equal(await queue.recipientVerdict("", "Postmaster"), "over-quota");
      }),
    );
  });

  describe(`${name} queue: enqueue`, () => {
    test(
      "enqueue stores the envelope and every recipient as given, with the clock's time",
      run(async ({ queue, clock }) => {
        clock.set(T0 + 1000);
        const message: IncomingMessage = {
          mailFrom: "sender@x.test",
          clientIp: "192.0.2.7",
          clientHelo: "mx.sender.test",
          tls: true,
          bodyType: "8BITMIME",
          smtputf8: true,
          envid: "env+2Bone",
          ret: "HDRS",
          recipients: [
            { address: "U@a.test", domain: "a.test", notify: "SUCCESS,FAILURE", orcpt: "rfc822;U@a.test" },
            { address: "info@b.test", domain: "b.test", notify: "NEVER", orcpt: null },
          ],
        };
        const body = bodyOf("Subject: caf\u00e9\r\n\r\nbonjour\r\n");
        const id = await queue.enqueue(message, body);
        const m = await queue.getMessage(id);
        assert.ok(m);
        assert.deepEqual(envelopeOf(m), {
          id,
          receivedAt: T0 + 1000,
          mailFrom: "sender@x.test",
          size: body.size,
          clientIp: "192.0.2.7",
          clientHelo: "mx.sender.test",
          tls: true,
          bodyType: "8BITMIME",
          smtputf8: true,
          eightBit: true,
          envid: "env+2Bone",
          ret: "HDRS",
        });
        const unsent = {
          messageId: id,
          status: "queued",
          queuedAt: T0 + 1000,
          messageSize: body.size,
          attempts: 0,
          lastCode: null,
          lastText: null,
          lastAttemptAt: null,
          failureKind: null,
          remoteMta: null,
          delayWarnings: 0,
        };
        const [first, second] = m.recipients;
        assert.ok(first && second && first.id < second.id, "recipients in the order given");
        assert.deepEqual(plain(m.recipients), [
          {
            id: first.id,
            address: "U@a.test",
            domain: "a.test",
            notify: "SUCCESS,FAILURE",
            orcpt: "rfc822;U@a.test",
            ...unsent,
          },
          {
            id: second.id,
            address: "info@b.test",
            domain: "b.test",
            notify: "NEVER",
            orcpt: null,
            ...unsent,
          },
        ]);
      }),
    );

    test(
      "the null sender and the default envelope fields are stored as given",
      run(async ({ queue }) => {
        const id = await queue.enqueue({ ...mail(["u@a.test"]), mailFrom: "" }, bodyOf("x"));
        const m = await queue.getMessage(id);
        assert.ok(m);
        const e = envelopeOf(m);
        assert.deepEqual(
          [e.mailFrom, e.tls, e.bodyType, e.smtputf8, e.envid, e.ret, e.clientIp, e.clientHelo],
          ["", false, null, false, null, null, "127.0.0.1", "client.test"],
        );
      }),
    );

    test(
      "recipient domains are stored lower-case and counted on their domain",
      run(async ({ queue }) => {
        const id = await queue.enqueue(
          { ...mail([]), recipients: [{ address: "U@A.Test", domain: "A.Test", notify: null, orcpt: null }] },
          bodyOf("x".repeat(7)),
        );
        const [r] = await recipientsOf(queue, id);
        assert.deepEqual([r?.address, r?.domain], ["U@A.Test", "a.test"]);
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.queuedRecipients, a.queuedBytes], [1, 7]);
        assert.equal(await queue.hasQueuedMail(["a.test"]), true);
      }),
    );

    test(
      "the 8-bit flag follows the body's octets",
      run(async ({ queue }) => {
        const seven = await queue.enqueue(mail(["u@a.test"]), bodyOf("plain ascii\r\n"));
        const eight = await queue.enqueue(
          mail(["u@a.test"]),
          bodyOf(new Uint8Array([0x41, 0xe9, 0x0d, 0x0a])),
        );
        assert.equal((await queue.getMessage(seven))?.eightBit, false);
        assert.equal((await queue.getMessage(eight))?.eightBit, true);
        const selected = await queue.nextDeliverable(["a.test"], 0);
        assert.deepEqual(selected.map((m) => [m.id, m.eightBit]), [[seven, false], [eight, true]]);
      }),
    );

    test(
      "message ids increase with each enqueue",
      run(async ({ queue }) => {
        const ids: number[] = [];
        for (let i = 0; i < 5; i++) ids.push(await queue.enqueue(mail([`u${i}@a.test`]), bodyOf(`m${i}`)));
        for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `${ids}`);
      }),
    );

    test(
      "a small body reads back byte for byte",
      run(async ({ queue }) => {
        const text = "Subject: hi\r\n\r\nhello\r\n.. dotted\r\n";
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf(text));
        assert.equal(new TextDecoder().decode(concat(await readAll(queue, id))), text);
      }),
    );

    test(
      "a ~300 KB body given in chunks reads back byte for byte, no chunk over CHUNK_SIZE",
      run(async ({ queue }) => {
        const bytes = patterned(300 * 1024 + 17);
        const id = await queue.enqueue(mail(["u@a.test"]), chunked(bytes));
        const chunks = await readAll(queue, id);
        assert.ok(chunks.every((c) => c.length <= CHUNK_SIZE), `${chunks.map((c) => c.length)}`);
        assertSameBytes(concat(chunks), bytes);
        const m = await queue.getMessage(id);
        assert.deepEqual([m?.size, m?.eightBit], [bytes.length, true]);
      }),
    );

    test(
      "a body source that reuses its two buffers is stored intact",
      run(async ({ queue }) => {
        const bytes = patterned(2 * CHUNK_SIZE + 1000);
        const id = await queue.enqueue(mail(["u@a.test"]), reusingBuffers(bytes));
        assertSameBytes(concat(await readAll(queue, id)), bytes);
      }),
    );

    test(
      "a body source that fails mid-way rejects and stores nothing",
      run(async ({ queue }) => {
        const broken: BodySource = {
          size: 2 * CHUNK_SIZE,
          eightBit: false,
          *chunks() {
            yield new Uint8Array(CHUNK_SIZE);
            yield new Uint8Array(CHUNK_SIZE);
            throw new Error("disk went away");
          },
        };
        await assert.rejects(queue.enqueue(mail(["u@a.test"]), broken), /disk went away/);
        assert.deepEqual(await queue.queueCounts(), { messages: 0, bytes: 0, queuedRecipients: 0 });
        assert.deepEqual(await queue.listQueue(), []);
        assert.equal((await domainInfo(queue, "a.test")).queuedRecipients, 0);
        assert.equal(await queue.hasQueuedMail(["a.test"]), false);
      }),
    );

    test(
      "readBody of an unknown message is a not-found StoreError",
      run(async ({ queue }) => {
        await rejectsStoreError(readAll(queue, 424242), "not-found");
      }),
    );

    test(
      "the counters follow each enqueue: queueCounts, totals, domainQueueStatus and listDomains",
      run(async ({ queue, clock }) => {
        await queue.enqueue(mail(["u@a.test", "v@a.test", "info@b.test"]), bodyOf("x".repeat(100)));
        clock.advance(5000);
        await queue.enqueue(mail(["w@a2.test"]), bodyOf("y".repeat(50)));
        assert.deepEqual(await queue.queueCounts(), { messages: 2, bytes: 150, queuedRecipients: 4 });
        assert.deepEqual(plain(await queue.totals()), {
          messages: 2,
          bytes: 150,
          queuedRecipients: 4,
          oldestQueuedAt: T0,
        });
        const status = (await queue.domainQueueStatus()).map((
          d,
        ) => [d.name, d.queuedRecipients, d.queuedBytes]);
        assert.deepEqual(status, [["a.test", 2, 200], ["a2.test", 1, 50], ["b.test", 1, 100]]);
        const listed = (await queue.listDomains()).map((d) => [d.name, d.queuedRecipients, d.queuedBytes]);
        assert.deepEqual(listed, status);
      }),
    );

    test(
      "a message over a domain's quota is refused whole with QuotaExceededError; exactly the quota fits",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", { quotaBytes: 100 });
        await assert.rejects(
          queue.enqueue(mail(["u@a.test", "info@b.test"]), bodyOf("x".repeat(101))),
          (error: unknown) => error instanceof QuotaExceededError && error.domain === "a.test",
        );
        assert.deepEqual(await queue.queueCounts(), { messages: 0, bytes: 0, queuedRecipients: 0 });
        assert.equal((await domainInfo(queue, "b.test")).queuedRecipients, 0, "not even b.test's part");
        await queue.enqueue(mail(["u@a.test"]), bodyOf("x".repeat(100)));
        await assert.rejects(queue.enqueue(mail(["u@a.test"]), bodyOf("x")), QuotaExceededError);
        assert.equal((await domainInfo(queue, "a.test")).queuedBytes, 100);
      }),
    );

    test(
      "a domain removed between RCPT and the end of DATA: the enqueue is refused whole, nothing is stored",
      run(async ({ queue }) => {
        assert.equal(await queue.recipientVerdict("a2.test", "u"), "accept");
        await queue.removeDomain("a2.test");
        await assert.rejects(
          queue.enqueue(mail(["u@a2.test", "info@b.test"]), bodyOf("x")),
          (error: unknown) => error instanceof DomainGoneError && error.domain === "a2.test",
        );
        assert.deepEqual(await queue.queueCounts(), { messages: 0, bytes: 0, queuedRecipients: 0 });
      }),
    );

    test(
      "the quota counts a message once per recipient in the domain",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", { quotaBytes: 150 });
        await assert.rejects(
          queue.enqueue(mail(["u@a.test", "v@a.test"]), bodyOf("x".repeat(100))),
          QuotaExceededError,
        );
        await queue.enqueue(mail(["u@a.test"]), bodyOf("x".repeat(100)));
      }),
    );

    test(
      'the postmaster mailbox\'s quota refuses a message with QuotaExceededError for "postmaster"',
      run(async ({ queue }) => {
        queue.postmasterQuotaBytes = 100;
        await queue.enqueue(toPostmasterMailbox(), bodyOf("p".repeat(60)));
        await assert.rejects(
          queue.enqueue(toPostmasterMailbox(), bodyOf("p".repeat(41))),
          (error: unknown) => error instanceof QuotaExceededError && error.domain === "postmaster",
        );
        await queue.enqueue(toPostmasterMailbox(), bodyOf("p".repeat(40)));
        assert.equal(await queue.postmasterMailboxBytes(), 100);
      }),
    );

    test(
      "enqueueMany stores the others when one in the middle is over quota, with the Error in its slot",
      run(async ({ queue }) => {
        await queue.updateDomain("b.test", { quotaBytes: 10 });
        const results = await queue.enqueueMany([
          { message: mail(["u@a.test"]), body: bodyOf("first") },
          { message: mail(["info@b.test"]), body: bodyOf("x".repeat(11)) },
          { message: mail(["v@a.test"]), body: bodyOf("third") },
        ]);
        assert.equal(results.length, 3);
        const [first, middle, third] = results;
        assert.equal(typeof first, "number");
        assert.ok(middle instanceof QuotaExceededError && middle.domain === "b.test", `${middle}`);
        assert.equal(typeof third, "number");
        assert.ok((third as number) > (first as number));
        assert.deepEqual((await queue.listQueue()).map((m) => m.id), [first, third]);
        assert.equal(new TextDecoder().decode(concat(await readAll(queue, third as number))), "third");
        assert.deepEqual(await queue.queueCounts(), { messages: 2, bytes: 10, queuedRecipients: 2 });
        assert.equal((await domainInfo(queue, "b.test")).queuedRecipients, 0);
      }),
    );

    test(
      "messages committed together in enqueueMany count each other's bytes against the quota",
      run(async ({ queue }) => {
        await queue.updateDomain("a.test", { quotaBytes: 150 });
        const results = await queue.enqueueMany([
          { message: mail(["u@a.test"]), body: bodyOf("x".repeat(100)) },
          { message: mail(["v@a.test"]), body: bodyOf("y".repeat(100)) },
        ]);
        assert.equal(typeof results[0], "number");
        assert.ok(results[1] instanceof QuotaExceededError);
        assert.equal((await domainInfo(queue, "a.test")).queuedBytes, 100);
      }),
    );

    test(
      "enqueueMany rolls back alone a message whose body fails mid-way, chunks included",
      run(async ({ queue }) => {
        const broken: BodySource = {
          size: 2 * CHUNK_SIZE,
          eightBit: false,
          *chunks() {
            yield new Uint8Array(CHUNK_SIZE);
            yield new Uint8Array(CHUNK_SIZE);
            throw new Error("disk went away");
          },
        };
        const big = patterned(CHUNK_SIZE + 99);
        const results = await queue.enqueueMany([
          { message: mail(["u@a.test"]), body: broken },
          { message: mail(["v@a.test"]), body: chunked(big) },
        ]);
        assert.ok(results[0] instanceof Error && /disk went away/.test(results[0].message), `${results[0]}`);
        assert.equal(typeof results[1], "number");
        assertSameBytes(concat(await readAll(queue, results[1] as number)), big);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: big.length, queuedRecipients: 1 });
      }),
    );

    test(
      "messages to the postmaster mailbox committed together count each other's bytes against its quota",
      run(async ({ queue }) => {
        queue.postmasterQuotaBytes = 100;
        const results = await queue.enqueueMany([
          { message: toPostmasterMailbox(), body: bodyOf("p".repeat(60)) },
          { message: toPostmasterMailbox(), body: bodyOf("q".repeat(60)) },
        ]);
        assert.equal(typeof results[0], "number");
        assert.ok(results[1] instanceof QuotaExceededError && results[1].domain === "postmaster");
        assert.equal(await queue.postmasterMailboxBytes(), 60);
      }),
    );

    test(
      "enqueueMany of nothing stores nothing",
      run(async ({ queue }) => {
        assert.deepEqual(await queue.enqueueMany([]), []);
        assert.deepEqual(await queue.queueCounts(), { messages: 0, bytes: 0, queuedRecipients: 0 });
      }),
    );
  });

  describe(`${name} queue: delivery selection`, () => {
    test(
      "hasQueuedMail is true when any of the domains has a queued recipient",
      run(async ({ queue }) => {
        assert.equal(await queue.hasQueuedMail(["a.test", "a2.test", "b.test"]), false);
        await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        assert.equal(await queue.hasQueuedMail(["a.test"]), true);
        assert.equal(await queue.hasQueuedMail(["a2.test", "a.test"]), true);
        assert.equal(await queue.hasQueuedMail(["a2.test", "b.test"]), false);
        assert.equal(await queue.hasQueuedMail([]), false);
      }),
    );

    test(
      "hasQueuedMail is false once the domain's recipients have failed",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        const [r] = await recipientsOf(queue, id);
        await queue.recordOutcomes(id, [{ id: r!.id, result: "failed", code: 550, text: "no" }]);
        assert.equal(await queue.hasQueuedMail(["a.test"]), false);
      }),
    );

    test(
      "nextDeliverable gives the message's delivery facts with only the asked domains' recipients",
      run(async ({ queue, clock }) => {
        clock.set(T0 + 42);
        const id = await queue.enqueue(
          mail(["u@a.test", "info@b.test", "w@a2.test"], {
            bodyType: "8BITMIME",
            smtputf8: true,
            envid: "e1",
            ret: "FULL",
            recipients: [
              { address: "u@a.test", domain: "a.test", notify: "FAILURE", orcpt: "rfc822;u@a.test" },
              { address: "info@b.test", domain: "b.test", notify: null, orcpt: null },
              { address: "w@a2.test", domain: "a2.test", notify: null, orcpt: null },
            ],
          }),
          bodyOf("body\r\n"),
        );
        const rows = await recipientsOf(queue, id);
        const selected = await queue.nextDeliverable(["a.test", "a2.test"], 0);
        assert.deepEqual(plain(selected), [{
          id,
          mailFrom: "sender@x.test",
          size: 6,
          bodyType: "8BITMIME",
          smtputf8: true,
          eightBit: false,
          envid: "e1",
          ret: "FULL",
          receivedAt: T0 + 42,
          recipients: [
            { id: rows[0]!.id, address: "u@a.test", notify: "FAILURE", orcpt: "rfc822;u@a.test" },
            { id: rows[2]!.id, address: "w@a2.test", notify: null, orcpt: null },
          ],
        }]);
        assert.deepEqual(await queue.nextDeliverable(["a2.test", "b.test"], id), [], "nothing after its id");
        assert.deepEqual(await queue.nextDeliverable([], 0), []);
      }),
    );

    test(
      "the other domains' recipients stay queued when the asked ones are delivered",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test", "info@b.test"]), bodyOf("body\r\n"));
        const [m] = await queue.nextDeliverable(["a.test"], 0);
        assert.ok(m);
        await queue.recordOutcomes(
          id,
          m.recipients.map((r) => ({ id: r.id, result: "delivered", code: 250, text: "ok" })),
        );
        assert.equal(await queue.hasQueuedMail(["a.test"]), false);
        assert.equal(await queue.hasQueuedMail(["b.test"]), true);
        assert.deepEqual((await recipientsOf(queue, id)).map((r) => r.address), ["info@b.test"]);
      }),
    );

    test(
      "paging by afterId returns every message once, in id order",
      run(async ({ queue }) => {
        const ids: number[] = [];
        for (let i = 0; i < 7; i++) {
          ids.push(await queue.enqueue(mail([`u${i}@a.test`, `v${i}@a2.test`]), bodyOf(`m${i}`)));
        }
        const pages: number[][] = [];
        let after = 0;
        for (let page = 0; page < 10; page++) {
          const batch = await queue.nextDeliverable(["a.test", "a2.test"], after, 3);
          if (batch.length === 0) break;
          assert.ok(batch.every((m) => m.recipients.length === 2));
          pages.push(batch.map((m) => m.id));
          after = batch[batch.length - 1]!.id;
        }
        assert.deepEqual(pages, [ids.slice(0, 3), ids.slice(3, 6), ids.slice(6)]);
      }),
    );

    test(
      "the limit counts messages across the asked domains in id order",
      run(async ({ queue }) => {
        const first = await queue.enqueue(mail(["u@a.test"]), bodyOf("1"));
        const second = await queue.enqueue(mail(["u@a2.test"]), bodyOf("2"));
        await queue.enqueue(mail(["v@a.test"]), bodyOf("3"));
        const selected = await queue.nextDeliverable(["a2.test", "a.test"], 0, 2);
        assert.deepEqual(selected.map((m) => m.id), [first, second]);
      }),
    );

    test(
      "without a limit nextDeliverable gives at most 50 messages",
      run(async ({ queue }) => {
        const items = Array.from(
          { length: 51 },
          (_, i) => ({ message: mail([`u${i}@a.test`]), body: bodyOf(`m${i}`) }),
        );
        const ids = await queue.enqueueMany(items);
        const selected = await queue.nextDeliverable(["a.test"], 0);
        assert.deepEqual(selected.map((m) => m.id), ids.slice(0, 50));
      }),
    );

    test(
      "recipients that failed or were relayed are not offered again, nor messages left without any",
      run(async ({ queue }) => {
        const done = await queue.enqueue(mail(["u@a.test", "v@a.test"]), bodyOf("x"));
        const open = await queue.enqueue(mail(["w@a.test", "z@a.test"]), bodyOf("y"));
        const [u, v] = await recipientsOf(queue, done);
        const [w] = await recipientsOf(queue, open);
        await queue.recordOutcomes(done, [
          { id: u!.id, result: "failed", code: 550, text: "no" },
          { id: v!.id, result: "relayed", code: 250, text: "ok" },
        ]);
        await queue.recordOutcomes(open, [{ id: w!.id, result: "failed", code: 550, text: "no" }]);
        const selected = await queue.nextDeliverable(["a.test"], 0);
        assert.deepEqual(selected.map((m) => [m.id, m.recipients.map((r) => r.address)]), [[open, [
          "z@a.test",
        ]]]);
      }),
    );

    test(
      "a deferred recipient is offered again",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        const [r] = await recipientsOf(queue, id);
        await queue.recordOutcomes(id, [{ id: r!.id, result: "deferred", code: 451, text: "later" }]);
        assert.deepEqual((await queue.nextDeliverable(["a.test"], 0)).map((m) => m.id), [id]);
      }),
    );

    test(
      "a held domain's mail stays selectable: the store does not filter on hold (the ODMR layer does)",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        await queue.setDomainHold("a.test", true);
        assert.equal(await queue.hasQueuedMail(["a.test"]), true);
        assert.deepEqual((await queue.nextDeliverable(["a.test"], 0)).map((m) => m.id), [id]);
        assert.deepEqual((await queue.expiryCandidates()).map((d) => d.name), ["a.test"]);
      }),
    );
  });

  describe(`${name} queue: outcomes`, () => {
    test(
      "delivered removes the recipient, and the message stays while another is left",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test", "v@a.test"]), bodyOf("x".repeat(10)));
        const [u, v] = await recipientsOf(queue, id);
        await queue.recordOutcomes(id, [{ id: u!.id, result: "delivered", code: 250, text: "ok" }]);
        assert.deepEqual((await recipientsOf(queue, id)).map((r) => r.id), [v!.id]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 10, queuedRecipients: 1 });
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.queuedRecipients, a.queuedBytes], [1, 10]);
      }),
    );

    test(
      "the message and its body are deleted once its last recipient is delivered",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), chunked(patterned(CHUNK_SIZE + 10)));
        const [m] = await queue.nextDeliverable(["a.test"], 0);
        await queue.recordOutcomes(id, [{
          id: m!.recipients[0]!.id,
          result: "delivered",
          code: 250,
          text: "ok",
        }]);
        assert.equal(await queue.getMessage(id), null);
        await rejectsStoreError(readAll(queue, id), "not-found");
        assert.deepEqual(plain(await queue.totals()), {
          messages: 0,
          bytes: 0,
          queuedRecipients: 0,
          oldestQueuedAt: null,
        });
      }),
    );

    test(
      "deferred keeps the recipient queued, counting the attempt with its reply and time",
      run(async ({ queue, clock }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x".repeat(10)));
        const [r] = await recipientsOf(queue, id);
        clock.advance(1000);
        await queue.recordOutcomes(id, [{ id: r!.id, result: "deferred", code: 451, text: "try later" }]);
        clock.advance(1000);
        await queue.recordOutcomes(id, [{ id: r!.id, result: "deferred", code: 452, text: "full" }]);
        const [after] = await recipientsOf(queue, id);
        assert.deepEqual(
          [
            after?.status,
            after?.attempts,
            after?.lastCode,
            after?.lastText,
            after?.lastAttemptAt,
            after?.failureKind,
          ],
          ["queued", 2, 452, "full", T0 + 2000, null],
        );
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 10, queuedRecipients: 1 });
        assert.equal((await domainInfo(queue, "a.test")).queuedRecipients, 1);
      }),
    );

    test(
      "failed leaves the queued counters, keeps the message for its DSN, and shows in getMessage",
      run(async ({ queue, clock }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x".repeat(10)));
        const [r] = await recipientsOf(queue, id);
        clock.advance(1000);
        await queue.recordOutcomes(id, [{
          id: r!.id,
          result: "failed",
          code: 550,
          text: "no such user",
          remoteMta: "mx.customer.test",
        }]);
        const [after] = await recipientsOf(queue, id);
        assert.deepEqual(
          [after?.status, after?.attempts, after?.lastCode, after?.lastText, after?.lastAttemptAt],
          ["failed", 1, 550, "no such user", T0 + 1000],
        );
        assert.deepEqual([after?.failureKind, after?.remoteMta], ["customer-rejected", "mx.customer.test"]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 10, queuedRecipients: 0 });
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.queuedRecipients, a.queuedBytes], [0, 0]);
      }),
    );

    test(
      "a failure the relay made itself is a local refusal",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        const [r] = await recipientsOf(queue, id);
        await queue.recordOutcomes(id, [{
          id: r!.id,
          result: "failed",
          code: 554,
          text: "too big",
          local: true,
        }]);
        const [after] = await recipientsOf(queue, id);
        assert.deepEqual([after?.status, after?.failureKind, after?.remoteMta], [
          "failed",
          "local-refusal",
          null,
        ]);
      }),
    );

    test(
      "relayed leaves the queued counters and keeps the recipient for its success DSN",
      run(async ({ queue, clock }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x".repeat(10)));
        const [r] = await recipientsOf(queue, id);
        clock.advance(500);
        await queue.recordOutcomes(id, [{
          id: r!.id,
          result: "relayed",
          code: 250,
          text: "queued as 7",
          remoteMta: "mx.customer.test",
        }]);
        const [after] = await recipientsOf(queue, id);
        assert.deepEqual(
          [after?.status, after?.attempts, after?.lastCode, after?.lastText, after?.lastAttemptAt],
          ["relayed", 1, 250, "queued as 7", T0 + 500],
        );
        assert.deepEqual([after?.failureKind, after?.remoteMta], [null, "mx.customer.test"]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 10, queuedRecipients: 0 });
      }),
    );

    test(
      "an outcome for a recipient that is no longer queued changes nothing",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        const [r] = await recipientsOf(queue, id);
        await queue.bounceMessage(id, "bounced by operator");
        await queue.recordOutcomes(id, [{ id: r!.id, result: "delivered", code: 250, text: "ok" }]);
        await queue.recordOutcomes(id, [{ id: r!.id, result: "deferred", code: 451, text: "later" }]);
        const [after] = await recipientsOf(queue, id);
        assert.deepEqual([after?.status, after?.attempts, after?.failureKind], [
          "failed",
          0,
          "operator-bounce",
        ]);
      }),
    );

    test(
      "recordOutcomesMany applies the outcomes of every message in the call",
      run(async ({ queue }) => {
        const one = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        const two = await queue.enqueue(mail(["v@a.test", "w@a.test"]), bodyOf("y"));
        const [u] = await recipientsOf(queue, one);
        const [v, w] = await recipientsOf(queue, two);
        await queue.recordOutcomesMany([
          { messageId: one, outcomes: [{ id: u!.id, result: "delivered", code: 250, text: "ok" }] },
          {
            messageId: two,
            outcomes: [
              { id: v!.id, result: "delivered", code: 250, text: "ok" },
              { id: w!.id, result: "deferred", code: 421, text: "closing" },
            ],
          },
        ]);
        assert.equal(await queue.getMessage(one), null);
        const left = await recipientsOf(queue, two);
        assert.deepEqual(left.map((r) => [r.address, r.status, r.attempts]), [["w@a.test", "queued", 1]]);
        await queue.recordOutcomesMany([]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 1, queuedRecipients: 1 });
      }),
    );
  });

  describe(`${name} queue: expiry`, () => {
    test(
      "expiryCandidates lists the domains with queued mail and their queue lifetime override",
      run(async ({ queue }) => {
        assert.deepEqual(await queue.expiryCandidates(), []);
        await queue.updateDomain("a2.test", { retentionMs: 3_600_000 });
        await queue.enqueue(mail(["u@a.test", "v@a2.test"]), bodyOf("x"));
        const failed = await queue.enqueue(mail(["info@b.test"]), bodyOf("y"));
        await queue.bounceMessage(failed, "gone");
        const candidates = plain(await queue.expiryCandidates()).sort((x, y) => x.name.localeCompare(y.name));
        assert.deepEqual(candidates, [
          { name: "a.test", retentionMs: null },
          { name: "a2.test", retentionMs: 3_600_000 },
        ]);
      }),
    );

    test(
      "expireQueued fails the domain's recipients queued before the cutoff, keeping their last reply",
      run(async ({ queue, clock }) => {
        const old = await queue.enqueue(
          mail(["u@a.test", "v@a.test", "info@b.test"]),
          bodyOf("x".repeat(10)),
        );
        const [u, v] = await recipientsOf(queue, old);
        await queue.recordOutcomes(old, [{ id: v!.id, result: "deferred", code: 452, text: "mailbox full" }]);
        clock.advance(1000);
        const fresh = await queue.enqueue(mail(["w@a.test"]), bodyOf("y"));
        const expired = await queue.expireQueued("a.test", T0 + 1000, "4.4.7 expired");
        assert.equal(expired, 2, "queued at the cutoff itself is not expired");
        const rows = await recipientsOf(queue, old);
        assert.deepEqual(
          rows.map((r) => [r.address, r.status, r.failureKind, r.lastCode, r.lastText, r.attempts]),
          [
            ["u@a.test", "failed", "expired", 451, "4.4.7 expired", 0],
            ["v@a.test", "failed", "expired", 452, "mailbox full", 1],
            ["info@b.test", "queued", null, null, null, 0],
          ],
        );
        assert.equal(rows[0]!.id, u!.id);
        assert.equal((await recipientsOf(queue, fresh))[0]!.status, "queued");
        assert.deepEqual(await queue.queueCounts(), { messages: 2, bytes: 11, queuedRecipients: 2 });
        assert.equal((await domainInfo(queue, "a.test")).queuedRecipients, 1);
        assert.equal(await queue.expireQueued("a.test", T0 + 1000, "again"), 0);
      }),
    );
  });

  describe(`${name} queue: ATRN history`, () => {
    test(
      "recordAtrnSession stores the record as given and returns increasing ids",
      run(async ({ queue, alice }) => {
        const first = await queue.recordAtrnSession(
          session(alice, { domains: ["a.test", "a2.test"], delivered: 3 }),
        );
        const second = await queue.recordAtrnSession(session(alice, { outcome: "no-mail", tls: false }));
        assert.ok(second > first);
        const [latest, earlier] = await queue.recentAtrnSessions();
        assert.deepEqual(plain(earlier), {
          id: first,
          accountId: alice.id,
          username: "alice",
          domains: "a.test,a2.test",
          peer: "192.0.2.1",
          tls: true,
          startedAt: T0,
          endedAt: T0 + 500,
          delivered: 3,
          deferred: 0,
          failed: 0,
          outcome: "turned",
          detail: null,
        });
        assert.deepEqual([latest?.id, latest?.outcome, latest?.tls], [second, "no-mail", false]);
      }),
    );

    test(
      "a turned or no-mail session sets the last collection of the account's own domains only",
      run(async ({ queue, alice }) => {
        await queue.recordAtrnSession(
          session(alice, { domains: ["a.test", "b.test"], delivered: 4, peer: "198.51.100.9" }),
        );
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.lastAtrnAt, a.lastAtrnPeer, a.lastAtrnDelivered], [T0 + 500, "198.51.100.9", 4]);
        assert.deepEqual([a.lastFailureAt, a.lastFailureText], [null, null]);
        const b = await domainInfo(queue, "b.test");
        assert.deepEqual([b.lastAtrnAt, b.lastAtrnPeer], [null, null], "b.test is bob's");
        await queue.recordAtrnSession(session(alice, { outcome: "no-mail", endedAt: T0 + 900 }));
        const again = await domainInfo(queue, "a.test");
        assert.deepEqual([again.lastAtrnAt, again.lastAtrnDelivered], [T0 + 900, 0]);
      }),
    );

    test(
      "a refused or busy session is history only: the domains' fields stay",
      run(async ({ queue, alice }) => {
        await queue.recordAtrnSession(session(alice, { outcome: "refused", detail: "not yours" }));
        await queue.recordAtrnSession(session(alice, { outcome: "busy" }));
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.lastAtrnAt, a.lastFailureAt, a.lastFailureText], [null, null, null]);
        assert.equal((await queue.recentAtrnSessions()).length, 2);
      }),
    );

    test(
      "an error, a deferral or a failure sets the last failure, with the detail or the counts",
      run(async ({ queue, alice }) => {
        await queue.recordAtrnSession(
          session(alice, { outcome: "error", detail: "connection lost", endedAt: T0 + 600 }),
        );
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.lastFailureAt, a.lastFailureText, a.lastAtrnAt], [
          T0 + 600,
          "connection lost",
          null,
        ]);
        await queue.recordAtrnSession(
          session(alice, { domains: ["a2.test"], delivered: 2, deferred: 1, failed: 3, endedAt: T0 + 700 }),
        );
        const a2 = await domainInfo(queue, "a2.test");
        assert.deepEqual(
          [a2.lastAtrnAt, a2.lastAtrnDelivered, a2.lastFailureAt, a2.lastFailureText],
          [T0 + 700, 2, T0 + 700, "1 deferred, 3 failed"],
        );
      }),
    );

    test(
      "a session without an account is history only",
      run(async ({ queue }) => {
        const id = await queue.recordAtrnSession(session(null, { outcome: "refused", domains: ["a.test"] }));
        const [row] = await queue.recentAtrnSessions();
        assert.deepEqual([row?.id, row?.accountId, row?.username], [id, null, "nobody"]);
        assert.equal((await domainInfo(queue, "a.test")).lastAtrnAt, null);
      }),
    );

    test(
      "recordPoll sets the last poll of the account's own domains, seen in listDomains and domainQueueStatus",
      run(async ({ queue, alice }) => {
        await queue.recordPoll(alice.id, ["a.test", "b.test"], "203.0.113.5", T0 + 77);
        const a = await domainInfo(queue, "a.test");
        assert.deepEqual([a.lastAtrnAt, a.lastAtrnPeer, a.lastAtrnDelivered], [T0 + 77, "203.0.113.5", 0]);
        const status = (await queue.domainQueueStatus()).find((d) => d.name === "a.test");
        assert.deepEqual(
          [status?.lastAtrnAt, status?.lastAtrnPeer, status?.lastAtrnDelivered],
          [T0 + 77, "203.0.113.5", 0],
        );
        assert.equal((await domainInfo(queue, "b.test")).lastAtrnAt, null, "b.test is bob's");
        assert.equal((await domainInfo(queue, "a2.test")).lastAtrnAt, null, "not polled");
        assert.deepEqual(await queue.recentAtrnSessions(), [], "no history row");
        await queue.recordPoll(alice.id, [], "203.0.113.5", T0 + 99);
        assert.equal((await domainInfo(queue, "a.test")).lastAtrnAt, T0 + 77);
      }),
    );

    test(
      "recentAtrnSessions lists the newest first, at most `limit`, 20 by default",
      run(async ({ queue, alice }) => {
        const ids: number[] = [];
        for (let i = 0; i < 21; i++) {
          ids.push(await queue.recordAtrnSession(session(alice, { startedAt: T0 + i })));
        }
        assert.deepEqual((await queue.recentAtrnSessions(2)).map((s) => s.id), [ids[20], ids[19]]);
        const all = await queue.recentAtrnSessions();
        assert.deepEqual(all.map((s) => s.id), ids.slice(1).reverse());
      }),
    );

    test(
      "pruneAtrnHistory deletes the sessions started before the cutoff and says how many",
      run(async ({ queue, alice }) => {
        for (const startedAt of [T0 - 2000, T0 - 1000, T0, T0 + 1000]) {
          await queue.recordAtrnSession(session(alice, { startedAt }));
        }
        assert.equal(await queue.pruneAtrnHistory(T0), 2);
        assert.deepEqual((await queue.recentAtrnSessions()).map((s) => s.startedAt), [T0 + 1000, T0]);
        assert.equal(await queue.pruneAtrnHistory(T0), 0);
      }),
    );
  });

  describe(`${name} queue: administration`, () => {
    test(
      "listQueue lists every message in id order with all its recipients",
      run(async ({ queue, clock }) => {
        const one = await queue.enqueue(mail(["u@a.test", "info@b.test"]), bodyOf("x".repeat(3)));
        clock.advance(10);
        const two = await queue.enqueue(mail(["v@a2.test"]), bodyOf("y"));
        const [u, info] = await recipientsOf(queue, one);
        await queue.recordOutcomes(one, [{ id: u!.id, result: "deferred", code: 451, text: "later" }]);
        const [v] = await recipientsOf(queue, two);
        assert.deepEqual(plain(await queue.listQueue()), [
          {
            id: one,
            receivedAt: T0,
            mailFrom: "sender@x.test",
            size: 3,
            recipients: [
              { id: u!.id, address: "u@a.test", status: "queued", attempts: 1, lastCode: 451 },
              { id: info!.id, address: "info@b.test", status: "queued", attempts: 0, lastCode: null },
            ],
          },
          {
            id: two,
            receivedAt: T0 + 10,
            mailFrom: "sender@x.test",
            size: 1,
            recipients: [{ id: v!.id, address: "v@a2.test", status: "queued", attempts: 0, lastCode: null }],
          },
        ]);
      }),
    );

    test(
      "listQueue by domain (any case) lists the messages with a recipient there, with all their recipients",
      run(async ({ queue }) => {
        const one = await queue.enqueue(mail(["u@a.test", "info@b.test"]), bodyOf("x"));
        await queue.enqueue(mail(["v@a2.test"]), bodyOf("y"));
        const three = await queue.enqueue(mail(["Sales@b.test"]), bodyOf("z"));
        const listed = await queue.listQueue({ domain: "B.Test" });
        assert.deepEqual(listed.map((m) => [m.id, m.recipients.map((r) => r.address)]), [
          [one, ["u@a.test", "info@b.test"]],
          [three, ["Sales@b.test"]],
        ]);
        assert.deepEqual(await queue.listQueue({ domain: "elsewhere.test" }), []);
      }),
    );

    test(
      "listQueue by status lists the messages with a recipient in it, alone or with a domain",
      run(async ({ queue }) => {
        const one = await queue.enqueue(mail(["u@a.test", "info@b.test"]), bodyOf("x"));
        const two = await queue.enqueue(mail(["v@a.test"]), bodyOf("y"));
        const three = await queue.enqueue(mail(["w@a2.test"]), bodyOf("z"));
        const [u] = await recipientsOf(queue, one);
        const [v] = await recipientsOf(queue, two);
        await queue.recordOutcomes(one, [{ id: u!.id, result: "failed", code: 550, text: "no" }]);
        await queue.recordOutcomes(two, [{ id: v!.id, result: "relayed", code: 250, text: "ok" }]);
        const ids = async (filter: Parameters<Queue["listQueue"]>[0]) =>
          (await queue.listQueue(filter)).map((m) => m.id);
        assert.deepEqual(await ids({ status: "failed" }), [one]);
        assert.deepEqual(await ids({ status: "relayed" }), [two]);
        assert.deepEqual(await ids({ status: "queued" }), [one, three]);
        assert.deepEqual(await ids({ status: "queued", domain: "a.test" }), []);
        assert.deepEqual(await ids({ status: "failed", domain: "a.test" }), [one]);
        const [failed] = await queue.listQueue({ status: "failed" });
        assert.deepEqual(failed?.recipients.map((r) => r.status), ["failed", "queued"]);
      }),
    );

    test(
      "listQueue pages by afterId and limit; a limit below 1 lists one message",
      run(async ({ queue }) => {
        const ids: number[] = [];
        for (let i = 0; i < 5; i++) ids.push(await queue.enqueue(mail([`u${i}@a.test`]), bodyOf(`m${i}`)));
        const page = async (afterId: number, limit: number) =>
          (await queue.listQueue({ afterId, limit })).map((m) => m.id);
        assert.deepEqual(await page(0, 2), ids.slice(0, 2));
        assert.deepEqual(await page(ids[1]!, 2), ids.slice(2, 4));
        assert.deepEqual(await page(ids[3]!, 2), ids.slice(4));
        assert.deepEqual(await page(ids[4]!, 2), []);
        assert.deepEqual(await page(0, 0), ids.slice(0, 1));
      }),
    );

    test(
      "getMessage of an unknown id is null",
      run(async ({ queue }) => {
        assert.equal(await queue.getMessage(424242), null);
      }),
    );

    test(
      "deleteMessage removes the message, its recipients and its body; false when there is none",
      run(async ({ queue }) => {
        const gone = await queue.enqueue(
          mail(["u@a.test", "info@b.test"]),
          chunked(patterned(CHUNK_SIZE + 1)),
        );
        const kept = await queue.enqueue(mail(["v@a.test"]), bodyOf("kept"));
        assert.equal(await queue.deleteMessage(gone), true);
        assert.equal(await queue.deleteMessage(gone), false);
        assert.equal(await queue.deleteMessage(424242), false);
        assert.equal(await queue.getMessage(gone), null);
        await rejectsStoreError(readAll(queue, gone), "not-found");
        assert.deepEqual((await queue.listQueue()).map((m) => m.id), [kept]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 4, queuedRecipients: 1 });
        assert.equal((await domainInfo(queue, "b.test")).queuedRecipients, 0);
      }),
    );

    test(
      "bounceMessage fails the message's queued recipients for the operator and leaves the others",
      run(async ({ queue, clock }) => {
        const id = await queue.enqueue(mail(["u@a.test", "v@a.test", "info@b.test"]), bodyOf("x".repeat(5)));
        const [u, v, info] = await recipientsOf(queue, id);
        await queue.recordOutcomes(id, [
          { id: u!.id, result: "relayed", code: 250, text: "ok" },
          { id: v!.id, result: "deferred", code: 451, text: "later" },
        ]);
        clock.advance(3000);
        assert.equal(await queue.bounceMessage(id, "returned by the operator"), 2);
        const rows = await recipientsOf(queue, id);
        assert.deepEqual(
          rows.map((r) => [r.id, r.status, r.lastCode, r.lastText, r.failureKind, r.attempts]),
          [
            [u!.id, "relayed", 250, "ok", null, 1],
            [v!.id, "failed", 550, "returned by the operator", "operator-bounce", 1],
            [info!.id, "failed", 550, "returned by the operator", "operator-bounce", 0],
          ],
        );
        assert.deepEqual(rows.slice(1).map((r) => r.lastAttemptAt), [T0 + 3000, T0 + 3000]);
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 5, queuedRecipients: 0 });
        assert.equal(await queue.bounceMessage(id, "again"), 0);
        assert.equal(await queue.bounceMessage(424242, "none"), 0);
      }),
    );
  });

  describe(`${name} queue: status`, () => {
    test(
      "an empty queue has zero totals and no oldest time",
      run(async ({ queue }) => {
        assert.deepEqual(plain(await queue.totals()), {
          messages: 0,
          bytes: 0,
          queuedRecipients: 0,
          oldestQueuedAt: null,
        });
        assert.deepEqual(await queue.queueCounts(), { messages: 0, bytes: 0, queuedRecipients: 0 });
        assert.equal(await queue.postmasterMailboxBytes(), 0);
        assert.equal(await queue.postmasterMailboxCount(), 0);
      }),
    );

    test(
      "totals' oldestQueuedAt is the oldest queued recipient's time, whatever its domain",
      run(async ({ queue, clock }) => {
        clock.set(T0 + 100);
        const older = await queue.enqueue(mail(["info@b.test"]), bodyOf("x"));
        clock.set(T0 + 200);
        await queue.enqueue(mail(["u@a.test"]), bodyOf("y"));
        assert.equal((await queue.totals()).oldestQueuedAt, T0 + 100);
        const [r] = await recipientsOf(queue, older);
        await queue.recordOutcomes(older, [{ id: r!.id, result: "failed", code: 550, text: "no" }]);
        assert.equal((await queue.totals()).oldestQueuedAt, T0 + 200, "a failed recipient is not waiting");
      }),
    );

    test(
      "oldestQueuedAt gives a domain's oldest queued recipient, null without one",
      run(async ({ queue, clock }) => {
        clock.set(T0 + 100);
        const first = await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        clock.set(T0 + 300);
        await queue.enqueue(mail(["v@a.test", "info@b.test"]), bodyOf("y"));
        assert.equal(await queue.oldestQueuedAt("a.test"), T0 + 100);
        assert.equal(await queue.oldestQueuedAt("b.test"), T0 + 300);
        assert.equal(await queue.oldestQueuedAt("a2.test"), null);
        assert.equal(await queue.oldestQueuedAt("elsewhere.test"), null);
        await queue.deleteMessage(first);
        assert.equal(await queue.oldestQueuedAt("a.test"), T0 + 300);
      }),
    );

    test(
      "domainQueueStatus lists every domain by name with owner, hold, counters, collection and oldest time",
      run(async ({ queue, clock, alice }) => {
        clock.set(T0 + 100);
        await queue.enqueue(mail(["u@a.test", "v@a.test"]), bodyOf("x".repeat(10)));
        await queue.setDomainHold("b.test", true);
        await queue.recordAtrnSession(
          session(alice, {
            domains: ["a2.test"],
            delivered: 1,
            deferred: 1,
            detail: "slow",
            endedAt: T0 + 50,
          }),
        );
        const none = {
          lastAtrnAt: null,
          lastAtrnPeer: null,
          lastAtrnDelivered: null,
          lastFailureAt: null,
          lastFailureText: null,
        };
        assert.deepEqual(plain(await queue.domainQueueStatus()), [
          {
            name: "a.test",
            username: "alice",
            hold: false,
            queuedRecipients: 2,
            queuedBytes: 20,
            ...none,
            oldestQueuedAt: T0 + 100,
          },
          {
            name: "a2.test",
            username: "alice",
            hold: false,
            queuedRecipients: 0,
            queuedBytes: 0,
            lastAtrnAt: T0 + 50,
            lastAtrnPeer: "192.0.2.1",
            lastAtrnDelivered: 1,
            lastFailureAt: T0 + 50,
            lastFailureText: "slow",
            oldestQueuedAt: null,
          },
          {
            name: "b.test",
            username: "bob",
            hold: true,
            queuedRecipients: 0,
            queuedBytes: 0,
            ...none,
            oldestQueuedAt: null,
          },
        ]);
      }),
    );

    test(
      "the postmaster mailbox counts its queued bytes and messages",
      run(async ({ queue }) => {
        const first = await queue.enqueue(toPostmasterMailbox(), bodyOf("p".repeat(60)));
        const second = await queue.enqueue(toPostmasterMailbox(), bodyOf("q".repeat(40)));
        await queue.enqueue(mail(["u@a.test"]), bodyOf("not the mailbox"));
        assert.equal(await queue.postmasterMailboxBytes(), 100);
        assert.equal(await queue.postmasterMailboxCount(), 2);
        await queue.deleteMessage(first);
        assert.deepEqual([await queue.postmasterMailboxBytes(), await queue.postmasterMailboxCount()], [
          40,
          1,
        ]);
        await queue.bounceMessage(second, "not queued any more");
        assert.deepEqual([await queue.postmasterMailboxBytes(), await queue.postmasterMailboxCount()], [
          0,
          0,
        ]);
      }),
    );

    test(
      "the postmaster mailbox is in the queue totals but not in any domain nor in the oldest time",
      run(async ({ queue, clock }) => {
        clock.set(T0 + 10);
        const id = await queue.enqueue(toPostmasterMailbox(), bodyOf("p".repeat(60)));
        clock.set(T0 + 20);
        await queue.enqueue(mail(["u@a.test"]), bodyOf("x"));
        assert.deepEqual(plain(await queue.totals()), {
          messages: 2,
          bytes: 61,
          queuedRecipients: 2,
          oldestQueuedAt: T0 + 20,
        });
        assert.deepEqual((await queue.domainQueueStatus()).map((d) => d.name), [
          "a.test",
          "a2.test",
          "b.test",
        ]);
        const [r] = await recipientsOf(queue, id);
        assert.deepEqual([r?.address, r?.domain, r?.status], ["Postmaster", "", "queued"]);
        assert.equal((await queue.listQueue()).map((m) => m.id)[0], id, "listed like any message");
      }),
    );
  });

  describe(`${name} queue: domain leases`, () => {
    const TTL = 60_000;

    test(
      "tryAcquire takes every free domain for its owner, and busyDomains lists them",
      run(async ({ queue }) => {
        assert.equal(await queue.leases.tryAcquire(["a.test", "a2.test"], "s1", TTL), true);
        assert.deepEqual(sorted(await queue.leases.busyDomains()), ["a.test", "a2.test"]);
        assert.equal(await queue.leases.tryAcquire(["b.test"], "s2", TTL), true);
        assert.deepEqual(sorted(await queue.leases.busyDomains()), ["a.test", "a2.test", "b.test"]);
      }),
    );

    test(
      "all or none: one domain held by another owner refuses the request and takes none of the rest",
      run(async ({ queue }) => {
        assert.equal(await queue.leases.tryAcquire(["a2.test"], "s1", TTL), true);
        assert.equal(await queue.leases.tryAcquire(["a.test", "a2.test", "b.test"], "s2", TTL), false);
        assert.deepEqual(await queue.leases.busyDomains(), ["a2.test"]);
        assert.equal(
          await queue.leases.tryAcquire(["a.test", "b.test"], "s3", TTL),
          true,
          "the others were free",
        );
      }),
    );

    test(
      "the same owner renews its leases and may add domains; others stay out",
      run(async ({ queue }) => {
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s1", TTL), true);
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s1", TTL), true);
        assert.equal(await queue.leases.tryAcquire(["a.test", "b.test"], "s1", TTL), true);
        assert.equal(await queue.leases.tryAcquire(["b.test"], "s2", TTL), false);
        assert.deepEqual(sorted(await queue.leases.busyDomains()), ["a.test", "b.test"]);
      }),
    );

    test(
      "release frees every domain of that owner and nobody else's",
      run(async ({ queue }) => {
        await queue.leases.tryAcquire(["a.test", "a2.test"], "s1", TTL);
        await queue.leases.tryAcquire(["b.test"], "s2", TTL);
        await queue.leases.release("s1");
        assert.deepEqual(await queue.leases.busyDomains(), ["b.test"]);
        assert.equal(await queue.leases.tryAcquire(["a.test", "a2.test"], "s3", TTL), true);
        assert.equal(await queue.leases.tryAcquire(["b.test"], "s3", TTL), false);
        await queue.leases.release("nobody");
        assert.deepEqual(sorted(await queue.leases.busyDomains()), ["a.test", "a2.test", "b.test"]);
      }),
    );

    test(
      "an idle lease is not busy but keeps other owners out; busy again lists it",
      run(async ({ queue }) => {
        await queue.leases.tryAcquire(["a.test", "a2.test"], "s1", TTL);
        await queue.leases.tryAcquire(["b.test"], "s2", TTL);
        await queue.leases.setIdle("s1", true);
        assert.deepEqual(await queue.leases.busyDomains(), ["b.test"]);
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s3", TTL), false);
        await queue.leases.setIdle("s1", false);
        assert.deepEqual(sorted(await queue.leases.busyDomains()), ["a.test", "a2.test", "b.test"]);
      }),
    );

    test(
      "renewal by the same owner keeps an idle lease idle",
      run(async ({ queue }) => {
        await queue.leases.tryAcquire(["a.test"], "s1", TTL);
        await queue.leases.setIdle("s1", true);
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s1", TTL), true);
        assert.deepEqual(await queue.leases.busyDomains(), []);
      }),
    );

    // PostgreSQL leases expire on the database's clock, the in-memory ones on the queue's: the ttl is
    // short and real, and the manual clock is moved past it too, so either kind expires.
    test(
      "a lease expires after its ttl: not busy, and another owner may take it",
      run(async ({ queue, clock }) => {
        const ttl = 300;
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s1", ttl), true);
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s2", TTL), false, "held before the ttl");
        clock.advance(ttl);
        const freed = await eventually(
          async () => !(await queue.leases.busyDomains()).includes("a.test"),
          5000,
        );
        assert.ok(freed, "a.test is no longer busy within 5 s");
        assert.equal(await queue.leases.tryAcquire(["a.test"], "s2", TTL), true);
        assert.deepEqual(await queue.leases.busyDomains(), ["a.test"]);
      }),
    );

    test(
      "a new owner of an expired idle lease starts busy",
      run(async ({ queue, clock }) => {
        const ttl = 300;
        await queue.leases.tryAcquire(["a.test"], "s1", ttl);
        await queue.leases.setIdle("s1", true);
        clock.advance(ttl);
        const taken = await eventually(() => queue.leases.tryAcquire(["a.test"], "s2", TTL), 5000);
        assert.ok(taken, "s2 takes a.test within 5 s");
        assert.deepEqual(await queue.leases.busyDomains(), ["a.test"]);
      }),
    );

    test(
      "claimJob gives the one node every cluster-wide job, again and again",
      run(async ({ queue }) => {
        assert.equal(await queue.leases.claimJob("expiry", TTL), true);
        assert.equal(await queue.leases.claimJob("expiry", TTL), true);
        assert.equal(await queue.leases.claimJob("dsn", TTL), true);
      }),
    );
  });

  describe(`${name} queue: operations`, () => {
    test(
      "the queue names its backend and where it lives",
      run(({ queue }) => {
        assert.equal(queue.backend, name);
        assert.equal(typeof queue.location, "string");
        assert.ok(queue.location.length > 0);
        return Promise.resolve();
      }),
    );

    test(
      "isWritable is true for an open queue",
      run(async ({ queue }) => {
        assert.equal(await queue.isWritable(), true);
      }),
    );

    test(
      "maintain resolves and leaves the queue as it was",
      run(async ({ queue }) => {
        const id = await queue.enqueue(mail(["u@a.test"]), bodyOf("kept\r\n"));
        await queue.deleteMessage(
          await queue.enqueue(mail(["v@a.test"]), chunked(patterned(CHUNK_SIZE * 2))),
        );
        await queue.maintain();
        assert.equal(new TextDecoder().decode(concat(await readAll(queue, id))), "kept\r\n");
        assert.deepEqual(await queue.queueCounts(), { messages: 1, bytes: 6, queuedRecipients: 1 });
      }),
    );
  });
}
