/**
 * SmtpClient (src/client/smtp_client.ts) over an in-memory pipe: the client gets one end, the test plays
 * the customer's SMTP server on the other, line by line. What the session promises: the greeting and
 * EHLO rules, the exact commands and content on the wire, one outcome per recipient, and a session that
 * ends early leaving every unconfirmed recipient deferred.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DeliveryAbort } from "../../src/client/errors.ts";
import { PACED_FALLBACK_REASON } from "../../src/client/pipelining.ts";
import { type BodyOpener, SmtpClient, type SmtpClientOptions } from "../../src/client/smtp_client.ts";
import type { DeliverableMessage } from "../../src/client/types.ts";
import { Logger } from "../../src/log/logger.ts";
import { ConnectionClosedError, TlsHandshakeError } from "../../src/net/errors.ts";
import {
  type MemoryConnection,
  memoryPipe,
  type MemoryPipeOptions,
} from "../../src/net/memory_connection.ts";
import { Code421Closing, Code451LocalError, Code554Failed } from "../../src/smtp/codes.ts";
import {
  converse,
  deliverable,
  MemoryCustomer as Server,
  settle,
  timeouts,
  WAIT_MS,
} from "./_memory_customer.ts";

const encoder = new TextEncoder();
/** A client and the server it talks to, nothing said yet. */
function open(
  options: Partial<SmtpClientOptions> = {},
  pipe: MemoryPipeOptions = {},
): { client: SmtpClient; server: Server; clientEnd: MemoryConnection } {
  const [serverEnd, clientEnd] = memoryPipe(pipe);
  return {
    client: new SmtpClient(clientEnd, { timeouts, ...options }),
    server: new Server(serverEnd),
    clientEnd,
  };
}

/** The lines of a 250 reply to EHLO listing `keywords`. */
function ehloReply(keywords: string[]): string[] {
  const lines = ["customer.test", ...keywords];
  return lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}`);
}

/** The DeliveryAbort that `call` rejects with. */
async function abortOf(call: Promise<unknown>): Promise<DeliveryAbort> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof DeliveryAbort, `expected a DeliveryAbort, got ${err}`);
    return err;
  }
  assert.fail("expected the call to fail with a DeliveryAbort");
}

/** A client past the greeting and EHLO, the customer offering `keywords`. */
async function ready(
  keywords: string[] = [],
  options: Partial<SmtpClientOptions> = {},
): Promise<{ client: SmtpClient; server: Server }> {
  const { client, server } = open(options);
  await server.send("220 customer.test ESMTP");
  await client.readGreeting();
  await converse(client.hello("relay.test"), server, async () => {
    await server.expect("EHLO relay.test");
    await server.send(...ehloReply(keywords));
  });
  return { client, server };
}

/** A plain 7-bit message from sender@origin.test to `rcpts` (recipient ids 1, 2, ...). */
function message(rcpts: string[], extra: Partial<DeliverableMessage> = {}): DeliverableMessage {
  return deliverable(rcpts, { id: 7, ...extra });
}

/** A body opener yielding `chunks` as UTF-8 (called once per transaction). */
function body(...chunks: string[]): BodyOpener {
  return () => chunks.map((c) => encoder.encode(c));
}

const CONTENT = "Subject: test\r\n\r\nHello.\r\n";

/** Serves one stop-and-wait transaction that accepts every recipient; returns the content. */
async function acceptAll(server: Server, mail: string, rcpts: string[]): Promise<string> {
  await server.expect(mail);
  await server.send("250 2.1.0 ok");
  for (const rcpt of rcpts) {
    await server.expect(rcpt);
    await server.send("250 2.1.5 ok");
  }
  await server.expect("DATA");
  await server.send("354 go ahead");
  const content = await server.content();
  await server.send("250 2.0.0 queued as 1");
  return content;
}

describe("SmtpClient.readGreeting", () => {
  test("220 resolves with the reply, multi-line greetings included", async () => {
    const { client, server } = open();
    await server.send("220-customer.test ESMTP", "220 ready");
    const reply = await client.readGreeting();
    assert.equal(reply.code, 220);
    assert.deepEqual(reply.lines, ["customer.test ESMTP", "ready"]);
    assert.equal(client.fragmentedReplies, false);
    assert.equal(client.usable, true);
  });

  test("a greeting already buffered when the client takes the connection over is read", async () => {
    const [serverEnd, clientEnd] = memoryPipe();
    await serverEnd.write("220 customer.test ESMTP\r\n");
    assert.equal(await clientEnd.waitForInput(WAIT_MS), true);
    const client = new SmtpClient(clientEnd, { timeouts });
    assert.equal((await client.readGreeting()).code, 220);
  });

  test("a multi-line greeting arriving one line at a time marks the replies fragmented", async () => {
    const { client, server } = open();
    const reply = await converse(client.readGreeting(), server, async () => {
      await server.send("220-customer.test ESMTP");
      await settle();
      await server.send("220 ready");
    });
    assert.equal(reply.code, 220);
    assert.equal(client.fragmentedReplies, true);
  });

  test("554: QUIT is sent, the connection closed, refused with the customer's code", async () => {
    const { client, server } = open();
    const [abort] = await Promise.all([
      abortOf(client.readGreeting()),
      (async () => {
        await server.send("554 5.3.2 No service here");
        await server.expect("QUIT");
        await server.send("221 bye");
        await server.expectClosed();
      })(),
    ]);
    assert.equal(abort.kind, "refused");
    assert.equal(abort.code, Code554Failed);
    assert.equal(abort.text, "4.3.2 Customer refused the session: 554 5.3.2 No service here");
    assert.equal(client.abortedWith, abort);
    assert.equal(client.usable, false);
  });

  test("421: closed without QUIT, refused with 421", async () => {
    const { client, server } = open();
    await server.send("421 4.3.2 Too busy");
    const abort = await abortOf(client.readGreeting());
    assert.equal(abort.kind, "refused");
    assert.equal(abort.code, Code421Closing);
    assert.equal(abort.text, "4.3.2 Customer not available: 421 4.3.2 Too busy");
    await server.expectClosed();
  });

  test("any other code is a protocol error", async () => {
    const { client, server } = open();
    await server.send("250 hello?");
    const abort = await abortOf(client.readGreeting());
    assert.equal(abort.kind, "protocol");
    assert.equal(abort.text, "4.5.0 Unexpected greeting: 250 hello?");
    assert.equal(abort.code, Code451LocalError);
    await server.expectClosed();
  });

  test("a greeting that is not a reply line is a protocol error", async () => {
    const { client, server } = open();
    await server.send("hello there");
    const abort = await abortOf(client.readGreeting());
    assert.equal(abort.kind, "protocol");
    assert.match(abort.text, /^4\.5\.0 Invalid reply to greeting: /);
    await server.expectClosed();
  });

  test("the connection closing before any greeting: lost", async () => {
    const { client, server } = open();
    await server.conn.close();
    const abort = await abortOf(client.readGreeting());
    assert.equal(abort.kind, "lost");
    assert.equal(abort.text, "4.4.2 Connection lost during greeting");
  });

  test("no greeting within greetingMs: a timeout naming the whole timeout", async () => {
    const { client, server } = open({ timeouts: { ...timeouts, greetingMs: 40 } });
    const abort = await abortOf(client.readGreeting());
    assert.equal(abort.kind, "timeout");
    assert.equal(abort.text, "4.4.2 No reply to greeting within 40 ms");
    await server.expectClosed();
  });
});

describe("SmtpClient.hello", () => {
  test("EHLO with our name; keywords are read case-insensitively", async () => {
    const { client, server } = open();
    await server.send("220 customer.test");
    await client.readGreeting();
    const verb = await converse(client.hello("relay.test"), server, async () => {
      await server.expect("EHLO relay.test");
      await server.send(...ehloReply(["size 5000", "8bitmime", "Dsn"]));
    });
    assert.equal(verb, "EHLO");
    assert.equal(client.greetingVerb, "EHLO");
    assert.deepEqual(client.capabilities.get("SIZE"), ["5000"]);
    assert.ok(client.capabilities.has("8BITMIME"));
    assert.ok(client.capabilities.has("DSN"));
    assert.equal(client.pipelining, false);
    assert.equal(client.pipeliningDecision.reason, "not advertised");
  });

  for (
    const [name, address, expected] of [
      ["", "192.0.2.7", "EHLO [192.0.2.7]"],
      [" \t", "2001:db8::1", "EHLO [IPv6:2001:db8::1]"],
      ["relay .test\r\nMAIL FROM:<x>", "192.0.2.7", "EHLO relay.testMAILFROM:<x>"],
    ] as const
  ) {
    test(`our name ${JSON.stringify(name)} from ${address} is sent as ${JSON.stringify(expected)}`, async () => {
      const { client, server } = open({}, { clientAddress: address });
      await server.send("220 customer.test");
      await client.readGreeting();
      await converse(client.hello(name), server, async () => {
        await server.expect(expected);
        await server.send("250 customer.test");
      });
    });
  }

  test("the EHLO round trip is measured on the injected monotonic clock", async () => {
    let now = 1000;
    const { client, server } = open({ monotonicNow: () => now });
    await server.send("220 customer.test");
    await client.readGreeting();
    await converse(client.hello("relay.test"), server, async () => {
      await server.expect("EHLO relay.test");
      now += 12.345;
      await server.send("250 customer.test");
    });
    assert.equal(client.ehloRttMs, 12.35);
  });

  test("PIPELINING offered and the reply whole: pipelining in auto mode", async () => {
    const { client } = await ready(["PIPELINING", "8BITMIME"]);
    assert.equal(client.pipelining, true);
    assert.equal(client.fragmentedReplies, false);
  });

  test("PIPELINING offered but disabled by configuration: no pipelining", async () => {
    const { client } = await ready(["PIPELINING"], { pipelining: "never" });
    assert.equal(client.pipelining, false);
    assert.equal(client.pipeliningDecision.reason, "disabled by configuration");
  });

  test("an EHLO reply arriving one line at a time turns auto pipelining off", async () => {
    const { client, server } = open();
    await server.send("220 customer.test");
    await client.readGreeting();
    await converse(client.hello("relay.test"), server, async () => {
      await server.expect("EHLO relay.test");
      await server.send("250-customer.test");
      await settle();
      await server.send("250 PIPELINING");
    });
    assert.equal(client.fragmentedReplies, true);
    assert.ok(client.capabilities.has("PIPELINING"));
    assert.equal(client.pipelining, false);
  });

  for (const code of [500, 502, 501, 504, 550]) {
    test(`EHLO ${code}: falls back to HELO, with no keywords and no pipelining`, async () => {
      const { client, server } = open();
      await server.send("220 customer.test");
      await client.readGreeting();
      const verb = await converse(client.hello("relay.test"), server, async () => {
        await server.expect("EHLO relay.test");
        await server.send(`${code} 5.5.1 EHLO not here`);
        await server.expect("HELO relay.test");
        await server.send("250 customer.test");
      });
      assert.equal(verb, "HELO");
      assert.equal(client.greetingVerb, "HELO");
      assert.equal(client.capabilities.size, 0);
      assert.deepEqual(client.pipeliningDecision, { pipelining: false, reason: "HELO session" });
      assert.equal(client.usable, true);
    });
  }

  test("EHLO refused with a code that allows no fallback: QUIT, refused with that code", async () => {
    const { client, server } = open();
    await server.send("220 customer.test");
    await client.readGreeting();
    const [abort] = await Promise.all([
      abortOf(client.hello("relay.test")),
      (async () => {
        await server.expect("EHLO relay.test");
        await server.send("554 5.7.1 Go away");
        await server.expect("QUIT");
        await server.send("221 bye");
        await server.expectClosed();
      })(),
    ]);
    assert.equal(abort.kind, "refused");
    assert.equal(abort.code, 554);
    assert.equal(abort.text, "4.3.2 Customer refused EHLO: 554 5.7.1 Go away");
  });

  test("HELO refused after the fallback: QUIT, refused with HELO's code", async () => {
    const { client, server } = open();
    await server.send("220 customer.test");
    await client.readGreeting();
    const [abort] = await Promise.all([
      abortOf(client.hello("relay.test")),
      (async () => {
        await server.expect("EHLO relay.test");
        await server.send("500 what?");
        await server.expect("HELO relay.test");
        await server.send("550 no");
        await server.expect("QUIT");
        await server.send("221 bye");
      })(),
    ]);
    assert.equal(abort.kind, "refused");
    assert.equal(abort.code, 550);
    assert.equal(abort.text, "4.3.2 Customer refused HELO: 550 no");
  });

  test("421 to EHLO ends the session at once: no HELO, no QUIT", async () => {
    const { client, server } = open();
    await server.send("220 customer.test");
    await client.readGreeting();
    const [abort] = await Promise.all([
      abortOf(client.hello("relay.test")),
      (async () => {
        await server.expect("EHLO relay.test");
        await server.send("421 4.3.2 Shutting down");
        await server.expectClosed();
      })(),
    ]);
    assert.equal(abort.kind, "refused");
    assert.equal(abort.code, Code421Closing);
    assert.equal(abort.text, "4.3.2 Customer closing during EHLO: 421 4.3.2 Shutting down");
  });

  const broken: [string, string[], Partial<SmtpClientOptions>, RegExp][] = [
    ["a code that changes inside a reply", ["250-customer.test", "251 PIPELINING"], {}, /Reply code changed/],
    [
      "more lines than maxReplyLines",
      ehloReply(["A", "B", "C", "D"]),
      { maxReplyLines: 3 },
      /more than 3 lines/,
    ],
    ["a line longer than maxReplyLineLength", [`250 ${"x".repeat(100)}`], { maxReplyLineLength: 64 }, /64/],
  ];
  for (const [what, lines, options, detail] of broken) {
    test(`${what} is a protocol error and drops the connection`, async () => {
      const { client, server } = open(options);
      await server.send("220 customer.test");
      await client.readGreeting();
      const [abort] = await Promise.all([
        abortOf(client.hello("relay.test")),
        (async () => {
          await server.expect("EHLO relay.test");
          await server.send(...lines);
          await server.expectClosed();
        })(),
      ]);
      assert.equal(abort.kind, "protocol");
      assert.match(abort.text, /^4\.5\.0 Invalid reply to EHLO: /);
      assert.match(abort.text, detail);
      assert.equal(client.usable, false);
    });
  }
});

describe("SmtpClient.sendMessage: what goes on the wire", () => {
  test("without PIPELINING: one command per write, each only after the reply to the one before", async () => {
    const { client, server } = await ready(["8BITMIME"]);
    const result = await converse(
      client.sendMessage(message(["a@example.test", "b@example.test"]), body(CONTENT)),
      server,
      async () => {
        for (
          const [command, reply] of [
            ["MAIL FROM:<sender@origin.test>", "250 ok"],
            ["RCPT TO:<a@example.test>", "250 ok"],
            ["RCPT TO:<b@example.test>", "250 ok"],
            ["DATA", "354 go ahead"],
          ]
        ) {
          assert.equal(await server.chunk(), `${command}\r\n`);
          await settle();
          assert.equal(server.conn.hasBufferedInput(), false, `the client waits for the reply to ${command}`);
          await server.send(reply!);
        }
        assert.equal(await server.content(), `${CONTENT}.\r\n`);
        await server.send("250 2.0.0 queued");
      },
    );
    assert.deepEqual([result.delivered, result.deferred, result.failed], [2, 0, 0]);
    assert.equal(client.pipelining, false);
  });

  test("with PIPELINING: MAIL, every RCPT and DATA leave in one write; replies are matched by count", async () => {
    const { client, server } = await ready(["PIPELINING"]);
    const rcpts = ["a@example.test", "b@example.test", "c@example.test"];
    const result = await converse(client.sendMessage(message(rcpts), body(CONTENT)), server, async () => {
      assert.equal(
        await server.chunk(),
        "MAIL FROM:<sender@origin.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n" +
          "RCPT TO:<c@example.test>\r\nDATA\r\n",
      );
      // Texts that name the wrong command: only the order counts (RFC 2920 3.1).
      await server.send(
        "250 recipient ok",
        "250 sender ok",
        "550 5.1.1 data ok",
        "250 mail ok",
        "354 rcpt ok",
      );
      assert.equal(await server.content(), `${CONTENT}.\r\n`);
      await server.send("250 2.0.0 queued");
    });
    assert.deepEqual(result.outcomes.map((o) => [o.id, o.result, o.code]), [
      [1, "delivered", 250],
      [2, "failed", 550],
      [3, "delivered", 250],
    ]);
  });

  test("MAIL and RCPT carry SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY and ORCPT when advertised", async () => {
    const { client, server } = await ready(["SIZE 100000", "8BITMIME", "SMTPUTF8", "DSN"]);
    const m = message(["a@example.test"], {
      size: 1234,
      eightBit: true,
      smtputf8: true,
      ret: "hdrs",
      envid: "QQ+2B1",
    });
    m.recipients[0]!.notify = "success,delay";
    m.recipients[0]!.orcpt = "rfc822;a+x@example.test";
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await acceptAll(
        server,
        "MAIL FROM:<sender@origin.test> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1",
        ["RCPT TO:<a@example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bx@example.test"],
      );
    });
    assert.equal(result.delivered, 1);
  });

  test("nothing advertised: bare MAIL and RCPT, whatever the message carries", async () => {
    const { client, server } = await ready([]);
    const m = message(["a@example.test"], { mailFrom: "", smtputf8: true, ret: "FULL", envid: "x" });
    m.recipients[0]!.notify = "NEVER";
    m.recipients[0]!.orcpt = "rfc822;a@example.test";
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await acceptAll(server, "MAIL FROM:<>", ["RCPT TO:<a@example.test>"]);
    });
    assert.equal(result.delivered, 1);
  });

  test("content is dot-stuffed across chunks, an unterminated last line gets its CRLF, then CRLF.CRLF", async () => {
    const { client, server } = await ready([]);
    const result = await converse(
      client.sendMessage(message(["a@example.test"]), body(".hid", "den\r\n", ".", ".two\r\nlast")),
      server,
      async () => {
        for (const command of ["MAIL FROM:<sender@origin.test>", "RCPT TO:<a@example.test>", "DATA"]) {
          await server.expect(command);
          await server.send(command === "DATA" ? "354 go" : "250 ok");
        }
        let raw = "";
        for (let i = 0; i < 100 && !raw.endsWith("\r\n.\r\n"); i++) raw += await server.chunk();
        assert.equal(raw, "..hidden\r\n...two\r\nlast\r\n.\r\n");
        await server.send("250 ok");
      },
    );
    assert.equal(result.delivered, 1);
  });

  test("commands and replies are traced, the content and credentials never", async () => {
    const lines: string[] = [];
    const logger = new Logger({ level: "trace", sink: (l) => lines.push(l) });
    const { client, server } = await ready(["AUTH PLAIN"], { logger });
    await converse(client.authenticate("PLAIN", "user", "s3cret"), server, async () => {
      await server.read();
      await server.send("235 ok");
    });
    await converse(
      client.sendMessage(message(["a@example.test"]), body("top secret words\r\n")),
      server,
      async () => {
        await acceptAll(server, "MAIL FROM:<sender@origin.test>", ["RCPT TO:<a@example.test>"]);
      },
    );
    const trace = lines.join("\n");
    assert.match(trace, /EHLO relay\.test/);
    assert.match(trace, /RCPT TO:<a@example\.test>/);
    assert.match(trace, /AUTH PLAIN <redacted>/);
    assert.match(trace, /<content> \./);
    assert.ok(!trace.includes("top secret"), "content must not be traced");
    assert.ok(!trace.includes(btoa("\0user\0s3cret")), "credentials must not be traced");
  });
});

describe("SmtpClient: replies to pipelined groups that arrive one write at a time", () => {
  /**
   * Serves one pipelined message as a customer under Nagle does: the MAIL reply at once, then, `gapMs`
   * later, the RCPT and DATA replies together.
   */
  async function pacedGroup(server: Server, clock: { ms: number }, gapMs: number): Promise<void> {
    assert.equal(
      await server.chunk(),
      "MAIL FROM:<sender@origin.test>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n",
    );
    await server.send("250 ok");
    await settle();
    clock.ms += gapMs;
    await server.send("250 ok", "354 go");
    await server.content();
    await server.send("250 ok");
  }

  /** Serves one pipelined message whose RCPT and DATA replies each come `gapMs` after the one before. */
  async function slowGroup(server: Server, clock: { ms: number }, gapMs: number): Promise<void> {
    assert.equal(
      await server.chunk(),
      "MAIL FROM:<sender@origin.test>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n",
    );
    await server.send("250 ok");
    for (const reply of ["250 ok", "354 go"]) {
      await settle();
      clock.ms += gapMs;
      await server.send(reply);
    }
    await server.content();
    await server.send("250 ok");
  }

  test("auto: a customer that waits before each reply (slow, not Nagle) keeps pipelining", async () => {
    const clock = { ms: 0 };
    const { client, server } = await ready(["PIPELINING"], { monotonicNow: () => clock.ms });
    for (let i = 0; i < 4; i++) {
      await converse(
        client.sendMessage(message(["a@example.test"]), body(CONTENT)),
        server,
        () => slowGroup(server, clock, 25),
      );
    }
    assert.equal(client.pipelining, true);
  });

  test("auto: three paced groups in a row, then one command at a time", async () => {
    const clock = { ms: 0 };
    const { client, server } = await ready(["PIPELINING"], { monotonicNow: () => clock.ms });
    for (let i = 0; i < 3; i++) {
      assert.equal(client.pipelining, true, `still pipelining before message ${i + 1}`);
      const result = await converse(
        client.sendMessage(message(["a@example.test"]), body(CONTENT)),
        server,
        () => pacedGroup(server, clock, 25),
      );
      assert.equal(result.delivered, 1);
    }
    assert.deepEqual(client.pipeliningDecision, { pipelining: false, reason: PACED_FALLBACK_REASON });
    await converse(client.sendMessage(message(["a@example.test"]), body(CONTENT)), server, async () => {
      assert.equal(await server.chunk(), "MAIL FROM:<sender@origin.test>\r\n");
      await server.send("250 ok");
      assert.equal(await server.chunk(), "RCPT TO:<a@example.test>\r\n");
      await server.send("250 ok");
      assert.equal(await server.chunk(), "DATA\r\n");
      await server.send("354 go");
      await server.content();
      await server.send("250 ok");
    });
  });

  test("auto: a prompt group in between starts the count again", async () => {
    const clock = { ms: 0 };
    const { client, server } = await ready(["PIPELINING"], { monotonicNow: () => clock.ms });
    for (const gap of [25, 25, 0, 25, 25]) {
      await converse(
        client.sendMessage(message(["a@example.test"]), body(CONTENT)),
        server,
        () => pacedGroup(server, clock, gap),
      );
    }
    assert.equal(client.pipelining, true);
  });

  test("always: pipelining is kept however the replies arrive", async () => {
    const clock = { ms: 0 };
    const { client, server } = await ready(["PIPELINING"], {
      monotonicNow: () => clock.ms,
      pipelining: "always",
    });
    for (let i = 0; i < 4; i++) {
      await converse(
        client.sendMessage(message(["a@example.test"]), body(CONTENT)),
        server,
        () => pacedGroup(server, clock, 50),
      );
    }
    assert.equal(client.pipelining, true);
  });
});

describe("SmtpClient.sendMessage: outcomes", () => {
  test("one outcome per recipient, in the message's order, with the counts", async () => {
    const { client, server } = await ready([]);
    const m = message(["ok@example.test", "bad@example.test", "busy@example.test"]);
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await server.expect("MAIL FROM:<sender@origin.test>");
      await server.send("250 ok");
      await server.expect("RCPT TO:<ok@example.test>");
      await server.send("250 ok");
      await server.expect("RCPT TO:<bad@example.test>");
      await server.send("550-5.1.1 No such user", "550 5.1.1 here");
      await server.expect("RCPT TO:<busy@example.test>");
      await server.send("450 4.2.1 Mailbox busy");
      await server.expect("DATA");
      await server.send("354 go");
      await server.content();
      await server.send("250 2.0.0 Queued as ABC");
    });
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "delivered", code: 250, text: "250 2.0.0 Queued as ABC" },
      { id: 2, result: "failed", code: 550, text: "550 5.1.1 No such user\nhere" },
      { id: 3, result: "deferred", code: 450, text: "450 4.2.1 Mailbox busy" },
    ]);
    assert.deepEqual([result.delivered, result.deferred, result.failed], [1, 1, 1]);
    assert.equal(result.abort, null);
    assert.equal(client.usable, true);
  });

  test("452 too many recipients: those go again in a new transaction, with the body opened again", async () => {
    const { client, server } = await ready([]);
    let opened = 0;
    const openBody = () => {
      opened++;
      return [encoder.encode(CONTENT)];
    };
    const m = message(["a@example.test", "b@example.test", "c@example.test"]);
    const result = await converse(client.sendMessage(m, openBody), server, async () => {
      await server.expect("MAIL FROM:<sender@origin.test>");
      await server.send("250 ok");
      await server.expect("RCPT TO:<a@example.test>");
      await server.send("250 ok");
      for (const r of ["b", "c"]) {
        await server.expect(`RCPT TO:<${r}@example.test>`);
        await server.send("452 4.5.3 Too many recipients");
      }
      await server.expect("DATA");
      await server.send("354 go");
      await server.content();
      await server.send("250 ok");
      await acceptAll(server, "MAIL FROM:<sender@origin.test>", [
        "RCPT TO:<b@example.test>",
        "RCPT TO:<c@example.test>",
      ]);
    });
    assert.equal(result.delivered, 3);
    assert.equal(opened, 2);
  });

  test("at most maxRecipientsPerTransaction RCPTs go in one transaction", async () => {
    const { client, server } = await ready([], { maxRecipientsPerTransaction: 2 });
    const m = message(["a@example.test", "b@example.test", "c@example.test"]);
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await acceptAll(server, "MAIL FROM:<sender@origin.test>", [
        "RCPT TO:<a@example.test>",
        "RCPT TO:<b@example.test>",
      ]);
      await acceptAll(server, "MAIL FROM:<sender@origin.test>", ["RCPT TO:<c@example.test>"]);
    });
    assert.equal(result.delivered, 3);
  });

  test("a message over the customer's SIZE is failed locally without a word to the customer", async () => {
    const { client, server } = await ready(["SIZE 1000"]);
    const result = await client.sendMessage(
      message(["a@example.test", "b@example.test"], { size: 1001 }),
      () => {
        throw new Error("the body must not be opened");
      },
    );
    assert.deepEqual(result.outcomes.map((o) => [o.result, o.code, o.local]), [
      ["failed", Code554Failed, true],
      ["failed", Code554Failed, true],
    ]);
    assert.match(result.outcomes[0]!.text!, /^5\.3\.4 /);
    await settle();
    assert.equal(server.conn.hasBufferedInput(), false);
    assert.equal(client.usable, true);
  });

  test("a recipient that needs SMTPUTF8 the customer lacks is failed locally; the others go", async () => {
    const { client, server } = await ready([]);
    const m = message(["a@example.test", "üser@example.test"]);
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await acceptAll(server, "MAIL FROM:<sender@origin.test>", ["RCPT TO:<a@example.test>"]);
    });
    assert.deepEqual(result.outcomes.map((o) => [o.id, o.result]), [[1, "delivered"], [2, "failed"]]);
    assert.equal(result.outcomes[1]!.local, true);
    assert.match(result.outcomes[1]!.text!, /^5\.6\.7 /);
  });

  test("a body that cannot be opened: deferred, nothing sent, the session goes on", async () => {
    const { client, server } = await ready([]);
    const result = await client.sendMessage(message(["a@example.test"]), () => {
      throw new Error("row vanished");
    });
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "deferred", code: 451, text: "4.3.0 Stored message unavailable: row vanished" },
    ]);
    assert.equal(result.abort, null);
    await settle();
    assert.equal(server.conn.hasBufferedInput(), false);
    assert.equal(client.usable, true);
  });
});

describe("SmtpClient.sendMessage: a session that ends early", () => {
  test("the connection closes before the reply to the final dot: every pending recipient deferred", async () => {
    const { client, server } = await ready([]);
    const m = message(["a@example.test", "bad@example.test"]);
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await server.expect("MAIL FROM:<sender@origin.test>");
      await server.send("250 ok");
      await server.expect("RCPT TO:<a@example.test>");
      await server.send("250 ok");
      await server.expect("RCPT TO:<bad@example.test>");
      await server.send("550 5.1.1 No such user");
      await server.expect("DATA");
      await server.send("354 go");
      await server.content();
      await server.conn.close();
    });
    assert.equal(result.abort?.kind, "lost");
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "deferred", code: 451, text: "4.4.2 Connection lost during end of data" },
      { id: 2, result: "failed", code: 550, text: "550 5.1.1 No such user" },
    ]);
    assert.equal(client.usable, false);
    assert.equal(client.abortReason, result.abort);
  });

  test("the connection closes while RCPT waits for its reply: lost during RCPT", async () => {
    const { client, server } = await ready([]);
    const result = await converse(
      client.sendMessage(message(["a@example.test"]), body(CONTENT)),
      server,
      async () => {
        await server.expect("MAIL FROM:<sender@origin.test>");
        await server.send("250 ok");
        await server.expect("RCPT TO:<a@example.test>");
        await server.conn.close();
      },
    );
    assert.equal(result.abort?.text, "4.4.2 Connection lost during RCPT");
    assert.deepEqual(result.outcomes.map((o) => [o.result, o.code]), [["deferred", 451]]);
  });

  test("421 to RCPT: refused; unconfirmed recipients deferred with the customer's 421", async () => {
    const { client, server } = await ready([]);
    const m = message(["a@example.test", "b@example.test"]);
    const result = await converse(client.sendMessage(m, body(CONTENT)), server, async () => {
      await server.expect("MAIL FROM:<sender@origin.test>");
      await server.send("250 ok");
      await server.expect("RCPT TO:<a@example.test>");
      await server.send("421 4.3.2 Shutting down");
      await server.expectClosed();
    });
    assert.equal(result.abort?.kind, "refused");
    assert.deepEqual(result.outcomes.map((o) => [o.result, o.code, o.text]), [
      ["deferred", 421, "4.3.2 Customer closing during RCPT: 421 4.3.2 Shutting down"],
      ["deferred", 421, "4.3.2 Customer closing during RCPT: 421 4.3.2 Shutting down"],
    ]);
  });

  test("a malformed reply to RCPT is a protocol error; the recipient stays deferred", async () => {
    const { client, server } = await ready([]);
    const result = await converse(
      client.sendMessage(message(["a@example.test"]), body(CONTENT)),
      server,
      async () => {
        await server.expect("MAIL FROM:<sender@origin.test>");
        await server.send("250 ok");
        await server.expect("RCPT TO:<a@example.test>");
        await server.send("2500 ok");
        await server.expectClosed();
      },
    );
    assert.equal(result.abort?.kind, "protocol");
    assert.match(result.abort!.text, /^4\.5\.0 Invalid reply to RCPT: /);
    assert.deepEqual(result.outcomes.map((o) => [o.result, o.code]), [["deferred", 451]]);
  });

  test("no reply to the final dot within dataTermMs: timeout, deferred", async () => {
    const { client, server } = await ready([], { timeouts: { ...timeouts, dataTermMs: 50 } });
    const result = await converse(
      client.sendMessage(message(["a@example.test"]), body(CONTENT)),
      server,
      async () => {
        await server.expect("MAIL FROM:<sender@origin.test>");
        await server.send("250 ok");
        await server.expect("RCPT TO:<a@example.test>");
        await server.send("250 ok");
        await server.expect("DATA");
        await server.send("354 go");
        await server.content();
        await server.expectClosed();
      },
    );
    assert.equal(result.abort?.kind, "timeout");
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "deferred", code: 451, text: "4.4.2 No reply to end of data within 50 ms" },
    ]);
  });

  test("the body failing mid-DATA: the final dot is never sent and the connection is dropped", async () => {
    const { client, server } = await ready([]);
    function* failing(): Generator<Uint8Array> {
      yield encoder.encode("Subject: half\r\n\r\nfirst part\r\n");
      throw new Error("disk gone");
    }
    let received = "";
    const result = await converse(
      client.sendMessage(message(["a@example.test"]), failing),
      server,
      async () => {
        for (const command of ["MAIL FROM:<sender@origin.test>", "RCPT TO:<a@example.test>", "DATA"]) {
          await server.expect(command);
          await server.send(command === "DATA" ? "354 go" : "250 ok");
        }
        for (let i = 0; i < 100; i++) {
          try {
            received += await server.chunk();
          } catch (err) {
            assert.ok(err instanceof ConnectionClosedError);
            return;
          }
        }
      },
    );
    assert.ok(!received.includes("\r\n.\r\n") && received !== ".\r\n", `sent: ${JSON.stringify(received)}`);
    assert.equal(result.abort?.kind, "local");
    assert.match(result.abort!.text, /disk gone/);
    assert.deepEqual(result.outcomes.map((o) => o.result), ["deferred"]);
  });

  test("after an abort, sendMessage sends nothing and defers every recipient with the abort's text", async () => {
    const { client, server } = await ready([]);
    await converse(client.sendMessage(message(["a@example.test"]), body(CONTENT)), server, async () => {
      await server.expect("MAIL FROM:<sender@origin.test>");
      await server.send("421 4.3.2 Bye");
    });
    const result = await client.sendMessage(message(["b@example.test", "c@example.test"]), body(CONTENT));
    assert.equal(result.abort, client.abortedWith);
    assert.deepEqual(result.outcomes.map((o) => [o.result, o.code, o.text]), [
      ["deferred", 421, "4.3.2 Customer closing during MAIL: 421 4.3.2 Bye"],
      ["deferred", 421, "4.3.2 Customer closing during MAIL: 421 4.3.2 Bye"],
    ]);
    await server.expectClosed();
  });

  test("abort() from outside ends the pending wait with that reason", async () => {
    const { client, server } = await ready([]);
    const reason = new DeliveryAbort("timeout", "4.4.2 Session time limit reached");
    const result = await converse(
      client.sendMessage(message(["a@example.test"]), body(CONTENT)),
      server,
      async () => {
        await server.expect("MAIL FROM:<sender@origin.test>");
        await server.send("250 ok");
        await server.expect("RCPT TO:<a@example.test>");
        client.abort(reason);
        await server.expectClosed();
      },
    );
    assert.equal(result.abort, reason);
    assert.equal(client.abortReason, reason);
    assert.equal(client.usable, false);
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "deferred", code: 451, text: "4.4.2 Session time limit reached" },
    ]);
  });
});

describe("SmtpClient: NOOP, QUIT, AUTH and STARTTLS", () => {
  test("NOOP answered 250 resolves and the session stays usable", async () => {
    const { client, server } = await ready([]);
    await converse(client.noop(), server, async () => {
      await server.expect("NOOP");
      await server.send("250 2.0.0 ok");
    });
    assert.equal(client.usable, true);
  });

  test("NOOP refused: QUIT is sent and the session ends refused", async () => {
    const { client, server } = await ready([]);
    const [abort] = await Promise.all([
      abortOf(client.noop()),
      (async () => {
        await server.expect("NOOP");
        await server.send("502 5.5.1 no NOOP here");
        await server.expect("QUIT");
        await server.send("221 bye");
      })(),
    ]);
    assert.equal(abort.kind, "refused");
    assert.equal(abort.text, "4.3.2 Customer refused NOOP: 502 5.5.1 no NOOP here");
  });

  test("quit sends QUIT, waits for the 221, then closes", async () => {
    const { client, server } = await ready([]);
    await converse(client.quit(), server, async () => {
      await server.expect("QUIT");
      await settle();
      assert.equal(client.usable, true, "still open until the 221 arrives");
      await server.send("221 2.0.0 bye");
      await server.expectClosed();
    });
    assert.equal(client.usable, false);
  });

  test("quit after an abort sends nothing", async () => {
    const { client, server } = await ready([]);
    client.abort(new DeliveryAbort("cancelled", "4.3.2 Shutting down"));
    await client.quit();
    await server.expectClosed();
  });

  test("AUTH PLAIN sends the initial response and returns the 235", async () => {
    const { client, server } = await ready(["AUTH PLAIN LOGIN"]);
    const reply = await converse(client.authenticate("PLAIN", "user", "pass"), server, async () => {
      await server.expect(`AUTH PLAIN ${btoa("\0user\0pass")}`);
      await server.send("235 2.7.0 Authentication successful");
    });
    assert.equal(reply.code, 235);
  });

  test("AUTH LOGIN answers the two 334 prompts with the username and the password", async () => {
    const { client, server } = await ready(["AUTH LOGIN"]);
    const reply = await converse(client.authenticate("LOGIN", "user", "pass"), server, async () => {
      await server.expect("AUTH LOGIN");
      await server.send("334 VXNlcm5hbWU6");
      await server.expect(btoa("user"));
      await server.send("334 UGFzc3dvcmQ6");
      await server.expect(btoa("pass"));
      await server.send("235 2.7.0 ok");
    });
    assert.equal(reply.code, 235);
  });

  test("a refused AUTH is returned and the session stays usable", async () => {
    const { client, server } = await ready(["AUTH PLAIN"]);
    const reply = await converse(client.authenticate("PLAIN", "user", "wrong"), server, async () => {
      await server.read();
      await server.send("535 5.7.8 Authentication credentials invalid");
    });
    assert.equal(reply.code, 535);
    assert.equal(reply.enhanced, "5.7.8");
    assert.equal(client.usable, true);
  });

  test("a challenge too many is cancelled with *", async () => {
    const { client, server } = await ready(["AUTH LOGIN"]);
    const reply = await converse(client.authenticate("LOGIN", "user", "pass"), server, async () => {
      await server.expect("AUTH LOGIN");
      for (const field of ["user", "pass"]) {
        await server.send("334 more?");
        await server.expect(btoa(field));
      }
      await server.send("334 and more?");
      await server.expect("*");
      await server.send("501 5.7.0 cancelled");
    });
    assert.equal(reply.code, 501);
  });

  test("credentials with a NUL are refused before anything is sent", async () => {
    const { client, server } = await ready(["AUTH PLAIN"]);
    const abort = await abortOf(client.authenticate("PLAIN", "us\0er", "pass"));
    assert.equal(abort.kind, "local");
    await server.expectClosed();
  });

  test("STARTTLS refused: the reply is returned and the session goes on in plaintext", async () => {
    const { client, server } = await ready(["STARTTLS", "PIPELINING"]);
    const reply = await converse(client.startTls({}), server, async () => {
      await server.expect("STARTTLS");
      await server.send("454 4.7.0 TLS not available");
    });
    assert.equal(reply?.code, 454);
    assert.equal(client.usable, true);
    assert.ok(client.capabilities.has("PIPELINING"));
  });

  test("STARTTLS accepted but the handshake fails: a protocol abort caused by the TLS error", async () => {
    const { client, server } = await ready(["STARTTLS"]);
    const [abort] = await Promise.all([
      abortOf(client.startTls({})),
      (async () => {
        await server.expect("STARTTLS");
        await server.send("220 2.0.0 Ready to start TLS");
        await server.expectClosed();
      })(),
    ]);
    assert.equal(abort.kind, "protocol");
    assert.match(abort.text, /^4\.7\.0 STARTTLS failed: /);
    assert.ok(abort.cause instanceof TlsHandshakeError);
  });
});
