import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { deliverQueued, type DeliverResult, type DeliveryConfig } from "../../src/client/deliver_session.ts";
import type { QueueStore } from "../../src/queue/store.ts";
import { type FakeScript, type FakeSession, sleep, startFakeCustomer } from "../support/fake_customer.ts";
import { bytes, customerStore, DOMAIN, enqueue, queueState, testConfig, textBody } from "./_helpers.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

/** Runs one delivery session against a fake customer with `script`. */
async function run(
  store: QueueStore,
  script: FakeScript,
  config: Partial<DeliveryConfig> = {},
  extra: {
    domains?: string[];
    signal?: AbortSignal;
    waitGreeting?: boolean;
    maxReplyLines?: number;
    pageSize?: number;
    renewLease?: () => Promise<boolean>;
  } = {},
): Promise<{ result: DeliverResult; session: FakeSession }> {
  const fake = await startFakeCustomer(script);
  try {
    const { conn, session } = await fake.connect();
    if (extra.waitGreeting) {
      // The 220 is already in the connection's buffer when the client takes over (as after ATRN).
      for (let i = 0; i < 200 && !conn.hasBufferedInput(); i++) await sleep(5);
      assert.ok(conn.hasBufferedInput(), "greeting should be buffered before the hand-over");
    }
    const options: Parameters<typeof deliverQueued>[0] = {
      conn,
      store: new SqliteQueue(store),
      domains: extra.domains ?? [DOMAIN],
      hostname: "relay.test",
      config: testConfig(config),
    };
    if (extra.signal !== undefined) options.signal = extra.signal;
    if (extra.maxReplyLines !== undefined) options.maxReplyLines = extra.maxReplyLines;
    if (extra.pageSize !== undefined) options.pageSize = extra.pageSize;
    if (extra.renewLease !== undefined) options.renewLease = extra.renewLease;
    const result = await deliverQueued(options);
    assert.ok(
      conn.isClosed || (await Promise.race([conn.closed.then(() => true), sleep(1000).then(() => false)])),
    );
    return { result, session };
  } finally {
    await fake.close();
  }
}

for (const mode of ["never", "always"] as const) {
  const pipelined = mode === "always";
  describe(`delivery (pipelining ${mode})`, () => {
    test("delivers every message byte-exact, with dot-stuffing, and empties the queue", async () => {
      const store = customerStore();
      const tricky = "Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\nmiddle . dot\r\n. \r\nend";
      const bodies = [textBody("one"), tricky, textBody("three")];
      const ids = bodies.map((b, i) => enqueue(store, [`u${i}@example.test`], b));
      const { result, session } = await run(store, {}, { atrnPipelining: mode });
      assert.equal(result.outcome, "completed");
      assert.equal(result.delivered, 3);
      assert.equal(result.deferred + result.failed, 0);
      assert.equal(result.pipelining, pipelined);
      assert.equal(session.messages.length, 3);
      assert.deepEqual(
        new TextDecoder().decode(session.messages[1]!.data),
        tricky + "\r\n", // an unterminated last line gets its CRLF (RFC 5321 4.1.1.4)
      );
      assert.equal(new TextDecoder().decode(session.messages[0]!.data), bodies[0]);
      for (const id of ids) assert.equal(queueState(store, id), null);
      assert.equal(store.totals().messages, 0);
      assert.equal(session.commands.at(-1), "QUIT");
      assert.ok(!session.commands.some((c) => /^(STARTTLS|BDAT)/i.test(c)));
      if (pipelined) {
        assert.ok(session.reads.some((g) => g.length >= 3), "MAIL+RCPT+DATA arrive as one batch");
      } else assert.ok(session.reads.every((g) => g.length === 1), "one command per write");
    });

    test("a lease lost between two pages ends the session; the rest stays queued", async () => {
      const store = customerStore();
      const ids = [0, 1, 2, 3, 4].map((i) => enqueue(store, [`u${i}@example.test`], textBody(`m${i}`)));
      let renewals = 0;
      // Renewed before the first page, lost before the second (another node took the domain).
      const renewLease = () => Promise.resolve(++renewals === 1);
      const { result, session } = await run(store, {}, { atrnPipelining: mode }, { pageSize: 2, renewLease });
      assert.equal(renewals, 2);
      assert.equal(result.delivered, 2);
      assert.equal(session.messages.length, 2);
      assert.deepEqual(ids.map((id) => queueState(store, id) === null), [true, true, false, false, false]);
    });

    test("a 3 MB chunked message arrives byte-exact", async () => {
      const store = customerStore();
      // Random printable lines, some starting with a dot, CRLF-terminated.
      const lines: string[] = [];
      let size = 0;
      for (let i = 0; size < 3 * 1024 * 1024; i++) {
        const line = (i % 7 === 0 ? "." : "") + randomBytes(60).toString("base64");
        lines.push(line);
        size += line.length + 2;
      }
      const body = lines.join("\r\n") + "\r\n";
      const id = enqueue(store, ["big@example.test"], body);
      const { result, session } = await run(store, {}, { atrnPipelining: mode });
      assert.equal(result.delivered, 1);
      assert.equal(session.messages.length, 1);
      const got = session.messages[0]!.data;
      assert.equal(got.length, body.length);
      assert.ok(Buffer.from(got).equals(Buffer.from(body)), "content differs");
      assert.equal(queueState(store, id), null);
      assert.match(session.commands[1]!, new RegExp(`^MAIL FROM:<sender@origin.test> SIZE=${body.length}`));
    });

    test("one rejected recipient fails, the others are delivered", async () => {
      const store = customerStore();
      const id = enqueue(store, ["a@example.test", "bad@example.test", "c@example.test"], textBody("x"));
      const { result, session } = await run(store, {
        respond: (line) => (line.includes("bad@") ? "550 5.1.1 <bad@example.test>: User unknown" : undefined),
      }, { atrnPipelining: mode });
      assert.equal(result.delivered, 2);
      assert.equal(result.failed, 1);
      assert.equal(session.messages[0]!.rcpts.length, 2);
      const state = queueState(store, id)!;
      assert.equal(state.length, 1);
      assert.equal(state[0]!.address, "bad@example.test");
      assert.equal(state[0]!.status, "failed");
      assert.equal(state[0]!.lastCode, 550);
      assert.match(state[0]!.lastText!, /5\.1\.1 <bad@example.test>: User unknown/);
    });

    test("RCPT 4xx stays queued and is not retried in the same session", async () => {
      const store = customerStore();
      const id = enqueue(store, ["a@example.test", "busy@example.test"], textBody("x"));
      const { result, session } = await run(store, {
        respond: (line) => (line.includes("busy@") ? "450 4.2.1 Mailbox busy" : undefined),
      }, { atrnPipelining: mode });
      assert.deepEqual([result.delivered, result.deferred, result.failed], [1, 1, 0]);
      assert.equal(session.verbs.get("MAIL"), 1);
      const state = queueState(store, id)!;
      assert.deepEqual(state.map((r) => [r.address, r.status, r.attempts, r.lastCode]), [
        ["busy@example.test", "queued", 1, 450],
      ]);
    });

    test("452 too many recipients: the rest go in a new transaction", async () => {
      const store = customerStore();
      const rcpts = ["r1", "r2", "r3", "r4", "r5"].map((r) => `${r}@example.test`);
      const id = enqueue(store, rcpts, textBody("x"));
      const { result, session } = await run(store, {
        respond: (line, s) =>
          line.startsWith("RCPT") && s.rcpts.length >= 2 ? "452 4.5.3 Error: too many recipients" : undefined,
      }, { atrnPipelining: mode });
      assert.equal(result.delivered, 5);
      assert.equal(session.verbs.get("MAIL"), 3);
      assert.deepEqual(session.messages.map((m) => m.rcpts.length), [2, 2, 1]);
      assert.equal(queueState(store, id), null);
    });

    test("no recipient accepted: no content is sent, RSET follows", async () => {
      const store = customerStore();
      const id = enqueue(store, ["x@example.test", "y@example.test"], textBody("x"));
      const { result, session } = await run(store, {
        respond: (line) => (line.startsWith("RCPT") ? "550 5.1.1 No such user" : undefined),
      }, { atrnPipelining: mode });
      assert.deepEqual([result.delivered, result.deferred, result.failed], [0, 0, 2]);
      assert.equal(session.messages.length, 0);
      assert.ok(session.commands.includes("RSET"));
      assert.deepEqual(queueState(store, id)!.map((r) => r.status), ["failed", "failed"]);
    });

    for (
      const [where, code, expect] of [
        ["MAIL", "451 4.3.0 Try later", "deferred"],
        ["MAIL", "553 5.7.1 Sender rejected", "failed"],
        ["DATA", "451 4.3.0 Try later", "deferred"],
        ["DATA", "554 5.7.1 No thanks", "failed"],
        ["end of data", "452 4.3.1 Insufficient storage", "deferred"],
        ["end of data", "554 5.7.1 Message rejected as spam", "failed"],
      ] as const
    ) {
      test(`${where} ${code.slice(0, 3)} -> ${expect}`, async () => {
        const store = customerStore();
        const id = enqueue(store, ["a@example.test", "b@example.test"], textBody("x"));
        const next = enqueue(store, ["c@example.test"], textBody("next"));
        let first = true;
        const script: FakeScript = where === "end of data"
          ? {
            endOfData: () => {
              if (!first) return undefined;
              first = false;
              return code;
            },
          }
          : {
            respond: (line) => {
              if (!line.toUpperCase().startsWith(where) || !first) return undefined;
              first = false;
              return code;
            },
          };
        const { result, session } = await run(store, script, { atrnPipelining: mode });
        assert.equal(result.outcome, "completed");
        assert.equal(result.delivered, 1, "the next message still goes out");
        assert.equal(expect === "deferred" ? result.deferred : result.failed, 2);
        const state = queueState(store, id)!;
        assert.deepEqual(
          state.map((r) => r.status),
          expect === "deferred" ? ["queued", "queued"] : ["failed", "failed"],
        );
        assert.ok(state.every((r) => r.attempts === 1 && r.lastCode === Number(code.slice(0, 3))));
        assert.equal(queueState(store, next), null);
        if (where !== "end of data") {
          assert.ok(session.commands.includes("RSET"), "RSET after a refused transaction");
        }
      });
    }

    test("250 to RCPT, then the customer drops the connection mid-DATA", async () => {
      const store = customerStore();
      const done = enqueue(store, ["first@example.test"], textBody("first"));
      const big = "x".repeat(70) + "\r\n";
      const id = enqueue(store, ["a@example.test", "b@example.test"], big.repeat(20_000));
      const later = enqueue(store, ["later@example.test"], textBody("later"));
      const { result } = await run(store, {
        onContent: (n, s) => (s.messages.length === 1 && n > 100_000 ? { kind: "close" } : undefined),
      }, { atrnPipelining: mode });
      assert.equal(result.outcome, "lost");
      assert.match(result.detail!, /^4\.4\.2 /);
      assert.deepEqual([result.delivered, result.deferred], [1, 2]);
      assert.equal(queueState(store, done), null);
      const state = queueState(store, id)!;
      assert.deepEqual(state.map((r) => [r.status, r.attempts, r.lastCode]), [["queued", 1, 451], [
        "queued",
        1,
        451,
      ]]);
      assert.match(state[0]!.lastText!, /4\.4\.2/);
      // The message after it was never attempted.
      assert.deepEqual(queueState(store, later)!.map((r) => r.attempts), [0]);
    });

    test("no reply to the final dot: timeout, recipients stay queued", async () => {
      const store = customerStore();
      const id = enqueue(store, ["a@example.test"], textBody("x"));
      const { result } = await run(store, { endOfData: () => ({ kind: "hang" }) }, {
        atrnPipelining: mode,
        atrnDataTermTimeout: 300,
      });
      assert.equal(result.outcome, "timeout");
      assert.match(result.detail!, /end of data/);
      assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.attempts]), [["queued", 1]]);
    });

    test("421 in reply to RCPT ends the session; everything unconfirmed stays queued", async () => {
      const store = customerStore();
      const id = enqueue(store, ["a@example.test", "b@example.test"], textBody("x"));
      const { result } = await run(store, {
        respond: (line) => (line.includes("b@") ? "421 4.3.2 Shutting down" : undefined),
      }, { atrnPipelining: mode });
      assert.equal(result.outcome, "refused");
      assert.equal(result.deferred, 2);
      assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.lastCode]), [["queued", 421], [
        "queued",
        421,
      ]]);
    });
  });
}

describe("session start and hostile customers", () => {
  test("the greeting may already be buffered when the client takes over", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, {}, {}, { waitGreeting: true });
    assert.equal(result.delivered, 1);
  });

  test("multi-line greeting is accepted", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, { greeting: "220-customer.test\r\n220-more\r\n220 ready" });
    assert.equal(result.delivered, 1);
  });

  test("554 greeting: QUIT is sent, nothing is attempted", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result, session } = await run(store, { greeting: "554 customer.test No SMTP service here" });
    assert.equal(result.outcome, "refused");
    assert.match(result.detail!, /554/);
    assert.deepEqual(session.commands, ["QUIT"]);
    assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.attempts]), [["queued", 0]]);
  });

  test("421 greeting: the client closes without a word", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result, session } = await run(store, { greeting: "421 customer.test busy" });
    assert.equal(result.outcome, "refused");
    assert.deepEqual(session.commands, []);
    assert.deepEqual(queueState(store, id)!.map((r) => r.attempts), [0]);
  });

  test("no greeting at all: greeting timeout", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, { greeting: null }, { atrnGreetingTimeout: 200 });
    assert.equal(result.outcome, "timeout");
    assert.match(result.detail!, /greeting/);
    assert.deepEqual(queueState(store, id)!.map((r) => r.attempts), [0]);
  });

  test("EOF right after the turn (fetchmail with its local MTA down): nothing delivered", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, { greeting: { kind: "close" } });
    assert.equal(result.outcome, "lost");
    assert.deepEqual(queueState(store, id)!.map((r) => r.attempts), [0]);
  });

  test("endless 250- lines to EHLO abort the session (line cap)", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const flood = Array.from({ length: 5000 }, (_, i) => `250-KEYWORD${i}`).join("\r\n") + "\r\n";
    const { result } = await run(store, {
      respond: (line) => (line.startsWith("EHLO") ? { kind: "raw", data: flood } : undefined),
    });
    assert.equal(result.outcome, "protocol");
    assert.match(result.detail!, /more than 100 lines/);
    assert.deepEqual(queueState(store, id)!.map((r) => r.attempts), [0]);
  });

  test("a 5 MB reply line aborts the session without buffering it", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, {
      respond: (
        line,
      ) => (line.startsWith("MAIL")
        ? { kind: "raw", data: "250 " + "x".repeat(5 * 1024 * 1024) }
        : undefined),
    });
    assert.equal(result.outcome, "protocol");
    assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.attempts]), [["queued", 1]]);
  });

  test("a bare LF in a reply is a protocol error", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, {
      respond: (line) => (line.startsWith("RCPT") ? { kind: "raw", data: "250 ok\n" } : undefined),
    });
    assert.equal(result.outcome, "protocol");
    assert.deepEqual(queueState(store, id)!.map((r) => r.status), ["queued"]);
  });

  test("slow reply to MAIL: command timeout", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result } = await run(store, {
      respond: (line) => (line.startsWith("MAIL") ? { kind: "delay", ms: 1500, reply: "250 ok" } : undefined),
    }, { atrnCommandTimeout: 200 });
    assert.equal(result.outcome, "timeout");
    assert.match(result.detail!, /MAIL within 200 ms/);
    assert.deepEqual(queueState(store, id)!.map((r) => [r.status, r.attempts]), [["queued", 1]]);
  });

  test("the overall session limit ends a session that keeps trickling", async () => {
    const store = customerStore();
    for (let i = 0; i < 50; i++) enqueue(store, [`u${i}@example.test`], textBody(`m${i}`));
    const { result } = await run(store, {
      respond: (line) => (line.startsWith("MAIL") ? { kind: "delay", ms: 40, reply: "250 ok" } : undefined),
    }, { atrnSessionTimeout: 400 });
    assert.equal(result.outcome, "timeout");
    assert.match(result.detail!, /Session time limit/);
    assert.ok(result.delivered < 50);
    assert.equal(store.totals().queuedRecipients, 50 - result.delivered);
  });

  test("cancelling through the signal ends the session; unconfirmed mail stays queued", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const controller = new AbortController();
    const { result } = await run(
      store,
      {
        respond: (line) => {
          if (line.startsWith("DATA")) setTimeout(() => controller.abort(), 10);
          return undefined;
        },
        endOfData: () => ({ kind: "hang" }),
      },
      {},
      { signal: controller.signal },
    );
    assert.equal(result.outcome, "cancelled");
    assert.deepEqual(queueState(store, id)!.map((r) => r.status), ["queued"]);
  });

  for (const code of ["500", "502", "501", "504", "550"]) {
    test(`EHLO ${code}: falls back to HELO and sends without parameters`, async () => {
      const store = customerStore();
      enqueue(store, ["a@example.test"], textBody("x"), { envid: "e1", ret: "HDRS" });
      const { result, session } = await run(store, {
        respond: (line) => (line.startsWith("EHLO") ? `${code} 5.5.1 no` : undefined),
      }, { atrnPipelining: "always" });
      assert.equal(result.delivered, 1);
      assert.equal(result.pipelining, false);
      assert.match(session.commands[1]!, /^HELO relay\.test$/);
      assert.equal(session.commands[2], "MAIL FROM:<sender@origin.test>");
    });
  }

  test("EHLO and HELO both refused: QUIT and refused", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"));
    const { result, session } = await run(store, {
      respond: (line) => (/^(EHLO|HELO)/.test(line) ? "550 go away" : undefined),
    });
    assert.equal(result.outcome, "refused");
    assert.deepEqual(session.commands.map((c) => c.split(" ")[0]), ["EHLO", "HELO", "QUIT"]);
    assert.deepEqual(queueState(store, id)!.map((r) => r.attempts), [0]);
  });
});

describe("queue selection", () => {
  test("only granted domains go out; other recipients of the same message stay queued", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test", "b@other.test"], textBody("x"));
    const { result, session } = await run(store, {});
    assert.equal(result.delivered, 1);
    assert.deepEqual(session.messages[0]!.rcpts, ["RCPT TO:<a@example.test>"]);
    assert.deepEqual(queueState(store, id)!.map((r) => [r.address, r.status, r.attempts]), [
      ["b@other.test", "queued", 0],
    ]);
  });

  test("mail that arrives during the session goes out before QUIT", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("first"));
    let added = false;
    const { result, session } = await run(store, {
      endOfData: () => {
        if (!added) {
          added = true;
          enqueue(store, ["late@example.test"], textBody("late"));
        }
        return undefined;
      },
    });
    assert.equal(result.delivered, 2);
    assert.equal(session.messages.length, 2);
    assert.equal(store.totals().messages, 0);
  });

  test("more messages than one page are all delivered (keyset pagination)", async () => {
    const store = customerStore();
    for (let i = 0; i < 120; i++) enqueue(store, [`u${i}@example.test`], textBody(`m${i}`));
    const { result, session } = await run(store, {}, { atrnPipelining: "always" });
    assert.equal(result.delivered, 120);
    assert.equal(result.messages, 120);
    assert.equal(session.messages.length, 120);
    assert.equal(store.totals().messages, 0);
  });

  test("a message deleted by an admin after selection is skipped before MAIL; the session goes on", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("one"));
    const gone = enqueue(store, ["b@example.test"], textBody("two"));
    const third = enqueue(store, ["c@example.test"], textBody("three"));
    const { result, session } = await run(store, {
      endOfData: (_m, s) => {
        if (s.messages.length === 1) store.deleteMessage(gone);
        return undefined;
      },
    });
    assert.equal(result.outcome, "completed");
    assert.equal(result.delivered, 2);
    assert.equal(session.verbs.get("MAIL"), 2);
    assert.equal(queueState(store, gone), null);
    assert.equal(queueState(store, third), null);
  });

  test("the customer hangs up right after a 250: the next message stays queued", async () => {
    const store = customerStore();
    const first = enqueue(store, ["a@example.test"], textBody("one"));
    const second = enqueue(store, ["b@example.test"], textBody("two"));
    const { result } = await run(store, { endOfData: () => ({ kind: "close", reply: "250 2.0.0 Ok" }) });
    assert.equal(result.delivered, 1);
    assert.equal(result.outcome, "lost");
    assert.equal(queueState(store, first), null);
    // Whether the FIN is seen before the next MAIL is a race; either way the message stays queued.
    assert.deepEqual(queueState(store, second)!.map((r) => r.status), ["queued"]);
  });

  test("a bogus 250 to DATA is not a delivery", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("one"));
    const { result } = await run(store, {
      respond: (line) => (line === "DATA" ? "250 2.0.0 sure" : undefined),
    });
    assert.deepEqual([result.delivered, result.deferred], [0, 1]);
    assert.deepEqual(queueState(store, id)!.map((r) => r.status), ["queued"]);
  });

  test("an empty queue: EHLO then QUIT", async () => {
    const store = customerStore();
    const { result, session } = await run(store, {});
    assert.equal(result.outcome, "completed");
    assert.deepEqual(session.commands.map((c) => c.split(" ")[0]), ["EHLO", "QUIT"]);
  });
});

describe("extensions", () => {
  test("SIZE: a message over the advertised limit fails 5.3.4 without being offered", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], "x".repeat(2000) + "\r\n");
    const small = enqueue(store, ["b@example.test"], "small\r\n");
    const { result, session } = await run(store, { keywords: ["SIZE 1000"] });
    assert.deepEqual([result.delivered, result.failed], [1, 1]);
    assert.equal(session.verbs.get("MAIL"), 1);
    assert.equal(session.commands.find((c) => c.startsWith("MAIL")), "MAIL FROM:<sender@origin.test> SIZE=7");
    assert.match(queueState(store, id)![0]!.lastText!, /^5\.3\.4 /);
    assert.equal(queueState(store, small), null);
  });

  test("no extensions advertised: no MAIL or RCPT parameters at all", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("x"), {
      envid: "env-1",
      ret: "FULL",
      bodyType: "8BITMIME",
      notify: "SUCCESS,FAILURE",
      orcpt: "rfc822;a@example.test",
    });
    const { session } = await run(store, { keywords: ["HELP"] });
    assert.equal(session.commands[1], "MAIL FROM:<sender@origin.test>");
    assert.equal(session.commands[2], "RCPT TO:<a@example.test>");
  });

  test("DSN, 8BITMIME and SIZE advertised: parameters passed as received, never AUTH=", async () => {
    const store = customerStore();
    const body = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n";
    enqueue(store, ["a@example.test"], body, {
      // ENVID is stored as received on the wire, still xtext-encoded (smtp/params.ts).
      envid: "env+201+2Bx",
      ret: "HDRS",
      bodyType: "8BITMIME",
      notify: "SUCCESS,FAILURE",
      orcpt: "rfc822;a@example.test",
    });
    const { result, session } = await run(store, { keywords: ["SIZE 0", "8BITMIME", "DSN", "AUTH PLAIN"] });
    assert.equal(result.delivered, 1);
    const size = bytes(body).length;
    assert.equal(
      session.commands[1],
      `MAIL FROM:<sender@origin.test> SIZE=${size} BODY=8BITMIME RET=HDRS ENVID=env+201+2Bx`,
    );
    assert.equal(
      session.commands[2],
      "RCPT TO:<a@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.test",
    );
    assert.ok(Buffer.from(session.messages[0]!.data).equals(Buffer.from(bytes(body))));
  });

  test("8-bit content without 8BITMIME fails 5.6.3 (no conversion)", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], "Subject: x\r\n\r\nna\u00efve\r\n");
    const { result, session } = await run(store, { keywords: ["PIPELINING", "SIZE 0"] });
    assert.equal(result.failed, 1);
    assert.equal(session.verbs.get("MAIL"), undefined);
    assert.match(queueState(store, id)![0]!.lastText!, /^5\.6\.3 /);
  });

  test("SMTPUTF8 needed but not offered fails 5.6.7; offered: SMTPUTF8 is declared", async () => {
    const store = customerStore();
    const id = enqueue(store, ["a@example.test"], textBody("x"), { smtputf8: true }, "j\u00f6rg@origin.test");
    const { result } = await run(store, { keywords: ["8BITMIME"] });
    assert.equal(result.failed, 1);
    assert.match(queueState(store, id)![0]!.lastText!, /^5\.6\.7 /);

    const store2 = customerStore();
    enqueue(store2, ["a@example.test"], textBody("x"), { smtputf8: true }, "j\u00f6rg@origin.test");
    const { result: r2, session } = await run(store2, {});
    assert.equal(r2.delivered, 1);
    assert.match(session.commands[1]!, /^MAIL FROM:<j\u00f6rg@origin\.test> SIZE=\d+ SMTPUTF8/);
  });

  test("CR/LF in queued addresses never reach the wire as line breaks", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("x"), {}, "evil@origin.test>\r\nRCPT TO:<victim@else.test");
    const { session } = await run(store, {});
    assert.equal(
      session.commands[1],
      "MAIL FROM:<evil@origin.test>RCPT TO:<victim@else.test> SIZE=" + bytes(textBody("x")).length,
    );
    assert.ok(!session.commands.includes("RCPT TO:<victim@else.test>"));
  });

  test("STARTTLS and CHUNKING advertised: neither is used", async () => {
    const store = customerStore();
    enqueue(store, ["a@example.test"], textBody("x"));
    const { result, session } = await run(store, {
      keywords: ["STARTTLS", "CHUNKING", "PIPELINING", "8BITMIME"],
    });
    assert.equal(result.delivered, 1);
    assert.ok(!session.commands.some((c) => /^(STARTTLS|BDAT)/i.test(c)));
  });
});

test("a stored ENVID that is not plain xtext is not passed on", async () => {
  const store = customerStore();
  enqueue(store, ["a@example.test"], "Subject: x\r\n\r\nx\r\n", { envid: "bad envid", ret: "FULL" });
  const { result, session } = await run(store, { keywords: ["DSN"] });
  assert.equal(result.delivered, 1);
  assert.equal(session.commands[1], "MAIL FROM:<sender@origin.test> RET=FULL");
});
