/**
 * Intake MX (port 25) transcript tests: normal flows, command errors, recipient policy, DSN
 * parameters, Received header and byte-identical storage. Real sockets on 127.0.0.1, the real relay
 * (startRelay) and real SQLite.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { makeTestCert } from "../support/certs.ts";
import { startTestRelay, type TestRelay } from "../support/relay.ts";
import { runTranscript, TranscriptPeer } from "../support/transcript.ts";
import {
  allMessages,
  allRecipients,
  bodyBytes,
  bodyText,
  EHLO_REPLY,
  lastMessageId,
  messageCount,
  OPEN,
  query,
  splitReceived,
} from "./intake_helpers.ts";

describe("intake: normal flows", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startTestRelay({ odmr: false });
  });
  after(() => relay.stop());

  it("greets, answers EHLO with the exact keyword list (no STARTTLS without a cert) and QUIT", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 mx.relay.test ESMTP odmr-relay
      > EHLO client.test
      < 250-mx.relay.test Hello
      < 250-PIPELINING
      < 250-SIZE 67108864
      < 250-8BITMIME
      < 250-ENHANCEDSTATUSCODES
      < 250-SMTPUTF8
      < 250 DSN
      > QUIT
      < 221 2.0.0 Bye
      <close
    `,
    );
  });

  it("accepts a message and queues it with the right recipient", async () => {
    const before = messageCount(relay);
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<sender@remote.test>
      < 250 2.1.0 Ok
      > RCPT TO:<user@example.test>
      < 250 2.1.5 Ok
      > DATA
      < 354 *
      > Subject: hello
      >
      > body
      > .
      < 250 2.0.0 Ok: queued as *
      > QUIT
      < 221 2.0.0 Bye
      <close
    `,
    );
    assert.equal(messageCount(relay), before + 1);
    const id = lastMessageId(relay);
    const msg = allMessages(relay).find((m) => m.id === id)!;
    assert.equal(msg.mail_from, "sender@remote.test");
    assert.equal(msg.client_helo, "client.test");
    const rcpts = allRecipients(relay).filter((r) => r.message_id === id);
    assert.deepEqual(rcpts.map((r) => [r.address, r.domain]), [["user@example.test", "example.test"]]);
  });

  it("HELO: single-line 250 and a message received WITH SMTP", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > HELO old.client.test
      < 250 mx.relay.test
      > MAIL FROM:<>
      < 250 2.1.0 Ok
      > RCPT TO:<user@example.test>
      < 250 2.1.5 Ok
      > DATA
      < 354 *
      > Subject: helo
      > .
      < 250 2.0.0 Ok: queued as *
      > QUIT
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    assert.equal(allMessages(relay).find((m) => m.id === id)!.mail_from, "");
    assert.match(
      bodyText(relay, id),
      /^Received: from old\.client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.relay\.test \(odmr-relay\) with SMTP id /,
    );
  });

  it("RSET, NOOP, VRFY 252, HELP 214 work before and after EHLO", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > NOOP
      < 250 2.0.0 Ok
      > VRFY user@example.test
      < 252 2.*
      > HELP
      < 214 2.0.0 *
      > RSET
      < 250 2.0.0 Ok
      > EHLO client.test
      ${EHLO_REPLY}
      > MAIL FROM:<a@remote.test>
      < 250 2.1.0 Ok
      > RSET
      < 250 2.0.0 Ok
      > RCPT TO:<user@example.test>
      < 503 5.5.1 Error: need MAIL command
      > NOOP anything at all
      < 250 2.0.0 Ok
      > VRFY
      < 501 5.5.4 Syntax: VRFY <user or mailbox>
      > RSET now
      < 501 5.5.4 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("503 sequence errors keep the session in the same state", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > MAIL FROM:<a@remote.test>
      < 503 5.5.1 Error: send HELO/EHLO first
      > EHLO client.test
      ${EHLO_REPLY}
      > RCPT TO:<user@example.test>
      < 503 5.5.1 Error: need MAIL command
      > DATA
      < 503 5.5.1 Error: need MAIL command
      > MAIL FROM:<a@remote.test>
      < 250 *
      > MAIL FROM:<b@remote.test>
      < 503 5.5.1 Error: nested MAIL command
      > DATA
      < 503 5.5.1 Error: need RCPT command
      > RCPT TO:<x@nowhere.test>
      < 550 5.7.1 *
      > DATA
      < 554 5.5.1 Error: no valid recipients
      > RCPT TO:<user@example.test>
      < 250 *
      > DATA extra
      < 501 5.5.4 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("unknown verbs get 500; ATRN, AUTH, ETRN, EXPN, BDAT on port 25 get 502", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > ATRN example.test
      < 502 5.5.1 *
      > AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==
      < 502 5.5.1 *
      > AUTH CRAM-MD5
      < 502 5.5.1 *
      > ETRN example.test
      < 502 5.5.1 *
      > EXPN staff
      < 502 5.5.1 *
      > BDAT 10 LAST
      < 502 5.5.1 *
      > XYZZY
      < 500 5.5.2 Error: command not recognized
      > STARTTLS
      < 502 5.5.1 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("verbs, FROM:/TO: and domains are case-insensitive; local-part case is preserved", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > ehlo client.test
      ${EHLO_REPLY}
      > mail from:<Sender.Name@Remote.TEST>
      < 250 *
      > rcpt to:<MixedCase.User@EXAMPLE.Test>
      < 250 2.1.5 Ok
      > data
      < 354 *
      > Subject: case
      > .
      < 250 2.0.0 Ok: queued as *
      > quit
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    const r = allRecipients(relay).filter((x) => x.message_id === id);
    assert.equal(r.length, 1);
    assert.equal(r[0]!.address, "MixedCase.User@EXAMPLE.Test");
    assert.equal(r[0]!.domain, "example.test");
    assert.equal(allMessages(relay).find((m) => m.id === id)!.mail_from, "Sender.Name@Remote.TEST");
  });

  it("relay denied 550 5.7.1 for domains that are not hosted", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<someone@gmail.example>
      < 550 5.7.1 Error: relay access denied
      > RCPT TO:<user@sub.example.test>
      < 550 5.7.1 *
      > RCPT TO:<user@example.test.evil>
      < 550 5.7.1 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("postmaster@ every hosted domain is accepted, also with a mailbox list; so is a bare <Postmaster>", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<postmaster@example.test>
      < 250 2.1.5 Ok
      > RCPT TO:<PostMaster@strict.test>
      < 250 2.1.5 Ok
      > RCPT TO:<postmaster@other.test>
      < 250 2.1.5 Ok
      > RCPT TO:<Postmaster>
      < 250 2.1.5 Ok
      > DATA
      < 354 *
      > Subject: pm
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    // RFC 5321 4.5.1: the bare one MUST be accepted; without postmasterAddress it is kept in the
    // relay's own postmaster mailbox (domain key "").
    assert.deepEqual(
      allRecipients(relay).filter((r) => r.message_id === id).map((r) => [r.address, r.domain]),
      [
        ["postmaster@example.test", "example.test"],
        ["PostMaster@strict.test", "strict.test"],
        ["postmaster@other.test", "other.test"],
        ["Postmaster", ""],
      ],
    );
  });

  it("per-domain mailbox list: listed local parts accepted, others 550 5.1.1", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<bob@strict.test>
      < 250 2.1.5 Ok
      > RCPT TO:<Carol@STRICT.test>
      < 250 2.1.5 Ok
      > RCPT TO:<mallory@strict.test>
      < 550 5.1.1 *
      > RCPT TO:<anything@example.test>
      < 250 2.1.5 Ok
      > QUIT
      < 221 *
    `,
    );
  });

  it("SIZE declared over the limit gets 552 5.3.4 at MAIL", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test> SIZE=999999999999
      < 552 5.3.4 *
      > MAIL FROM:<a@remote.test> SIZE=1000
      < 250 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("DSN parameters are stored (ENVID, RET on the message; NOTIFY, ORCPT per recipient)", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test> RET=HDRS ENVID=QQ+2B314159
      < 250 *
      > RCPT TO:<one@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;one+40example.test
      < 250 *
      > RCPT TO:<two@example.test> NOTIFY=NEVER
      < 250 *
      > RCPT TO:<three@example.test>
      < 250 *
      > DATA
      < 354 *
      > Subject: dsn
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    const m = allMessages(relay).find((x) => x.id === id)!;
    assert.equal(m.envid, "QQ+2B314159"); // kept as xtext, passed on unchanged (RFC 3461 4.4)
    assert.equal(m.ret, "HDRS");
    const r = allRecipients(relay).filter((x) => x.message_id === id);
    assert.deepEqual(r.map((x) => [x.address, x.notify, x.orcpt]), [
      ["one@example.test", "SUCCESS,FAILURE", "rfc822;one@example.test"],
      ["two@example.test", "NEVER", null],
      ["three@example.test", null, null],
    ]);
  });

  it("bad DSN parameters: duplicate 501, bad NOTIFY 501, unknown 555", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test> RET=FULL RET=HDRS
      < 501 5.5.4 *
      > MAIL FROM:<a@remote.test> RET=SOME
      < 501 5.5.4 *
      > MAIL FROM:<a@remote.test> FOO=BAR
      < 555 5.5.4 *
      > MAIL FROM:<a@remote.test> BODY=8BITMIME SMTPUTF8
      < 250 *
      > RCPT TO:<x@example.test> NOTIFY=NEVER,SUCCESS
      < 501 5.5.4 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("Received header: EHLO name, [IP], ESMTP, id; `for` only with exactly one recipient", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<only@example.test>
      < 250 *
      > DATA
      < 354 *
      > Subject: one
      > .
      < 250 *
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<first@example.test>
      < 250 *
      > RCPT TO:<second@example.test>
      < 250 *
      > DATA
      < 354 *
      > Subject: two
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    const one = splitReceived(bodyText(relay, id - 1)).received;
    const two = splitReceived(bodyText(relay, id)).received;
    assert.match(
      one,
      /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.relay\.test \(odmr-relay\) with ESMTP id [\w-]+\.1\r\n\tfor <only@example\.test>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n$/,
    );
    assert.doesNotMatch(two, /\bfor\b/);
    assert.match(two, /with ESMTP id [\w-]+\.2; /);
  });

  it("loop protection: too many Received headers gives 554 5.4.6 and nothing is queued", async () => {
    const before = messageCount(relay);
    const hops = Array.from(
      { length: relay.config.smtpMaxReceivedHeaders },
      (_, i) => `      > Received: from hop${i}.test by hop${i + 1}.test; Tue, 3 Jun 2025 10:15:02 +0000`,
    ).join("\n");
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<user@example.test>
      < 250 *
      > DATA
      < 354 *
${hops}
      > Subject: loop
      >
      > body
      > .
      < 554 5.4.6 *
      > QUIT
      < 221 *
    `,
    );
    assert.equal(messageCount(relay), before);
  });

  it("a message over the size limit is refused 552 after the data, nothing queued", async () => {
    const small = await startTestRelay({ odmr: false, config: { smtpMaxMessageSize: 65536 } });
    try {
      const line = "x".repeat(998);
      const body = Array.from({ length: 80 }, () => `      > ${line}`).join("\n");
      await runTranscript(
        small.smtpPort,
        `
        < 220 *
        > EHLO client.test
        < 250-*
        < 250-PIPELINING
        < 250-SIZE 65536
        < 250-*
        < 250-*
        < 250-*
        < 250 DSN
        > MAIL FROM:<a@remote.test>
        < 250 *
        > RCPT TO:<user@example.test>
        < 250 *
        > DATA
        < 354 *
${body}
        > .
        < 552 5.3.4 *
        > NOOP
        < 250 *
        > QUIT
        < 221 *
      `,
      );
      assert.equal(messageCount(small), 0);
    } finally {
      await small.stop();
    }
  });

  it("recipients limit: 100 accepted, the 101st gets 452 4.5.3, the message keeps 100", async () => {
    const r = await startTestRelay({ odmr: false, config: { smtpMaxRecipients: 100 } });
    try {
      const peer = await TranscriptPeer.connect(r.smtpPort);
      await peer.expect("220 *");
      await peer.sendLine("EHLO client.test");
      await peer.readReply();
      await peer.sendLine("MAIL FROM:<a@remote.test>");
      await peer.expect("250 *");
      // Pipelined, as PIPELINING allows.
      const rcpts = Array.from({ length: 101 }, (_, i) => `RCPT TO:<u${i}@example.test>\r\n`).join("");
      await peer.send(rcpts, "RCPT TO x 101");
      for (let i = 0; i < 100; i++) await peer.expect("250 2.1.5 *");
      await peer.expect("452 4.5.3 Error: too many recipients");
      await peer.sendLine("DATA");
      await peer.expect("354 *");
      await peer.send("Subject: many\r\n\r\nhi\r\n.\r\n");
      await peer.expect("250 *");
      peer.close();
      const id = lastMessageId(r);
      assert.equal(
        query<{ n: number }>(r, "SELECT count(*) AS n FROM recipients WHERE message_id = ?", id)[0]!.n,
        100,
      );
    } finally {
      await r.stop();
    }
  });

  it("EHLO/HELO syntax: empty or multi-word argument gets 501", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > EHLO
      < 501 5.5.4 *
      > HELO
      < 501 5.5.4 *
      > EHLO two words
      < 501 5.5.4 *
      > EHLO [127.0.0.1]
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 DSN
      > QUIT
      < 221 *
    `,
    );
  });

  it("EHLO resets an open transaction", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > EHLO client.test
      ${EHLO_REPLY}
      > RCPT TO:<user@example.test>
      < 503 5.5.1 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("pipelined MAIL/RCPT/RCPT/DATA after EHLO are answered in order", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      > RCPT TO:<p1@example.test>
      > RCPT TO:<p2@nowhere.test>
      > DATA
      < 250 2.1.0 *
      < 250 2.1.5 *
      < 550 5.7.1 *
      < 354 *
      > Subject: pipelined
      > .
      > QUIT
      < 250 2.0.0 Ok: queued as *
      < 221 *
      <close
    `,
    );
  });

  it("byte-identical: stored body after our Received line equals what was sent (dot-stuffing, 8-bit, long lines)", async () => {
    const enc = new TextEncoder();
    const lines = [
      "From: Sender <a@remote.test>",
      "To: user@example.test",
      "Subject: =?UTF-8?Q?b=C3=BCro?=",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 8bit",
      "",
      "Grüße aus Köln — 日本語 ✓",
      ".leading dot",
      "..two leading dots",
      ".",
      "a line with trailing spaces   ",
      "\ttab-indented",
      "y".repeat(997),
      "",
      "",
      "last line",
    ];
    const original = enc.encode(lines.join("\r\n") + "\r\n");
    // Wire form: dot-stuffed.
    const stuffed = lines.map((l) => (l.startsWith(".") ? "." + l : l)).join("\r\n") + "\r\n.\r\n";
    const bytes = new Uint8Array([...original, 0xe9, 0xff, 0x80, 0x0d, 0x0a]);
    const wire = new Uint8Array([
      ...enc.encode(stuffed.slice(0, -3)),
      0xe9,
      0xff,
      0x80,
      0x0d,
      0x0a,
      ...enc.encode(".\r\n"),
    ]);
    const peer = await TranscriptPeer.open(relay.smtp);
    try {
      await peer.expect("220 *");
      await peer.sendLine("EHLO client.test");
      await peer.readReply();
      await peer.sendLine("MAIL FROM:<a@remote.test> BODY=8BITMIME");
      await peer.expect("250 *");
      await peer.sendLine("RCPT TO:<user@example.test>");
      await peer.expect("250 *");
      await peer.sendLine("DATA");
      await peer.expect("354 *");
      // Split into odd-sized writes so CRLF, dots and UTF-8 sequences straddle chunk boundaries.
      for (let i = 0; i < wire.length; i += 7) {
        await peer.send(
          wire.subarray(i, Math.min(i + 7, wire.length)),
          `(${Math.min(7, wire.length - i)} bytes)`,
        );
      }
      await peer.expect("250 2.0.0 Ok: queued as *");
      await peer.sendLine("QUIT");
      await peer.expect("221 *");
    } finally {
      peer.close();
    }
    const id = lastMessageId(relay);
    const stored = bodyBytes(relay, id);
    const { received } = splitReceived(new TextDecoder("latin1").decode(stored));
    const rest = stored.subarray(received.length);
    assert.equal(rest.length, bytes.length);
    assert.deepEqual(Buffer.from(rest), Buffer.from(bytes));
    const m = allMessages(relay).find((x) => x.id === id)!;
    assert.equal(m.eight_bit, 1);
    assert.equal(m.body_type, "8BITMIME");
    assert.equal(m.size, stored.length);
  });

  it("an empty message (DATA then the dot at once) is stored as our Received line only", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<user@example.test>
      < 250 *
      > DATA
      < 354 *
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const { rest } = splitReceived(bodyText(relay, lastMessageId(relay)));
    assert.equal(rest, "");
  });

  it("duplicate RCPT of the same address is stored once", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<dup@example.test>
      < 250 *
      > RCPT TO:<dup@example.test>
      < 250 *
      > DATA
      < 354 *
      > .
      < 250 *
    `,
    );
    const id = lastMessageId(relay);
    assert.equal(allRecipients(relay).filter((r) => r.message_id === id).length, 1);
  });
});

describe("intake: internationalized domains (IDNA)", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startTestRelay({ odmr: false }, [
      { username: "bob", password: "bob-secret", domains: ["xn--bb-fka.test", "kilo.test"] },
    ]);
  });
  after(() => relay.stop());

  it("a U-label recipient matches its hosted A-label and is queued under the A-label", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<s@remote.test> SMTPUTF8
      < 250 *
      > RCPT TO:<user@böb.test>
      < 250 *
      > RCPT TO:<other@XN--BB-FKA.test>
      < 250 *
      > DATA
      < 354 *
      > .
      < 250 *
    `,
    );
    const id = lastMessageId(relay);
    assert.deepEqual(
      allRecipients(relay).filter((r) => r.message_id === id).map((r) => [r.address, r.domain]),
      [["user@böb.test", "xn--bb-fka.test"], ["other@XN--BB-FKA.test", "xn--bb-fka.test"]],
    );
  });

  it("look-alikes that UTS #46 would fold (Kelvin sign, fullwidth) and bad Punycode are refused", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<s@remote.test> SMTPUTF8
      < 250 *
      > RCPT TO:<user@\u212Ailo.test>
      < 501 5.1.3 *
      > RCPT TO:<user@ｋilo.test>
      < 501 5.1.3 *
      > RCPT TO:<user@xn--zz.test>
      < 501 5.1.3 *
      > RCPT TO:<user@kilo.test>
      < 250 *
      > QUIT
      < 221 *
    `,
    );
  });
});

describe("intake: listener full of idle connections", () => {
  it("an idle stranger's connection makes room for a sender from another address, even one holding MAIL", async () => {
    const { connect } = await import("node:net");
    const relay = await startTestRelay({
      odmr: false,
      config: { smtpMaxConnections: 4, smtpMaxConnectionsPerIp: 4 },
    });
    const sockets: import("node:net").Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const s = connect({ host: "127.0.0.1", port: relay.smtpPort, localAddress: "127.0.40.1" });
        s.on("error", () => {});
        sockets.push(s);
        await new Promise((r) => s.once("data", r));
        // An open transaction does not pin the slot (only a message in DATA does).
        s.write("EHLO flood.test\r\n");
        await new Promise((r) => s.once("data", r));
        s.write("MAIL FROM:<x@flood.test>\r\n");
        await new Promise((r) => s.once("data", r));
      }
      const peer = await TranscriptPeer.connect(relay.smtpPort, { localAddress: "127.0.40.2" });
      await peer.expect("220 *");
      // Full again (3 + 1): the flooder cannot evict its own connections, so its next one is refused.
      const fifth = await TranscriptPeer.connect(relay.smtpPort, { localAddress: "127.0.40.1" });
      await fifth.expect("421 4.7.0 *");
      fifth.close();
      peer.close();
    } finally {
      for (const s of sockets) s.destroy();
      await relay.stop();
    }
  });
});

describe("intake: STARTTLS", () => {
  let relay: TestRelay;
  const cert = makeTestCert();
  before(async () => {
    relay = await startTestRelay({ odmr: false, cert });
  });
  after(() => relay.stop());

  it("advertises STARTTLS only with a cert and only before TLS; mail over TLS says ESMTPS", async () => {
    await runTranscript(
      relay.smtpPort,
      `
      < 220 *
      > EHLO client.test
      < 250-mx.relay.test Hello
      < 250-PIPELINING
      < 250-SIZE 67108864
      < 250-8BITMIME
      < 250-ENHANCEDSTATUSCODES
      < 250-SMTPUTF8
      < 250-DSN
      < 250 STARTTLS
      > STARTTLS
      < 220 2.0.0 Ready to start TLS
      !tls
      > MAIL FROM:<a@remote.test>
      < 503 5.5.1 Error: send HELO/EHLO first
      > EHLO client.test
      ${EHLO_REPLY}
      > STARTTLS
      < 554 5.5.1 Error: TLS already active
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<user@example.test>
      < 250 *
      > DATA
      < 354 *
      > Subject: tls
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
      { ca: cert.caPem },
    );
    const id = lastMessageId(relay);
    assert.match(bodyText(relay, id), /with ESMTPS id/);
    assert.equal(allMessages(relay).find((m) => m.id === id)!.tls, 1);
  });

  it("STARTTLS with an argument gets 501 5.5.4", async () => {
    await runTranscript(
      relay.smtpPort,
      `
      < 220 *
      > EHLO client.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 STARTTLS
      > STARTTLS now
      < 501 5.5.4 *
      > QUIT
      < 221 *
    `,
    );
  });
});
