import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { databasePath, openDatabase } from "../../src/queue/db.ts";
import { migrate, SchemaTooNewError, schemaVersion } from "../../src/queue/migrate.ts";
import { MIGRATIONS } from "../../src/queue/migrations_bundle.ts";
import { CHUNK_SIZE, concat, SpoolWriter } from "../../src/queue/spool.ts";
import { QueueStore, QuotaExceededError, StoreError } from "../../src/queue/store.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";
import { tempDir } from "../support/temp.ts";
import { ManualClock } from "../../src/clock.ts";

function seeded() {
  const clock = new ManualClock(1_000_000);
  const { store, dataDir } = tempStore(clock);
  store.addAccount("alice", testSecrets("alice-secret"));
  store.addAccount("bob", testSecrets("bob-secret"));
  store.addDomain("a.test", "alice");
  store.addDomain("a2.test", "alice");
  store.addDomain("b.test", "bob", { mailboxes: ["info", "Sales"] });
  return { store, dataDir, advance: (ms: number) => clock.advance(ms) };
}

describe("migrations", () => {
  test("a fresh database reaches the latest version and a second start is a no-op", () => {
    const path = databasePath(tempDir());
    const first = openDatabase(path);
    assert.equal(schemaVersion(first.raw), MIGRATIONS.length);
    first.close();
    const second = openDatabase(path, { migrate: false });
    assert.deepEqual(migrate(second.raw), []);
    assert.equal(schemaVersion(second.raw), MIGRATIONS.length);
    second.close();
  });

  test("a newer schema than the program knows is refused with a clear error", () => {
    const path = databasePath(tempDir());
    const open = openDatabase(path);
    open.raw.exec(`PRAGMA user_version = ${MIGRATIONS.length + 1}`);
    open.close();
    assert.throws(() => openDatabase(path), (e: unknown) => {
      assert.ok(e instanceof SchemaTooNewError);
      assert.match((e as Error).message, /newer release/);
      return true;
    });
  });

  test("durability pragmas are in force", () => {
    const open = openDatabase(databasePath(tempDir()));
    const get = (p: string) => Object.values(open.raw.prepare(`PRAGMA ${p}`).get() as object)[0];
    assert.equal(get("journal_mode"), "wal");
    assert.equal(get("synchronous"), 2); // FULL
    assert.equal(get("foreign_keys"), 1);
    open.close();
  });
});

describe("accounts and domains", () => {
  test("account names are exact, and one that differs from another only in case is refused", () => {
    const { store } = seeded();
    assert.equal(store.findAccount("ALICE"), null);
    assert.throws(() => store.addAccount("Alice", testSecrets("x")), (e: unknown) => {
      assert.ok(e instanceof StoreError && e.kind === "conflict");
      assert.match((e as Error).message, /differ only in case/);
      return true;
    });
  });

  test("domains are stored in A-label form; a U-label names the same domain", () => {
    const { store } = seeded();
    store.addDomain("böb.test", "alice");
    assert.ok(store.listDomains().some((d) => d.name === "xn--bb-fka.test"));
    assert.ok(store.hasDomain("XN--BB-FKA.test"));
    assert.throws(() => store.addDomain("xn--bb-fka.test", "bob"), StoreError);
    assert.throws(() => store.addDomain("\u212Ailo.test", "bob"), /Not a valid domain name/);
    store.removeDomain("böb.test");
    assert.equal(store.hasDomain("xn--bb-fka.test"), false);
  });

  test("duplicate accounts and domains are refused; unknown owners too", () => {
    const { store } = seeded();
    assert.throws(() => store.addAccount("alice", testSecrets("x")), StoreError);
    assert.throws(() => store.addDomain("A.TEST", "bob"), /already exists/);
    assert.throws(() => store.addDomain("c.test", "nobody"), /No account/);
  });

  test("an account that owns domains cannot be removed", () => {
    const { store } = seeded();
    assert.throws(() => store.removeAccount("alice"), /still owns 2 domain/);
    store.removeDomain("a.test");
    store.removeDomain("a2.test");
    store.removeAccount("alice");
    assert.equal(store.findAccount("alice"), null);
  });

  test("recipient verdicts: hosted domains, mailbox lists and postmaster", () => {
    const { store } = seeded();
    assert.equal(store.recipientVerdict("A.Test", "anyone"), "accept");
    assert.equal(store.recipientVerdict("elsewhere.test", "x"), "unknown-domain");
    assert.equal(store.recipientVerdict("b.test", "info"), "accept");
    assert.equal(store.recipientVerdict("b.test", "Sales"), "accept");
    assert.equal(store.recipientVerdict("b.test", "nobody"), "unknown-mailbox");
    assert.equal(store.recipientVerdict("b.test", "PostMaster"), "accept");
  });

  test("disable and enable", () => {
    const { store } = seeded();
    store.setAccountDisabled("bob", true);
    assert.equal(store.findAccount("bob")!.disabled, true);
    store.setAccountDisabled("bob", false);
    assert.equal(store.findAccount("bob")!.disabled, false);
    assert.throws(() => store.setAccountDisabled("nobody", true), /No account/);
  });
});

describe("enqueue and read back", () => {
  test("a small body is stored inline and read back byte-identical", () => {
    const { store } = seeded();
    const body = "Subject: hi\r\n\r\nhello\r\n";
    const id = store.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf(body));
    assert.equal(new TextDecoder().decode(concat([...store.readBody(id)])), body);
  });

  test("a multi-chunk body streams through the spool and back unchanged", () => {
    const { store, dataDir } = seeded();
    const spool = new SpoolWriter(`${dataDir}/spool`);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const part = new Uint8Array(randomBytes(25_000 + i));
      parts.push(part);
      spool.write(part);
    }
    const id = store.enqueue(incoming("s@x.test", ["u@a.test"]), spool);
    spool.discard();
    const stored = [...store.readBody(id)];
    assert.ok(stored.length > 1 && stored.every((c) => c.length <= CHUNK_SIZE));
    assert.deepEqual(concat(stored), concat(parts));
    assert.equal(store.getMessage(id)!.eightBit, true);
  });

  test("a failing enqueue leaves nothing behind", () => {
    const { store } = seeded();
    const before = store.totals();
    const broken = {
      size: 10,
      eightBit: false,
      *chunks() {
        yield new Uint8Array(CHUNK_SIZE);
        throw new Error("disk went away");
      },
    };
    assert.throws(() => store.enqueue(incoming("s@x.test", ["u@a.test"]), broken), /disk went away/);
    assert.deepEqual(store.totals(), before);
    assert.equal(store.listQueue().length, 0);
  });

  test("triggers keep per-domain and total counters exact", () => {
    const { store, advance } = seeded();
    const m1 = store.enqueue(
      incoming("s@x.test", ["u@a.test", "v@a.test", "info@b.test"]),
      bodyOf("x".repeat(100)),
    );
    advance(5000);
    store.enqueue(incoming("s@x.test", ["w@a2.test"]), bodyOf("y".repeat(50)));
    const byName = Object.fromEntries(store.listDomains().map((d) => [d.name, d]));
    assert.equal(byName["a.test"]!.queuedRecipients, 2);
    assert.equal(byName["a.test"]!.queuedBytes, 200);
    assert.equal(byName["b.test"]!.queuedRecipients, 1);
    assert.deepEqual(store.totals(), {
      messages: 2,
      bytes: 150,
      queuedRecipients: 4,
      oldestQueuedAt: 1_000_000,
    });
    const rcpts = store.getMessage(m1)!.recipients;
    store.recordOutcomes(m1, [
      { id: rcpts[0]!.id, result: "delivered", code: 250, text: "ok" },
      { id: rcpts[1]!.id, result: "failed", code: 550, text: "no such user" },
    ]);
    const after = Object.fromEntries(store.listDomains().map((d) => [d.name, d]));
    assert.equal(after["a.test"]!.queuedRecipients, 0);
    assert.equal(after["a.test"]!.queuedBytes, 0);
    assert.equal(store.totals().queuedRecipients, 2);
    assert.equal(store.totals().messages, 2);
  });
});

describe("delivery selection", () => {
  test("only recipients of granted domains are selected; others stay queued", () => {
    const { store } = seeded();
    const id = store.enqueue(incoming("s@x.test", ["u@a.test", "info@b.test"]), bodyOf("body\r\n"));
    const selected = store.nextDeliverable(["a.test"], 0);
    assert.equal(selected.length, 1);
    assert.deepEqual(selected[0]!.recipients.map((r) => r.address), ["u@a.test"]);
    store.recordOutcomes(
      id,
      selected[0]!.recipients.map((r) => ({ id: r.id, result: "delivered", code: 250, text: "" })),
    );
    assert.equal(store.hasQueuedMail(["a.test"]), false);
    assert.equal(store.hasQueuedMail(["b.test"]), true);
    assert.ok(store.getMessage(id), "the message stays while b.test's recipient is queued");
  });

  test("keyset pagination returns every message once, in order", () => {
    const { store } = seeded();
    const ids = Array.from(
      { length: 7 },
      (_, i) => store.enqueue(incoming("s@x.test", [`u${i}@a.test`, `v${i}@a2.test`]), bodyOf(`m${i}`)),
    );
    const seen: number[] = [];
    let after = 0;
    for (
      let batch = store.nextDeliverable(["a.test", "a2.test"], after, 3);
      batch.length;
      batch = store.nextDeliverable(["a.test", "a2.test"], after, 3)
    ) {
      for (const m of batch) {
        seen.push(m.id);
        assert.equal(m.recipients.length, 2);
      }
      after = batch[batch.length - 1]!.id;
    }
    assert.deepEqual(seen, ids);
  });

  test("a message is deleted once its last recipient is delivered", () => {
    const { store } = seeded();
    const id = store.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf("x"));
    const [m] = store.nextDeliverable(["a.test"], 0);
    store.recordOutcomes(id, [{ id: m!.recipients[0]!.id, result: "delivered", code: 250, text: "ok" }]);
    assert.equal(store.getMessage(id), null);
    assert.deepEqual(store.totals(), { messages: 0, bytes: 0, queuedRecipients: 0, oldestQueuedAt: null });
  });

  test("a deferred recipient stays queued with the attempt recorded", () => {
    const { store } = seeded();
    const id = store.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf("x"));
    const [m] = store.nextDeliverable(["a.test"], 0);
    store.recordOutcomes(id, [{
      id: m!.recipients[0]!.id,
      result: "deferred",
      code: 451,
      text: "try later",
    }]);
    const r = store.getMessage(id)!.recipients[0]!;
    assert.equal(r.status, "queued");
    assert.equal(r.attempts, 1);
    assert.equal(r.lastCode, 451);
  });

  test("ATRN sessions update the domains' last collection", () => {
    const { store } = seeded();
    const alice = store.findAccount("alice")!;
    store.recordAtrnSession({
      accountId: alice.id,
      username: "alice",
      domains: ["a.test"],
      peer: "192.0.2.1",
      tls: true,
      startedAt: 10,
      endedAt: 20,
      delivered: 3,
      deferred: 0,
      failed: 0,
      outcome: "turned",
      detail: null,
    });
    const a = store.listDomains().find((d) => d.name === "a.test")!;
    assert.equal(a.lastAtrnAt, 20);
    assert.equal(a.lastAtrnPeer, "192.0.2.1");
    assert.equal(a.lastAtrnDelivered, 3);
    assert.equal(store.recentAtrnSessions(1)[0]!.outcome, "turned");
  });
});

describe("queue administration", () => {
  test("remove domain with queued mail needs force, which deletes it", () => {
    const { store } = seeded();
    store.enqueue(incoming("s@x.test", ["u@a.test", "info@b.test"]), bodyOf("x"));
    assert.throws(() => store.removeDomain("a.test"), /use --force/);
    assert.deepEqual(store.removeDomain("a.test", { force: true }), { deletedRecipients: 1 });
    assert.equal(store.totals().queuedRecipients, 1);
  });

  test("delete and bounce a message", () => {
    const { store } = seeded();
    const a = store.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf("x"));
    const b = store.enqueue(incoming("s@x.test", ["v@a.test"]), bodyOf("y"));
    assert.equal(store.deleteMessage(a), true);
    assert.equal(store.deleteMessage(a), false);
    assert.equal(store.bounceMessage(b, "bounced by operator"), 1);
    assert.equal(store.getMessage(b)!.recipients[0]!.status, "failed");
    assert.equal(store.totals().queuedRecipients, 0);
    assert.equal(store.listQueue({ status: "failed" }).length, 1);
  });

  test("the store survives close and reopen (real file)", () => {
    const { store, dataDir } = seeded();
    const id = store.enqueue(incoming("s@x.test", ["u@a.test"]), bodyOf("persisted\r\n"));
    store.database.close();
    const reopened = new QueueStore(openDatabase(databasePath(dataDir)));
    assert.equal(new TextDecoder().decode(concat([...reopened.readBody(id)])), "persisted\r\n");
    reopened.database.close();
  });
});

describe("domain settings", () => {
  test("updateDomain changes retention, quota and mailboxes; quota refuses new mail at RCPT", () => {
    const { store } = seeded();
    store.updateDomain("a.test", { retentionMs: 7 * 86_400_000, quotaBytes: 150, mailboxes: ["info"] });
    const a = store.listDomains().find((d) => d.name === "a.test")!;
    assert.deepEqual([a.retentionMs, a.quotaBytes, a.catchAll, a.mailboxes], [7 * 86_400_000, 150, false, 1]);
    assert.equal(store.recipientVerdict("a.test", "info"), "accept");
    assert.equal(store.recipientVerdict("a.test", "other"), "unknown-mailbox");
    assert.equal(
      store.recipientVerdict("a.test", "info", 200),
      "over-quota",
      "a declared SIZE over the quota",
    );
    store.enqueue(incoming("s@x.test", ["info@a.test"]), bodyOf("x".repeat(118)));
    assert.equal(
      store.recipientVerdict("a.test", "info", 40),
      "over-quota",
      "queued + declared over the quota",
    );
    // At end of DATA the real size counts: a message that would overflow the quota is not stored.
    assert.throws(
      () => store.enqueue(incoming("s@x.test", ["info@a.test"]), bodyOf("x".repeat(38))),
      QuotaExceededError,
    );
    assert.equal(store.listDomains().find((d) => d.name === "a.test")!.queuedBytes, 118);
    store.updateDomain("a.test", { quotaBytes: 100 });
    assert.equal(store.recipientVerdict("a.test", "info"), "over-quota", "the queue is over the quota");
    store.updateDomain("a.test", { quotaBytes: null, mailboxes: null, retentionMs: null });
    assert.equal(store.recipientVerdict("a.test", "anyone"), "accept");
    assert.throws(() => store.updateDomain("nope.test", { quotaBytes: 1 }), /No domain/);
  });
});
