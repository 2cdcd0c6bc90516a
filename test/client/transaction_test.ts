/**
 * One MAIL transaction (src/client/transaction.ts), driven through a minimal TransactionLink over an
 * in-memory pipe: the test plays the customer's server on the other end. What a transaction promises:
 * the order of MAIL, RCPT, DATA (pipelined or stop-and-wait), the content only after 354 with an
 * accepted recipient, RSET after a failed transaction, each reply mapped to the recipients it concerns,
 * and the "too many recipients" ones handed back for a new transaction.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeBody } from "../../src/client/body_writer.ts";
import type { DeliverableMessage, RecipientOutcome } from "../../src/client/types.ts";
import type { Recipient, SetOutcome } from "../../src/client/outcome.ts";
import {
  type BodyOpener,
  type Received,
  runTransaction,
  type SessionState,
  type TransactionLink,
} from "../../src/client/transaction.ts";
import type { Connection } from "../../src/net/connection.ts";
import { ConnectionClosedError } from "../../src/net/errors.ts";
import { memoryPipe } from "../../src/net/memory_connection.ts";
import { Capabilities, parseEhloReply } from "../../src/smtp/ehlo.ts";
import { ReplyParser } from "../../src/smtp/reply.ts";
import { deliverable, MemoryCustomer as Server, settle, timeouts, WAIT_MS } from "./_memory_customer.ts";

const encoder = new TextEncoder();
/** Reads one reply from `conn` (at most 100 lines). */
async function readReply(conn: Connection, timeoutMs: number): Promise<Received> {
  const parser = new ReplyParser();
  for (let i = 0; i < 100; i++) {
    const reply = parser.push(await conn.readLine({ timeoutMs }));
    if (reply !== undefined) return { ...reply, fragmented: false };
  }
  throw new Error("reply too long");
}

/** How the test's link reports time and buffering, and what it was told about pipelined groups. */
interface Pacing {
  now: () => number;
  hasBufferedReply: () => boolean;
  groups: number[];
}

/** The few operations of a client session a transaction uses, over the client end of a pipe. */
function linkOver(
  conn: Connection,
  session: SessionState,
  events: string[],
  pacing: Pacing,
): TransactionLink {
  return {
    timeouts,
    session,
    command: async (line, timeoutMs) => {
      events.push(line);
      await conn.write(`${line}\r\n`);
      return await readReply(conn, timeoutMs);
    },
    readReply: (timeoutMs) => readReply(conn, timeoutMs),
    writeBatch: async (commands) => {
      events.push(`batch of ${commands.length}`);
      await conn.write(commands.join(""));
    },
    writeBody: async (body, first) => {
      events.push("content");
      await writeBody(conn, body, first, { timeoutMs: WAIT_MS, lineByLine: false });
    },
    trace: (line) => events.push(`trace ${line}`),
    now: () => pacing.now(),
    hasBufferedReply: () => pacing.hasBufferedReply(),
    pipelinedGroupRead: (slowestGapMs) => pacing.groups.push(slowestGapMs),
  };
}

/** A recorded `set` call. */
type Recorded = [id: number, result: RecipientOutcome["result"], code: number | null, text: string];

/** Everything one transaction test needs. */
function setup(pipelining: boolean, keywords: string[] = []) {
  const [serverEnd, clientEnd] = memoryPipe();
  const capabilities: Capabilities = keywords.length === 0
    ? new Capabilities()
    : parseEhloReply(["customer.test", ...keywords]);
  const events: string[] = [];
  const set: Recorded[] = [];
  const record: SetOutcome = (r, result, code, text) => set.push([r.id, result, code, text]);
  // The clock moves only when the test moves it (or by `tick` per reading); buffering is the pipe's own.
  const clock = { ms: 0, tick: 0 };
  const pacing: Pacing = {
    now: () => (clock.ms += clock.tick),
    hasBufferedReply: () => clientEnd.hasBufferedInput(),
    groups: [],
  };
  return {
    server: new Server(serverEnd),
    link: linkOver(clientEnd, { capabilities, pipelining }, events, pacing),
    events,
    set,
    record,
    clock,
    groups: pacing.groups,
  };
}

/** A plain message to `rcpts` (ids 1, 2, ...). */
const message = (rcpts: string[]): DeliverableMessage => deliverable(rcpts);

const CONTENT = "Subject: t\r\n\r\nHi.\r\n";
const body: BodyOpener = () => [encoder.encode(CONTENT)];

/** Runs the transaction for every recipient of `m` while the server plays `script`. */
async function run(
  t: ReturnType<typeof setup>,
  m: DeliverableMessage,
  script: () => Promise<void>,
  openBody: BodyOpener = body,
): Promise<Recipient[]> {
  const played = script().catch((err) => {
    t.server.conn.destroy();
    throw err;
  });
  const [retry] = await Promise.all([runTransaction(t.link, m, m.recipients, openBody, t.record), played]);
  return retry;
}

/** Serves MAIL and the RCPTs one at a time with `replies` (MAIL's first). */
async function stopAndWait(server: Server, rcpts: string[], replies: string[]): Promise<void> {
  const commands = ["MAIL FROM:<sender@origin.test>", ...rcpts.map((r) => `RCPT TO:<${r}>`)];
  for (const [i, command] of commands.entries()) {
    if (i >= replies.length) return;
    await server.expect(command);
    await server.send(replies[i]!);
  }
}

describe("runTransaction: command order", () => {
  test("stop-and-wait: MAIL, each RCPT, DATA, the content, then nothing more", async () => {
    const t = setup(false);
    const retry = await run(t, message(["a@example.test", "b@example.test"]), async () => {
      await stopAndWait(t.server, ["a@example.test", "b@example.test"], [
        "250 ok",
        "250 ok",
        "251 forwarded",
      ]);
      await t.server.expect("DATA");
      await t.server.send("354 go");
      assert.equal(await t.server.content(), `${CONTENT}.\r\n`);
      await t.server.send("250 2.0.0 queued");
      await t.server.expectSilence();
    });
    assert.deepEqual(retry, []);
    assert.deepEqual(t.set, [
      [1, "delivered", 250, "250 2.0.0 queued"],
      [2, "delivered", 250, "250 2.0.0 queued"],
    ]);
    assert.deepEqual(t.events, [
      "MAIL FROM:<sender@origin.test>",
      "RCPT TO:<a@example.test>",
      "RCPT TO:<b@example.test>",
      "DATA",
      "content",
    ]);
  });

  test("pipelined: MAIL, the RCPTs and DATA as one batch, DATA last", async () => {
    const t = setup(true);
    await run(t, message(["a@example.test", "b@example.test"]), async () => {
      assert.equal(
        await t.server.chunk(),
        "MAIL FROM:<sender@origin.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
      );
      await t.server.send("250 ok", "250 ok", "250 ok", "354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(t.events, [
      "trace MAIL FROM:<sender@origin.test> +2 RCPT + DATA (pipelined)",
      "batch of 4",
      "content",
    ]);
    assert.deepEqual(t.set.map(([, result]) => result), ["delivered", "delivered"]);
  });

  test("MAIL and RCPT lines carry the parameters the session's capabilities allow", async () => {
    const t = setup(false, ["SIZE", "DSN"]);
    const m = message(["a@example.test"]);
    m.recipients[0]!.notify = "FAILURE";
    await run(t, m, async () => {
      await t.server.expect("MAIL FROM:<sender@origin.test> SIZE=100");
      await t.server.send("250 ok");
      await t.server.expect("RCPT TO:<a@example.test> NOTIFY=FAILURE");
      await t.server.send("550 no");
      await t.server.expect("RSET");
      await t.server.send("250 ok");
    });
  });

  test("the body is opened before MAIL and closed afterwards, even when it was never sent", async () => {
    const t = setup(false);
    let closed = false;
    function* stored(): Generator<Uint8Array> {
      t.events.push("open");
      try {
        yield encoder.encode(CONTENT);
      } finally {
        closed = true;
      }
    }
    await run(t, message(["a@example.test"]), async () => {
      await stopAndWait(t.server, [], ["451 4.3.0 try later"]);
      await t.server.expect("RSET");
      await t.server.send("250 ok");
    }, stored);
    assert.equal(t.events[0], "open");
    assert.equal(closed, true);
  });
});

describe("runTransaction: replies to MAIL", () => {
  for (
    const [reply, result] of [["451 4.3.0 Try later", "deferred"], [
      "550 5.7.1 Sender refused",
      "failed",
    ]] as const
  ) {
    test(`stop-and-wait MAIL ${reply.slice(0, 3)}: every recipient ${result}, no RCPT, then RSET`, async () => {
      const t = setup(false);
      const retry = await run(t, message(["a@example.test", "b@example.test"]), async () => {
        await t.server.expect("MAIL FROM:<sender@origin.test>");
        await t.server.send(reply);
        await t.server.expect("RSET");
        await t.server.send("250 ok");
        await t.server.expectSilence();
      });
      assert.deepEqual(retry, []);
      assert.deepEqual(t.set, [
        [1, result, Number(reply.slice(0, 3)), reply],
        [2, result, Number(reply.slice(0, 3)), reply],
      ]);
    });
  }

  test("pipelined MAIL refused but DATA answered 354: a lone dot, then RSET, no content", async () => {
    const t = setup(true);
    await run(t, message(["a@example.test"]), async () => {
      await t.server.chunk();
      await t.server.send("550 5.7.1 no", "250 ok", "354 go");
      await t.server.expect(".");
      await t.server.send("554 no valid recipients");
      await t.server.expect("RSET");
      await t.server.send("250 ok");
      await t.server.expectSilence();
    });
    assert.deepEqual(t.set, [[1, "failed", 550, "550 5.7.1 no"]]);
    assert.ok(!t.events.includes("content"));
  });

  test("pipelined MAIL refused and DATA refused too: RSET only", async () => {
    const t = setup(true);
    await run(t, message(["a@example.test"]), async () => {
      await t.server.chunk();
      await t.server.send("451 later", "503 bad sequence", "503 bad sequence");
      await t.server.expect("RSET");
      await t.server.send("250 ok");
      await t.server.expectSilence();
    });
    assert.deepEqual(t.set, [[1, "deferred", 451, "451 later"]]);
  });
});

describe("runTransaction: replies to RCPT", () => {
  test("2xx pending, 4xx deferred, 5xx failed, a bogus 3xx deferred; the pending ones follow the final dot", async () => {
    const t = setup(false);
    const rcpts = ["ok@x.test", "fwd@x.test", "busy@x.test", "bad@x.test", "odd@x.test"];
    await run(t, message(rcpts), async () => {
      await stopAndWait(t.server, rcpts, [
        "250 ok",
        "250 ok",
        "251 will forward",
        "450 4.2.1 busy",
        "550 5.1.1 unknown",
        "354 what?",
      ]);
      await t.server.expect("DATA");
      await t.server.send("354 go");
      await t.server.content();
      await t.server.send("250 done");
    });
    assert.deepEqual(t.set, [
      [3, "deferred", 450, "450 4.2.1 busy"],
      [4, "failed", 550, "550 5.1.1 unknown"],
      [5, "deferred", 354, "354 what?"],
      [1, "delivered", 250, "250 done"],
      [2, "delivered", 250, "250 done"],
    ]);
  });

  test("stop-and-wait, no recipient accepted: no DATA, RSET", async () => {
    const t = setup(false);
    await run(t, message(["a@x.test", "b@x.test"]), async () => {
      await stopAndWait(t.server, ["a@x.test", "b@x.test"], ["250 ok", "550 no", "450 later"]);
      await t.server.expect("RSET");
      await t.server.send("250 ok");
      await t.server.expectSilence();
    });
    assert.deepEqual(t.set.map(([id, result]) => [id, result]), [[1, "failed"], [2, "deferred"]]);
    assert.ok(!t.events.includes("DATA"));
  });

  test("pipelined, no recipient accepted but DATA got 354: a lone dot and RSET, nothing delivered", async () => {
    const t = setup(true);
    await run(t, message(["a@x.test"]), async () => {
      await t.server.chunk();
      await t.server.send("250 ok", "550 5.1.1 unknown", "354 go ahead anyway");
      await t.server.expect(".");
      await t.server.send("554 5.5.1 no valid recipients");
      await t.server.expect("RSET");
      await t.server.send("250 ok");
      await t.server.expectSilence();
    });
    assert.deepEqual(t.set, [[1, "failed", 550, "550 5.1.1 unknown"]]);
    assert.ok(!t.events.includes("content"));
  });

  test("452: handed back for a new transaction when the others were delivered, no outcome recorded", async () => {
    const t = setup(false);
    const m = message(["a@x.test", "b@x.test", "c@x.test"]);
    const retry = await run(t, m, async () => {
      await stopAndWait(t.server, ["a@x.test", "b@x.test", "c@x.test"], [
        "250 ok",
        "250 ok",
        "452 4.5.3 Too many recipients",
        "452 4.5.3 Too many recipients",
      ]);
      await t.server.expect("DATA");
      await t.server.send("354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(retry.map((r) => r.id), [2, 3]);
    assert.deepEqual(t.set.map(([id, result]) => [id, result]), [[1, "delivered"]]);
  });

  test("452 while nobody was accepted: deferred with that reply, nothing handed back", async () => {
    const t = setup(false);
    const retry = await run(t, message(["a@x.test"]), async () => {
      await stopAndWait(t.server, ["a@x.test"], ["250 ok", "452 4.5.3 Too many recipients"]);
      await t.server.expect("RSET");
      await t.server.send("250 ok");
    });
    assert.deepEqual(retry, []);
    assert.deepEqual(t.set, [[1, "deferred", 452, "452 4.5.3 Too many recipients"]]);
  });

  for (
    const [stage, replies, first] of [
      ["DATA is refused", ["451 4.3.0 later"], [1, "deferred", 451]],
      ["the final dot is refused", ["354 go", "content", "554 5.6.0 rejected"], [1, "failed", 554]],
    ] as const
  ) {
    test(`452 and then ${stage}: deferred with the 452, nothing handed back`, async () => {
      const t = setup(false);
      const retry = await run(t, message(["a@x.test", "b@x.test"]), async () => {
        await stopAndWait(t.server, ["a@x.test", "b@x.test"], ["250 ok", "250 ok", "452 4.5.3 Too many"]);
        await t.server.expect("DATA");
        for (const step of replies) {
          if (step === "content") await t.server.content();
          else await t.server.send(step);
        }
        if (replies.length === 1) {
          await t.server.expect("RSET");
          await t.server.send("250 ok");
        }
        await t.server.expectSilence();
      });
      assert.deepEqual(retry, []);
      assert.deepEqual(t.set.map(([id, result, code]) => [id, result, code]), [first, [2, "deferred", 452]]);
    });
  }

  test("552 with 5.5.3 means too many recipients: handed back", async () => {
    const t = setup(false);
    const retry = await run(t, message(["a@x.test", "b@x.test"]), async () => {
      await stopAndWait(t.server, ["a@x.test", "b@x.test"], [
        "250 ok",
        "250 ok",
        "552 5.5.3 Too many recipients",
      ]);
      await t.server.expect("DATA");
      await t.server.send("354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(retry.map((r) => r.id), [2]);
  });

  test("552 otherwise, before 100 were accepted: failed (too big for this recipient)", async () => {
    const t = setup(false);
    const retry = await run(t, message(["a@x.test", "b@x.test"]), async () => {
      await stopAndWait(t.server, ["a@x.test", "b@x.test"], ["250 ok", "250 ok", "552 5.2.2 Mailbox full"]);
      await t.server.expect("DATA");
      await t.server.send("354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(retry, []);
    assert.deepEqual(t.set[0], [2, "failed", 552, "552 5.2.2 Mailbox full"]);
  });

  test("552 after 100 accepted means too many recipients: handed back", async () => {
    const t = setup(true);
    const rcpts = Array.from({ length: 101 }, (_, i) => `r${i}@x.test`);
    const retry = await run(t, message(rcpts), async () => {
      await t.server.chunk();
      await t.server.send("250 ok", ...Array(100).fill("250 ok"), "552 5.2.2 Mailbox full", "354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(retry.map((r) => r.id), [101]);
    assert.equal(t.set.length, 100);
  });
});

describe("runTransaction: replies to DATA and to the final dot", () => {
  for (
    const [reply, result] of [
      ["451 4.3.0 later", "deferred"],
      ["554 5.5.1 no", "failed"],
      ["250 bogus ok", "deferred"],
    ] as const
  ) {
    test(`DATA ${reply.slice(0, 3)}: the pending recipients ${result}, no content, RSET`, async () => {
      const t = setup(false);
      await run(t, message(["a@x.test"]), async () => {
        await stopAndWait(t.server, ["a@x.test"], ["250 ok", "250 ok"]);
        await t.server.expect("DATA");
        await t.server.send(reply);
        await t.server.expect("RSET");
        await t.server.send("250 ok");
        await t.server.expectSilence();
      });
      assert.deepEqual(t.set, [[1, result, Number(reply.slice(0, 3)), reply]]);
      assert.ok(!t.events.includes("content"));
    });
  }

  for (
    const [reply, result] of [
      ["250 2.0.0 queued", "delivered"],
      ["452 4.3.1 out of space", "deferred"],
      ["554 5.6.0 content rejected", "failed"],
    ] as const
  ) {
    test(`final dot ${reply.slice(0, 3)}: the pending recipients ${result}, no RSET`, async () => {
      const t = setup(false);
      await run(t, message(["a@x.test", "b@x.test"]), async () => {
        await stopAndWait(t.server, ["a@x.test", "b@x.test"], ["250 ok", "250 ok", "550 no"]);
        await t.server.expect("DATA");
        await t.server.send("354 go");
        await t.server.content();
        await t.server.send(reply);
        await t.server.expectSilence();
      });
      assert.deepEqual(t.set, [
        [2, "failed", 550, "550 no"],
        [1, result, Number(reply.slice(0, 3)), reply],
      ]);
    });
  }
});

describe("runTransaction: pacing of pipelined replies", () => {
  test("a pipelined group reports the longest wait for a reply that was not yet buffered", async () => {
    const t = setup(true);
    await run(t, message(["a@x.test", "b@x.test"]), async () => {
      await t.server.chunk();
      await t.server.send("250 ok");
      await settle();
      t.clock.ms += 5;
      await t.server.send("250 a ok");
      await settle();
      t.clock.ms += 30;
      // DATA's reply arrives with b's: it was buffered, so its wait does not count.
      await t.server.send("250 b ok", "354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(t.groups, [30]);
  });

  test("replies that arrive together: the group reports no wait, however long reading them took", async () => {
    const t = setup(true);
    t.clock.tick = 10; // every look at the clock finds it 10 ms later
    await run(t, message(["a@x.test"]), async () => {
      await t.server.chunk();
      await t.server.send("250 ok", "250 ok", "354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(t.groups, [0]);
  });

  test("stop-and-wait transactions report no group", async () => {
    const t = setup(false);
    await run(t, message(["a@x.test"]), async () => {
      await stopAndWait(t.server, ["a@x.test"], ["250 ok", "250 ok"]);
      await t.server.expect("DATA");
      await t.server.send("354 go");
      await t.server.content();
      await t.server.send("250 ok");
    });
    assert.deepEqual(t.groups, []);
  });
});

describe("runTransaction: failures", () => {
  test("a body that cannot be opened: every recipient deferred 451, nothing sent", async () => {
    const t = setup(true);
    const retry = await run(t, message(["a@x.test", "b@x.test"]), () => t.server.expectSilence(), () => {
      throw new Error("row vanished");
    });
    assert.deepEqual(retry, []);
    assert.deepEqual(t.set, [
      [1, "deferred", 451, "4.3.0 Stored message unavailable: row vanished"],
      [2, "deferred", 451, "4.3.0 Stored message unavailable: row vanished"],
    ]);
    assert.deepEqual(t.events, []);
  });

  test("a body whose first read fails: deferred the same way", async () => {
    const t = setup(false);
    const failing: BodyOpener = () => ({
      [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Error("I/O error")) }),
    });
    await run(t, message(["a@x.test"]), () => t.server.expectSilence(), failing);
    assert.deepEqual(t.set, [[1, "deferred", 451, "4.3.0 Stored message unavailable: I/O error"]]);
  });

  test("the connection closing mid-transaction rejects, with outcomes only for the answered recipients", async () => {
    const t = setup(false);
    const m = message(["bad@x.test", "a@x.test"]);
    const played = (async () => {
      await stopAndWait(t.server, ["bad@x.test", "a@x.test"], ["250 ok", "550 no", "250 ok"]);
      await t.server.expect("DATA");
      await t.server.conn.close();
    })();
    await assert.rejects(runTransaction(t.link, m, m.recipients, body, t.record), ConnectionClosedError);
    await played;
    assert.deepEqual(t.set, [[1, "failed", 550, "550 no"]]);
  });
});
