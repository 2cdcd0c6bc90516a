/**
 * PROTOCOL.md 7: every hostile input that applies to port 25 (1-10, 22-25), one named test each,
 * plus every SMTP smuggling variant of PROTOCOL.md 6. Real sockets, the real relay, real SQLite.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, test } from "node:test";
import { makeTestCert } from "../support/certs.ts";
import { startTestRelay, type TestRelay } from "../support/relay.ts";
import { runTranscript, TranscriptPeer } from "../support/transcript.ts";
import {
  allRecipients,
  bodyText,
  EHLO_REPLY,
  lastMessageId,
  messageCount,
  OPEN,
  splitReceived,
} from "./intake_helpers.ts";

const TX = `
  > MAIL FROM:<a@remote.test>
  < 250 *
  > RCPT TO:<user@example.test>
  < 250 *
  > DATA
  < 354 *
`;

describe("intake: hostile inputs (PROTOCOL.md 7)", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startTestRelay({ odmr: false });
  });
  after(() => relay.stop());

  it("#1 bare LF in a command: 500 5.5.2 and close, the rest never executed", async () => {
    await runTranscript(
      relay.smtp,
      String.raw`
      < 220 *
      >> EHLO client.test\nMAIL FROM:<a@remote.test>\r\n
      < 500 5.5.2 Error: bare <LF> received
      <close
    `,
    );
  });

  it("#1 bare CR in a command: 500 5.5.2 and close", async () => {
    const before = messageCount(relay);
    await runTranscript(
      relay.smtp,
      String.raw`${OPEN}
      >> MAIL FROM:<a@remote.test>\rRCPT TO:<user@example.test>\r\n
      < 500 5.5.2 Error: bare <CR> received
      <close
    `,
    );
    assert.equal(messageCount(relay), before);
  });

  for (
    const [name, marker] of [
      ["\\n.\\r\\n", "\\n.\\r\\n"],
      ["\\n.\\n", "\\n.\\n"],
      ["\\r\\n.\\n", "\\r\\n.\\n"],
      ["\\r.\\r\\n", "\\r.\\r\\n"],
      ["\\r\\n.\\r (bare CR after the dot)", "\\r\\n.\\rX\\r\\n"],
      ["\\n..\\n (stuffed look-alike)", "\\n..\\n"],
    ] as const
  ) {
    it(`#2 smuggling ${name} in DATA: not end of data, message refused 550 5.6.0, tail never executed`, async () => {
      const before = messageCount(relay);
      const spoofBefore = allRecipients(relay).filter((r) => r.address === "victim@example.test").length;
      await runTranscript(
        relay.smtp,
        String.raw`${OPEN}
        ${TX}
        >> From: a@remote.test\r\nSubject: legit\r\n\r\nhello${marker}MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nspoofed\r\n.\r\n
        < 550 5.6.0 Error: bare <LF> or <CR> received in message data
        # The smuggled MAIL/RCPT/DATA were body: no 250 2.1.0, 250 2.1.5, 354 follow. NOOP is next.
        > NOOP
        < 250 2.0.0 Ok
        > QUIT
        < 221 *
        <close
      `,
      );
      assert.equal(messageCount(relay), before, "nothing queued");
      assert.equal(
        allRecipients(relay).filter((r) => r.address === "victim@example.test").length,
        spoofBefore,
      );
    });
  }

  it("#2 bare LF inside an otherwise normal body is refused 550 5.6.0 (reject policy, not normalised)", async () => {
    const before = messageCount(relay);
    await runTranscript(
      relay.smtp,
      String.raw`${OPEN}
      ${TX}
      >> Subject: x\r\n\r\nline one\nline two\r\n.\r\n
      < 550 5.6.0 *
      > QUIT
      < 221 *
    `,
    );
    assert.equal(messageCount(relay), before);
  });

  it("#3 NUL in a command: 501 5.5.2 invalid characters, session continues", async () => {
    await runTranscript(
      relay.smtp,
      String.raw`
      < 220 *
      >> EHLO cli\x00ent.test\r\n
      < 501 5.5.2 Error: invalid characters in command
      >> MAIL FROM:<a\x01b@remote.test>\r\n
      < 501 5.5.2 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("#3 NUL in DATA: 554 5.6.0, nothing queued", async () => {
    const before = messageCount(relay);
    await runTranscript(
      relay.smtp,
      String.raw`${OPEN}
      ${TX}
      >> Subject: nul\r\n\r\nbinary\x00here\r\n.\r\n
      < 554 5.6.0 Error: NUL character in message data
      > QUIT
      < 221 *
    `,
    );
    assert.equal(messageCount(relay), before);
  });

  it("#4 a long command line (over the limit, then CRLF): 500 5.5.2 line too long, session continues", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > NOOP ${"x".repeat(5000)}
      < 500 5.5.2 Error: line too long
      > NOOP
      < 250 2.0.0 Ok
      > QUIT
      < 221 *
    `,
    );
  });

  it("#4 10 MB with no CRLF in command mode: 421 and close before it is all buffered", async () => {
    const peer = await TranscriptPeer.connect(relay.smtpPort);
    try {
      await peer.expect("220 *");
      const chunk = new Uint8Array(64 * 1024).fill(0x41);
      let sent = 0;
      // Bounded: at most 10 MB; stop as soon as the server has closed.
      while (sent < 10 * 1024 * 1024 && !peer.closed && !peer.socket.destroyed) {
        const ok = await new Promise<boolean>((resolve) => {
          peer.socket.write(chunk, (error) => resolve(!error));
        });
        if (!ok) break;
        sent += chunk.length;
      }
      await peer.expect("421 4.5.2 mx.relay.test Error: line too long");
      await peer.expectClose();
      assert.ok(sent < 10 * 1024 * 1024 || peer.closed);
    } finally {
      peer.close();
    }
  });

  it("#5 a DATA line longer than the limit: drained to the end, then 554 5.6.0, nothing queued", async () => {
    const before = messageCount(relay);
    await runTranscript(
      relay.smtpPort,
      `${OPEN}
      ${TX}
      > Subject: long
      >
      > ${"L".repeat(relay.config.smtpMaxDataLineLength + 10)}
      > .
      < 554 5.6.0 Error: message line too long
      > NOOP
      < 250 *
    `,
    );
    assert.equal(messageCount(relay), before);
  });

  it("#5 SIZE=huge at MAIL: 552 5.3.4", async () => {
    await runTranscript(
      relay.smtpPort,
      `${OPEN}
      > MAIL FROM:<a@remote.test> SIZE=99999999999999999999
      < 552 5.3.4 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("#5 DATA past the hard byte cap: 421 and close, nothing queued", async () => {
    const small = await startTestRelay({ odmr: false, config: { smtpMaxMessageSize: 65536 } });
    try {
      const peer = await TranscriptPeer.connect(small.smtpPort);
      await peer.expect("220 *");
      await peer.sendLine("EHLO client.test");
      await peer.readReply();
      await peer.sendLine("MAIL FROM:<a@remote.test>");
      await peer.expect("250 *");
      await peer.sendLine("RCPT TO:<user@example.test>");
      await peer.expect("250 *");
      await peer.sendLine("DATA");
      await peer.expect("354 *");
      const line = new TextEncoder().encode("z".repeat(998) + "\r\n");
      // Hard cap is 2 * 64 KiB + 1 MiB raw octets; send up to 4 MiB (bounded) or until closed.
      for (let i = 0; i < 4096 && !peer.closed && !peer.socket.destroyed; i++) {
        const ok = await new Promise<boolean>((r) => peer.socket.write(line, (e) => r(!e)));
        if (!ok) break;
      }
      await peer.expect("421 4.3.4 *");
      await peer.expectClose();
      peer.close();
      assert.equal(messageCount(small), 0);
    } finally {
      await small.stop();
    }
  });

  it("#7 pipelining after HELO (PIPELINING not negotiated): 554 5.5.0 and close", async () => {
    await runTranscript(
      relay.smtpPort,
      `
      < 220 *
      > HELO client.test
      < 250 *
      > MAIL FROM:<a@remote.test>
      > RCPT TO:<user@example.test>
      < 554 5.5.0 Error: SMTP protocol synchronization
      <close
    `,
    );
  });

  it("#7 commands pipelined behind EHLO: 554 5.5.0 and close", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > EHLO client.test
      > MAIL FROM:<a@remote.test>
      < 554 5.5.0 *
      <close
    `,
    );
  });

  it("#7 message data pipelined behind DATA (before 354): 554 5.5.0, close, nothing queued", async () => {
    const before = messageCount(relay);
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<user@example.test>
      < 250 *
      > DATA
      > Subject: too eager
      > .
      < 554 5.5.0 *
      <close
    `,
    );
    assert.equal(messageCount(relay), before);
  });

  it("#9 STARTTLS when TLS is unavailable: 502 (not advertised)", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > STARTTLS
      < 502 5.5.1 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("#10 TLS ClientHello on the plaintext port: 221 2.7.0 and close", async () => {
    await runTranscript(
      relay.smtp,
      String.raw`
      < 220 *
      >> \x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01\x02\x03
      < 221 2.7.0 *
      <close
    `,
    );
  });

  for (
    const request of [
      "GET / HTTP/1.1",
      "POST /submit HTTP/1.0",
      "CONNECT mail.example:25 HTTP/1.1",
      "Host: mx.relay.test",
    ]
  ) {
    it(`#10 HTTP on the SMTP port (${request.split(" ")[0]}): 221 2.7.0 and close`, async () => {
      await runTranscript(
        relay.smtp,
        `
        < 220 *
        > ${request}
        < 221 2.7.0 Error: this is an SMTP service, closing connection
        <close
      `,
      );
    });
  }

  it("#22 RCPT harvesting: after the error limit 421 4.7.0 too many errors and close", async () => {
    const lines: string[] = [];
    for (let i = 0; i < relay.config.smtpMaxErrors; i++) {
      lines.push(`> RCPT TO:<guess${i}@strict.test>`, "< 550 5.1.1 *");
    }
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      ${lines.join("\n")}
      > RCPT TO:<guess-last@strict.test>
      < 421 4.7.0 mx.relay.test Error: too many errors
      <close
    `,
    );
  });

  it("#23 source route is accepted and stripped to the final mailbox", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<@relay1.test,@relay2.test:sender@remote.test>
      < 250 *
      > RCPT TO:<@hop.test:routed@example.test>
      < 250 *
      > DATA
      < 354 *
      > .
      < 250 *
    `,
    );
    const id = lastMessageId(relay);
    assert.deepEqual(allRecipients(relay).filter((r) => r.message_id === id).map((r) => r.address), [
      "routed@example.test",
    ]);
  });

  it("#23 quoted local parts with @, quote, backslash and space are parsed and kept", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<"odd sender"@remote.test>
      < 250 *
      > RCPT TO:<"john smith"@example.test>
      < 250 *
      > RCPT TO:<"b\\"c\\\\d"@example.test>
      < 250 *
      > RCPT TO:<"plain"@example.test>
      < 250 *
      > DATA
      < 354 *
      > .
      < 250 *
    `,
    );
    const id = lastMessageId(relay);
    assert.deepEqual(allRecipients(relay).filter((r) => r.message_id === id).map((r) => r.address), [
      '"john smith"@example.test',
      '"b\\"c\\\\d"@example.test',
      "plain@example.test",
    ]);
  });

  // The customer's MTA, trusting the loopback connection from fetchmail, might relay these onwards.
  for (const local of ["user%other.net", "other.net!user", '"user@other.net"', '"a@b\\"c"']) {
    it(`routing syntax in the local part (${local}) is refused 550 5.7.1 by default`, async () => {
      await runTranscript(
        relay.smtp,
        `${OPEN}
        > MAIL FROM:<s@remote.test>
        < 250 *
        > RCPT TO:<${local}@example.test>
        < 550 5.7.1 *
        > QUIT
        < 221 *
      `,
      );
    });
  }

  it("routing syntax is accepted for a domain that allows it (domain set --allow-routing-syntax yes)", async () => {
    relay.store.updateDomain("example.test", { allowRoutingSyntax: true });
    try {
      await runTranscript(
        relay.smtp,
        `${OPEN}
        > MAIL FROM:<s@remote.test>
        < 250 *
        > RCPT TO:<user%other.net@example.test>
        < 250 *
        > RCPT TO:<"a@b"@example.test>
        < 250 *
        > DATA
        < 354 *
        > .
        < 250 *
      `,
      );
      const id = lastMessageId(relay);
      assert.deepEqual(allRecipients(relay).filter((r) => r.message_id === id).map((r) => r.address), [
        "user%other.net@example.test",
        '"a@b"@example.test',
      ]);
    } finally {
      relay.store.updateDomain("example.test", { allowRoutingSyntax: false });
    }
  });

  it("#23 <> in RCPT 501 5.1.3; missing angle brackets 501 5.5.4; path over 256 octets 501", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:a@remote.test
      < 501 5.5.4 *
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<>
      < 501 5.1.3 *
      > RCPT TO:user@example.test
      < 501 5.5.4 *
      > RCPT TO:<${"a".repeat(64)}@${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.example.test>
      < 501 5.* *
      > RCPT TO:<not-a-customer@elsewhere.test>
      < 550 5.7.1 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("#23 UTF-8 addresses without SMTPUTF8: 550 5.6.7 on MAIL, 553 5.6.7 on RCPT; accepted with it", async () => {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<jöran@remote.test>
      < 550 5.6.7 Must declare SMTPUTF8 to send unicode address
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<müller@example.test>
      < 553 5.6.7 Must declare SMTPUTF8 to send unicode address
      > RSET
      < 250 *
      > MAIL FROM:<jöran@remote.test> SMTPUTF8
      < 250 *
      > RCPT TO:<müller@example.test>
      < 250 *
      > DATA
      < 354 *
      > Subject: utf8
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    assert.deepEqual(allRecipients(relay).filter((r) => r.message_id === id).map((r) => r.address), [
      "müller@example.test",
    ]);
    assert.match(bodyText(relay, id), /with UTF8SMTP id/);
  });

  it("#23 UTF-8 in a command before EHLO (no SMTPUTF8 advertised) is refused", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > HELO client.test
      < 250 *
      > MAIL FROM:<jöran@remote.test>
      < 501 5.5.2 *
      > QUIT
      < 221 *
    `,
    );
  });

  it("#24 header injection via the EHLO name: sanitised into a comment of our Received line", async () => {
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > EHLO evil.test)(by:x;Bcc:victim@example.test\\
      ${EHLO_REPLY}
      ${TX}
      > Subject: inj
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const body = bodyText(relay, lastMessageId(relay));
    const { received } = splitReceived(body);
    assert.match(
      received,
      /^Received: from \[127\.0\.0\.1\] \(helo=evil\.test\\\)\\\(by:x;Bcc:victim@example\.test\\\\\)\r\n\tby mx\.relay\.test/,
    );
    assert.equal(
      received.split("\r\n").filter((l) => l !== "").every((l, i) => i === 0 || l.startsWith("\t")),
      true,
    );
  });

  it("#24 an over-long EHLO name is capped in the Received line", async () => {
    const name = "a".repeat(63) + "." + "b".repeat(63) + "." + "c".repeat(63) + "." + "d".repeat(63) +
      ".test";
    await runTranscript(
      relay.smtp,
      `
      < 220 *
      > EHLO ${name}
      ${EHLO_REPLY}
      ${TX}
      > .
      < 250 *
    `,
    );
    const { received } = splitReceived(bodyText(relay, lastMessageId(relay)));
    assert.ok(received.split("\r\n").every((l) => l.length <= 998));
    assert.ok(!received.includes(name), "the 260-octet name is not copied whole");
  });

  it("#25 junk-command loop: NOOP/RSET/VRFY beyond the junk limit gets 421 and close", async () => {
    const peer = await TranscriptPeer.open(relay.smtp);
    try {
      await peer.expect("220 *");
      await peer.sendLine("EHLO client.test");
      await peer.readReply();
      const verbs = ["NOOP", "RSET", "VRFY x", "HELP"];
      for (let i = 0; i < relay.config.smtpMaxJunkCommands; i++) {
        await peer.sendLine(verbs[i % verbs.length]!);
        await peer.expect("2* *");
      }
      await peer.sendLine("NOOP");
      await peer.expect("421 4.7.0 *");
      await peer.expectClose();
    } finally {
      peer.close();
    }
  });
});

describe("intake: hostile inputs needing their own relay", () => {
  it("#6 early talker (bytes before the 220): 554 5.5.0 and close", async () => {
    const relay = await startTestRelay({ odmr: false, config: { smtpGreetingDelay: 300 } });
    try {
      await runTranscript(
        relay.smtp,
        `
        > EHLO eager.test
        < 554 5.5.0 Error: SMTP protocol synchronization
        <close
      `,
      );
      // A patient client still gets the greeting after the delay.
      await runTranscript(
        relay.smtp,
        `
        < 220 mx.relay.test *
        > QUIT
        < 221 *
      `,
      );
    } finally {
      await relay.stop();
    }
  });

  it("#8 STARTTLS with plaintext injected in the same packet (CVE-2011-0411): the command is never executed", async () => {
    const cert = makeTestCert();
    const relay = await startTestRelay({ odmr: false, cert });
    try {
      await runTranscript(
        relay.smtp,
        String.raw`
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
        >> STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<user@example.test>\r\n
        < 554 5.5.0 Error: SMTP protocol synchronization
        <close
      `,
      );
      assert.equal(relay.logs.some((l) => l.includes("injected@evil.test")), false);
      assert.equal(messageCount(relay), 0);
    } finally {
      await relay.stop();
    }
  });

  it("#9 STARTTLS twice: 554 5.5.1 TLS already active (and STARTTLS no longer advertised)", async () => {
    const cert = makeTestCert();
    const relay = await startTestRelay({ odmr: false, cert });
    try {
      await runTranscript(
        relay.smtpPort,
        `
        < 220 *
        > STARTTLS
        < 220 2.0.0 Ready to start TLS
        !tls
        > STARTTLS
        < 554 5.5.1 Error: TLS already active
        > EHLO client.test
        ${EHLO_REPLY}
        > QUIT
        < 221 *
      `,
        { ca: cert.caPem },
      );
    } finally {
      await relay.stop();
    }
  });
});

test("invalid UTF-8 in RCPT is refused, not rewritten to U+FFFD", async () => {
  const relay = await startTestRelay({ odmr: false });
  try {
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test> SMTPUTF8
      < 250 *
      >> RCPT TO:<\\xff\\xc0\\x80@example.test>\\r\\n
      < 501 5.5.2 *
      > QUIT
      < 221 *
    `,
    );
  } finally {
    await relay.stop();
  }
});
