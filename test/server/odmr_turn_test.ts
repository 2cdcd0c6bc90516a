/**
 * The ATRN turn (RFC 2645 5.2.1, DESIGN.md 6): after `250` the test peer plays the customer's SMTP
 * server on the SAME socket. Per-recipient outcomes, hostile customers (PROTOCOL.md 7 item 21),
 * TLS kept across the turn, ATRN session records, and one session per domain. Real sockets on
 * 127.0.0.1, the real relay and real SQLite; every test gets its own relay.
 */
import assert from "node:assert/strict";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, it, test } from "node:test";
import type { Config } from "../../src/config/fields.ts";
import { makeTestCert } from "../support/certs.ts";
import type { TestRelay } from "../support/relay.ts";
import { playTranscript, TranscriptPeer } from "../support/transcript.ts";
import {
  cramAuth,
  enqueue,
  messageCount,
  openOdmr,
  outboundRows,
  playCustomer,
  queuedAddresses,
  recipientRows,
  startOdmrRelay,
  unstuff,
  waitFor,
  waitForAtrnAfter,
} from "./odmr_helpers.ts";

let relay: TestRelay | null = null;
afterEach(async () => {
  await relay?.stop();
  relay = null;
});

async function fresh(
  config: Partial<Config> = {},
  cert?: ReturnType<typeof makeTestCert>,
): Promise<TestRelay> {
  relay = await startOdmrRelay({ config, ...(cert ? { cert } : {}) });
  return relay;
}

/** AUTH as alice, ATRN `domains`, expect the 250; returns the peer (now the customer). */
async function turn(r: TestRelay, domains = "example.test", opts: Parameters<typeof openOdmr>[1] = {}) {
  const peer = await openOdmr(opts.implicitTls ? r.odmrsPort : r.odmrPort, { user: "alice", ...opts });
  await peer.sendLine(`ATRN ${domains}`);
  await peer.expect("250 2.0.0 OK now reversing the connection");
  return peer;
}

const BODY = [
  "Subject: dots",
  "",
  "first line",
  ".leading dot",
  ".",
  "..two dots",
  "last line",
  "",
].join("\r\n");

describe("odmr turn: delivery", () => {
  it("transcript: 220 from the customer, EHLO, MAIL/RCPT/DATA with dot-stuffing, QUIT; queue empty", async () => {
    const r = await fresh();
    enqueue(r.store, ["u@example.test"], BODY, "from@remote.test");
    const peer = await turn(r);
    await playTranscript(
      peer,
      `> 220 customer.test ESMTP ready
      < EHLO mx.relay.test
      > 250-customer.test hello
      > 250 8BITMIME
      < MAIL FROM:<from@remote.test>*
      > 250 2.1.0 Ok
      < RCPT TO:<u@example.test>
      > 250 2.1.5 Ok
      < DATA
      > 354 go ahead
      < Subject: dots
      <
      < first line
      < ..leading dot
      < ..
      < ...two dots
      < last line
      < .
      > 250 2.0.0 Ok queued
      < QUIT
      > 221 2.0.0 Bye
      <close`,
    );
    peer.close();
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "turned");
    assert.equal(rec.delivered, 1);
    assert.equal(rec.tls, false);
    assert.equal(rec.username, "alice");
    assert.equal(messageCount(r), 0);
    assert.deepEqual(recipientRows(r), []);
  });

  it("several messages over two domains: byte-exact bodies, only granted domains' recipients", async () => {
    const r = await fresh();
    const bodies = [BODY, "Subject: two\r\n\r\nplain\r\n", "Subject: three\r\n\r\n.\r\n.x\r\n"];
    enqueue(r.store, ["x@a.test", "y@b.test", "z@other.test"], bodies[0]!);
    enqueue(r.store, ["w@b.test"], bodies[1]!);
    enqueue(r.store, ["v@example.test"], bodies[2]!);
    const peer = await turn(r, "a.test,b.test");
    const log = await playCustomer(peer);
    assert.equal(log.quit, true);
    assert.equal(log.messages.length, 2);
    assert.equal(unstuff(log.messages[0]!.lines), bodies[0]);
    assert.deepEqual(log.messages[0]!.rcpts, ["RCPT TO:<x@a.test>", "RCPT TO:<y@b.test>"]);
    assert.equal(unstuff(log.messages[1]!.lines), bodies[1]);
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "turned");
    assert.equal(rec.delivered, 3);
    assert.deepEqual(queuedAddresses(r), ["v@example.test", "z@other.test"]);
  });

  it("a 5xx to one recipient fails only that one; the others are delivered", async () => {
    const r = await fresh();
    enqueue(
      r.store,
      ["good@example.test", "bad@example.test", "good2@example.test"],
      "Subject: a\r\n\r\nb\r\n",
    );
    const peer = await turn(r);
    const log = await playCustomer(peer, {
      rcpt: (l) => (l.includes("bad@") ? "550 5.1.1 no such user" : "250 2.1.5 Ok"),
    });
    assert.equal(log.messages.length, 1);
    const rec = await waitForAtrnAfter(r, 0);
    assert.deepEqual([rec.delivered, rec.deferred, rec.failed, rec.outcome], [2, 0, 1, "turned"]);
    // The refused recipient is reported to the sender and leaves the queue with its message.
    await waitFor(() => recipientRows(r).length === 0, "the failed recipient to leave the queue");
    const dsns = outboundRows(r);
    assert.deepEqual(dsns.map((d) => [d.kind, d.mail_from, d.rcpt]), [["dsn", "", "sender@remote.test"]]);
    assert.match(
      dsns[0]!.body,
      /Final-Recipient: rfc822; bad@example\.test\r\nAction: failed\r\nStatus: 5\.1\.1\r\n/,
    );
    assert.match(dsns[0]!.body, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user/);
    assert.doesNotMatch(dsns[0]!.body, /good@example\.test>?\r\nAction/);
  });

  it("a 4xx to RCPT keeps that recipient queued", async () => {
    const r = await fresh();
    enqueue(r.store, ["later@example.test", "now@example.test"], "Subject: a\r\n\r\nb\r\n");
    const peer = await turn(r);
    await playCustomer(peer, {
      rcpt: (l) => (l.includes("later@") ? "451 4.3.0 try later" : "250 2.1.5 Ok"),
    });
    const rec = await waitForAtrnAfter(r, 0);
    assert.deepEqual([rec.delivered, rec.deferred, rec.failed], [1, 1, 0]);
    assert.deepEqual(queuedAddresses(r), ["later@example.test"]);
    assert.equal(recipientRows(r)[0]!.last_code, 451);
  });

  for (
    const [name, script, status] of [
      ["4xx to DATA keeps it queued", { data: () => "451 4.3.0 not now" }, "queued"],
      ["5xx to DATA fails it", { data: () => "554 5.3.0 no" }, "failed"],
      ["4xx to end-of-data keeps it queued", { end: () => "452 4.3.1 full" }, "queued"],
      ["5xx to end-of-data fails it", { end: () => "554 5.6.0 spam" }, "failed"],
    ] as const
  ) {
    it(`${name}; the next message still goes out`, async () => {
      const r = await fresh();
      enqueue(r.store, ["first@example.test"], "Subject: 1\r\n\r\none\r\n");
      enqueue(r.store, ["second@example.test"], "Subject: 2\r\n\r\ntwo\r\n");
      const peer = await turn(r);
      let n = 0;
      await playCustomer(peer, {
        ...("data" in script ? { data: () => (n++ === 0 ? script.data() : "354 go") } : {}),
        ...("end" in script ? { end: (_m, i) => (i === 0 ? script.end() : "250 2.0.0 Ok") } : {}),
      });
      const rec = await waitForAtrnAfter(r, 0);
      assert.equal(rec.delivered, 1);
      assert.equal(rec.outcome, "turned");
      if (status === "queued") {
        assert.deepEqual(recipientRows(r).map((x) => [x.address, x.status]), [[
          "first@example.test",
          status,
        ]]);
      } else {
        // Failed: reported to the sender, then gone from the queue.
        await waitFor(() => recipientRows(r).length === 0, "the failed recipient to leave the queue");
        assert.deepEqual(outboundRows(r).map((d) => d.rcpt), ["sender@remote.test"]);
      }
    });
  }

  it("the customer drops mid-DATA: the unconfirmed message stays queued, the confirmed one is gone", async () => {
    const r = await fresh();
    enqueue(r.store, ["one@example.test"], "Subject: 1\r\n\r\none\r\n");
    enqueue(r.store, ["two@example.test"], "Subject: 2\r\n\r\n" + "x".repeat(200_000) + "\r\n");
    enqueue(r.store, ["three@example.test"], "Subject: 3\r\n\r\nthree\r\n");
    const peer = await turn(r);
    await playCustomer(peer, { afterDataStart: (i) => (i === 1 ? "drop" : undefined) });
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "error");
    assert.equal(rec.delivered, 1);
    assert.deepEqual(queuedAddresses(r), ["three@example.test", "two@example.test"]);
  });

  it("the customer never greets: the session ends at the greeting timeout, everything stays queued", async () => {
    const r = await fresh({ atrnGreetingTimeout: 300 });
    enqueue(r.store, ["u@example.test"], "Subject: 1\r\n\r\none\r\n");
    const peer = await turn(r);
    await peer.expectClose(5000);
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "error");
    assert.match(rec.detail ?? "", /timeout/i);
    assert.deepEqual(queuedAddresses(r), ["u@example.test"]);
  });

  it("the customer closes right after 250 (local MTA down): nothing delivered, lease released", async () => {
    const r = await fresh();
    enqueue(r.store, ["u@example.test"], "Subject: 1\r\n\r\none\r\n");
    const peer = await turn(r);
    peer.close();
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "error");
    assert.deepEqual(queuedAddresses(r), ["u@example.test"]);
    // The lease is free again: a new ATRN turns.
    const again = await turn(r);
    const log = await playCustomer(again);
    assert.equal(log.messages.length, 1);
    await waitForAtrnAfter(r, rec.id);
    assert.deepEqual(queuedAddresses(r), []);
  });

  it("endless 250- lines to EHLO: the relay gives up, everything stays queued", async () => {
    const r = await fresh();
    enqueue(r.store, ["u@example.test"], "Subject: 1\r\n\r\none\r\n");
    const peer = await turn(r);
    await peer.sendLine("220 customer.test");
    await peer.expect("EHLO *");
    for (let i = 0; i < 300 && !peer.closed; i++) {
      await peer.sendLine(`250-KEYWORD${i}`).catch(() => {});
    }
    await peer.expectClose(5000);
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "error");
    assert.deepEqual(queuedAddresses(r), ["u@example.test"]);
  });

  it("a huge reply line (64 KB, no end) to MAIL: aborted, everything stays queued", async () => {
    const r = await fresh();
    enqueue(r.store, ["u@example.test"], "Subject: 1\r\n\r\none\r\n");
    const peer = await turn(r);
    await peer.sendLine("220 customer.test");
    await peer.expect("EHLO *");
    await peer.sendLine("250 customer.test");
    await peer.expect("MAIL FROM:*");
    await peer.send("250 " + "x".repeat(64 * 1024)).catch(() => {});
    await peer.expectClose(5000);
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.outcome, "error");
    assert.deepEqual(queuedAddresses(r), ["u@example.test"]);
  });

  it("a 554 greeting: QUIT, nothing delivered", async () => {
    const r = await fresh();
    enqueue(r.store, ["u@example.test"], "Subject: 1\r\n\r\none\r\n");
    const peer = await turn(r);
    await playTranscript(peer, `> 554 customer.test no service\n< QUIT\n> 221 bye`);
    peer.close();
    await waitForAtrnAfter(r, 0);
    assert.deepEqual(queuedAddresses(r), ["u@example.test"]);
  });

  it("mail that arrives during the session goes out before QUIT", async () => {
    const r = await fresh();
    enqueue(r.store, ["one@example.test"], "Subject: 1\r\n\r\none\r\n");
    const peer = await turn(r);
    const log = await playCustomer(peer, {
      end: (_m, i) => {
        if (i === 0) enqueue(r.store, ["late@example.test"], "Subject: late\r\n\r\nlate\r\n");
        return "250 2.0.0 Ok";
      },
    });
    assert.equal(log.messages.length, 2);
    await waitForAtrnAfter(r, 0);
    assert.deepEqual(queuedAddresses(r), []);
  });
});

describe("odmr turn: TLS kept across the turn", () => {
  const cert = makeTestCert();

  it("STARTTLS before AUTH: the reversed session runs inside the same TLS session", async () => {
    const r = await fresh({}, cert);
    enqueue(r.store, ["u@example.test"], BODY);
    const peer = await TranscriptPeer.connect(r.odmrPort);
    await playTranscript(
      peer,
      `< 220 *
        > EHLO customer.test
        < 250-*
        < 250-*
        < 250-STARTTLS
        < 250-*
        < 250-*
        < 250 *
        > STARTTLS
        < 220 *
        !tls
        > EHLO customer.test
        < 250-*
        < 250-*
        < 250-*
        < 250-*
        < 250 *`,
      { ca: cert.caPem },
    );
    assert.match(await cramAuth(peer, "alice", "alice-secret"), /^235 /);
    await peer.sendLine("ATRN example.test");
    await peer.expect("250 *");
    assert.equal((peer.socket as TLSSocket).encrypted, true);
    const log = await playCustomer(peer);
    assert.equal(unstuff(log.messages[0]!.lines), BODY);
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.tls, true);
    assert.equal(rec.outcome, "turned");
    assert.deepEqual(queuedAddresses(r), []);
  });

  it("implicit TLS (odmrs): the reversed session runs inside the TLS session", async () => {
    const r = await fresh({}, cert);
    enqueue(r.store, ["u@example.test"], BODY);
    const peer = await turn(r, "example.test", { implicitTls: true, ca: cert.caPem });
    const log = await playCustomer(peer);
    assert.equal(unstuff(log.messages[0]!.lines), BODY);
    const rec = await waitForAtrnAfter(r, 0);
    assert.equal(rec.tls, true);
    assert.equal(rec.delivered, 1);
    assert.deepEqual(queuedAddresses(r), []);
  });
});

describe("odmr turn: one session per domain", () => {
  it("a second ATRN for a busy domain gets a single 451 line; nothing is delivered twice", async () => {
    const r = await fresh();
    enqueue(r.store, ["u1@example.test"], "Subject: 1\r\n\r\none\r\n");
    enqueue(r.store, ["u2@example.test", "w@a.test"], "Subject: 2\r\n\r\ntwo\r\n");
    const first = await turn(r);
    // The first customer greets and answers EHLO, then holds the session at MAIL.
    await playTranscript(first, `> 220 customer.test\n< EHLO *\n> 250 customer.test\n< MAIL FROM:*`);

    const second = await openOdmr(r.odmr, { user: "alice" });
    await second.sendLine("ATRN example.test");
    await second.expect("451 4.3.0 Unable to process ATRN request now");
    await second.sendLine("ATRN a.test,example.test");
    await second.expect("451 4.3.0 *");
    await second.sendLine("NOOP");
    await second.expect("250 2.0.0 Ok");
    assert.equal(r.relay.state.atrnSessions.get("busy"), 2);
    // A domain the first session does not hold is not blocked.
    await second.sendLine("ATRN a.test");
    await second.expect("250 *");
    const secondLog = await playCustomer(second);
    assert.deepEqual(secondLog.messages.map((m) => m.rcpts), [["RCPT TO:<w@a.test>"]]);

    // The first session goes on and delivers everything for example.test.
    await first.sendLine("250 2.1.0 Ok");
    const firstLog = await playCustomer2(first);
    assert.equal(firstLog, 2);
    await waitFor(() => queuedAddresses(r).length === 0, "the first session to deliver everything");
    await waitFor(
      () => r.relay.state.activeOdmrSessions === 0,
      "both sessions to end (their leases with them)",
    );

    // After the first ends a new ATRN finds no mail, then only new mail.
    const third = await openOdmr(r.odmr, { user: "alice" });
    await third.sendLine("ATRN example.test");
    await third.expect("453 *");
    enqueue(r.store, ["new@example.test"], "Subject: new\r\n\r\nnew\r\n");
    await third.sendLine("ATRN example.test");
    await third.expect("250 *");
    const thirdLog = await playCustomer(third);
    assert.deepEqual(thirdLog.messages.map((m) => m.rcpts), [["RCPT TO:<new@example.test>"]]);
    assert.deepEqual(queuedAddresses(r), []);
    // u1, u2, w and new: each delivered exactly once over the three turned sessions.
    const delivered = () =>
      r.store.recentAtrnSessions(20).filter((s) => s.outcome === "turned").reduce(
        (n, s) => n + s.delivered,
        0,
      );
    await waitFor(
      () => r.store.recentAtrnSessions(20).filter((s) => s.outcome === "turned").length === 3,
      "3 sessions",
    );
    assert.equal(delivered(), 4);
  });
});

/**
 * Continues a customer whose MAIL was just answered: answers RCPT/DATA/content/QUIT, returns the
 * number of messages completed.
 */
async function playCustomer2(peer: Awaited<ReturnType<typeof openOdmr>>): Promise<number> {
  let messages = 0;
  for (;;) {
    const line = await peer.readLine();
    if (line === null) return messages;
    if (/^MAIL /.test(line)) await peer.sendLine("250 2.1.0 Ok");
    else if (/^RCPT /.test(line)) await peer.sendLine("250 2.1.5 Ok");
    else if (line === "DATA") {
      await peer.sendLine("354 go");
      while ((await peer.readLine()) !== ".");
      messages++;
      await peer.sendLine("250 2.0.0 Ok");
    } else if (line === "QUIT") {
      await peer.sendLine("221 2.0.0 Bye");
      peer.close();
      return messages;
    } else await peer.sendLine("250 Ok");
  }
}

test("a customer that resets the connection right after ATRN does not keep its domains busy", async () => {
  const relay = await startOdmrRelay();
  try {
    enqueue(relay.store, ["u@example.test"], "Subject: x\r\n\r\nbody\r\n");
    const first = await openOdmr(relay.odmrPort, { user: "alice" });
    await first.sendLine("ATRN example.test");
    first.socket.resetAndDestroy();
    // The lease must be released (either the 250 failed to go out, or the delivery saw the drop).
    let answer = "";
    for (let attempt = 0; attempt < 40; attempt++) {
      const peer = await openOdmr(relay.odmrPort, { user: "alice" });
      await peer.sendLine("ATRN example.test");
      answer = (await peer.readLine()) ?? "";
      peer.close();
      if (!answer.startsWith("451")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(answer, /^250 /, "the domain is free again");
  } finally {
    await relay.stop();
  }
});
