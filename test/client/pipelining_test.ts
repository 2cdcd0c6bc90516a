import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { deliverQueued } from "../../src/client/deliver_session.ts";
import { choosePipelining, PacedReplyDetector } from "../../src/client/pipelining.ts";
import { type ClientTimeouts, SmtpClient } from "../../src/client/smtp_client.ts";
import { type FakeScript, startFakeCustomer } from "../support/fake_customer.ts";
import { customerStore, DOMAIN, enqueue, queueState, testConfig, textBody } from "./_helpers.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

const timeouts: ClientTimeouts = {
  greetingMs: 2000,
  commandMs: 2000,
  dataInitMs: 2000,
  dataBlockMs: 2000,
  dataTermMs: 2000,
};

/** Greets and says EHLO against a fake with `script`; returns the client's view. */
async function probe(script: FakeScript, mode: "auto" | "always" | "never" = "auto") {
  const fake = await startFakeCustomer(script);
  try {
    const { conn } = await fake.connect();
    const client = new SmtpClient(conn, { timeouts, pipelining: mode });
    await client.readGreeting();
    await client.hello("relay.test");
    await client.quit();
    return client;
  } finally {
    await fake.close();
  }
}

describe("choosePipelining", () => {
  const base = { advertised: true, fragmentedReplies: false, ehloRttMs: 1 };
  const table = [
    ["auto", base, true],
    ["auto", { ...base, fragmentedReplies: true }, false],
    ["auto", { ...base, advertised: false }, false],
    ["always", { ...base, fragmentedReplies: true }, true],
    ["always", { ...base, advertised: false }, false],
    ["never", base, false],
  ] as const;
  for (const [mode, evidence, expected] of table) {
    test(`${mode} ${JSON.stringify(evidence)} -> ${expected}`, () => {
      const decision = choosePipelining(mode, evidence);
      assert.equal(decision.pipelining, expected);
      assert.ok(decision.reason.length > 0);
    });
  }
});

describe("auto mode against fake customers", () => {
  test("a prompt customer that writes whole replies gets pipelining", async () => {
    const client = await probe({});
    assert.equal(client.fragmentedReplies, false);
    assert.equal(client.pipelining, true);
    assert.ok(client.ehloRttMs !== null && client.ehloRttMs >= 0);
  });

  test("a line relay (one write per reply line, like fetchmail) does not", async () => {
    const client = await probe({ lineByLineMs: 15 });
    assert.equal(client.fragmentedReplies, true);
    assert.equal(client.pipelining, false);
    assert.match(client.pipeliningDecision.reason, /line/);
  });

  test("a fragmented multi-line greeting alone is enough to detect the relay", async () => {
    const client = await probe({
      greeting: "220-customer.test\r\n220 ready",
      lineByLineMs: 15,
      keywords: ["PIPELINING"],
    });
    assert.equal(client.pipelining, false);
  });

  test("always pipelines even through a line relay; never does not; no PIPELINING keyword never does", async () => {
    assert.equal((await probe({ lineByLineMs: 5 }, "always")).pipelining, true);
    assert.equal((await probe({}, "never")).pipelining, false);
    assert.equal((await probe({ keywords: ["8BITMIME"] }, "always")).pipelining, false);
  });

  test("EHLO keywords are matched case-insensitively", async () => {
    const client = await probe({ keywords: ["pipelining", "Size 1000", "8bitmime"] });
    assert.equal(client.pipelining, true);
    assert.ok(client.capabilities.has("8BITMIME"));
    assert.deepEqual(client.capabilities.get("SIZE"), ["1000"]);
  });
});

describe("pipelined transactions (RFC 2920)", () => {
  test("354 after every RCPT was refused: a lone dot, nothing delivered, then RSET", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test", "b@example.test"], textBody("x"));
    const fake = await startFakeCustomer({
      respond: (line) => {
        if (line.startsWith("RCPT")) return "550 5.1.1 No such user";
        if (line === "DATA") return "354 go ahead anyway";
        return undefined;
      },
      endOfData: () => "554 5.5.1 No valid recipients",
    });
    try {
      const { conn, session } = await fake.connect();
      const result = await deliverQueued({
        conn,
        store: new SqliteQueue(store),
        domains: [DOMAIN],
        hostname: "relay.test",
        config: testConfig({ atrnPipelining: "always" }),
      });
      assert.equal(result.outcome, "completed");
      assert.equal(result.failed, 2);
      assert.equal(session.messages.length, 1);
      assert.equal(session.messages[0]!.data.length, 0, "only the terminating dot was sent");
      const afterDot = session.commands.slice(session.commands.indexOf("DATA") + 1);
      assert.equal(afterDot[0], "RSET");
      assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.lastCode]), [["failed", 550], [
        "failed",
        550,
      ]]);
    } finally {
      await fake.close();
    }
  });

  test("replies are matched by count: a refused MAIL fails every recipient even if RCPTs say 250", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test", "b@example.test"], textBody("x"));
    const next = enqueue(store, ["c@example.test"], textBody("y"));
    let refused = false;
    const fake = await startFakeCustomer({
      respond: (line) => {
        if (line.startsWith("MAIL") && !refused) {
          refused = true;
          return "452 4.3.1 Insufficient system storage";
        }
        return undefined;
      },
    });
    try {
      const { conn, session } = await fake.connect();
      const result = await deliverQueued({
        conn,
        store: new SqliteQueue(store),
        domains: [DOMAIN],
        hostname: "relay.test",
        config: testConfig({ atrnPipelining: "always" }),
      });
      // The fake (like a sloppy server) accepted the RCPTs of the refused transaction: they must not count.
      assert.equal(result.deferred, 2);
      assert.equal(result.delivered, 1);
      assert.equal(session.reads[1]!.length, 4, "MAIL, 2 RCPT and DATA in one batch");
      assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.lastCode]), [["queued", 452], [
        "queued",
        452,
      ]]);
      assert.equal(queueState(store, next), null);
    } finally {
      await fake.close();
    }
  });

  test("a batch with many recipients is read while it is written (no deadlock)", async () => {
    const store = customerStore();
    const rcpts = Array.from(
      { length: 100 },
      (_, i) => `user-with-a-rather-long-local-part-${i}@example.test`,
    );
    const id = enqueue(store, rcpts, textBody("x"));
    const fake = await startFakeCustomer({});
    try {
      const { conn, session } = await fake.connect();
      const result = await deliverQueued({
        conn,
        store: new SqliteQueue(store),
        domains: [DOMAIN],
        hostname: "relay.test",
        config: testConfig({ atrnPipelining: "always" }),
      });
      assert.equal(result.delivered, 100);
      assert.equal(session.messages[0]!.rcpts.length, 100);
      assert.equal(queueState(store, id), null);
    } finally {
      await fake.close();
    }
  });
});

describe("PacedReplyDetector", () => {
  test("falls back after three paced groups in a row; a prompt group resets the count", () => {
    const d = new PacedReplyDetector(20, 3);
    assert.equal(d.observe(40), false);
    assert.equal(d.observe(40), false);
    assert.equal(d.observe(0), false, "a prompt group starts the count again");
    assert.equal(d.observe(40), false);
    assert.equal(d.observe(25), false);
    assert.equal(d.observe(41), true);
  });
});

describe("auto mode against a customer that paces its replies (one write each, Nagle)", () => {
  async function drain(mode: "auto" | "always", script: FakeScript, rcpts = 1) {
    const store = customerStore();
    for (let i = 0; i < 6; i++) {
      enqueue(store, Array.from({ length: rcpts }, (_, k) => `u${i}.${k}@example.test`), textBody(`m${i}`));
    }
    const fake = await startFakeCustomer(script);
    try {
      const { conn, session } = await fake.connect();
      const result = await deliverQueued({
        conn,
        store: new SqliteQueue(store),
        domains: [DOMAIN],
        hostname: "relay.test",
        config: testConfig({ atrnPipelining: mode }),
      });
      // Which reads carried a MAIL command together with its RCPT (a pipelined group).
      const grouped = session.reads.filter((r) => r.some((l) => l.startsWith("MAIL"))).map((r) =>
        r.length > 1
      );
      return { result, grouped };
    } finally {
      await fake.close();
    }
  }

  test("auto pipelines the first three messages, then sends one command at a time; all are delivered", async () => {
    const { result, grouped } = await drain("auto", { nagleMs: 40 });
    assert.equal(result.delivered, 6);
    assert.deepEqual(grouped, [true, true, true, false, false, false]);
  });

  test("always keeps pipelining", async () => {
    const { result, grouped } = await drain("always", { nagleMs: 40 });
    assert.equal(result.delivered, 6);
    assert.deepEqual(grouped, [true, true, true, true, true, true]);
  });

  test("a customer that is merely slow to answer each RCPT keeps pipelining", async () => {
    const slowRcpt: FakeScript = {
      respond: (
        line,
      ) => (line.startsWith("RCPT") ? { kind: "delay", ms: 25, reply: "250 2.1.5 Ok" } : undefined),
    };
    const { result, grouped } = await drain("auto", slowRcpt, 2);
    assert.equal(result.delivered, 12);
    assert.deepEqual(grouped, [true, true, true, true, true, true]);
  });
});
