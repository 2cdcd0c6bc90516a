/**
 * ODMR provider (RFC 2645) transcript tests: EHLO, AUTH (CRAM-MD5, PLAIN, LOGIN), ATRN replies and
 * hostile inputs (PROTOCOL.md 7 items 11-21). Real sockets on 127.0.0.1, the real relay
 * (startRelay) and real SQLite. The turn itself is in odmr_turn_test.ts.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/server/sasl/password.ts";
import { cramMd5Secret } from "../../src/server/sasl/cram_md5.ts";
import { makeTestCert } from "../support/certs.ts";
import type { TestRelay } from "../support/relay.ts";
import { runTranscript } from "../support/transcript.ts";
import {
  cramAuth,
  cramResponse,
  enqueue,
  lastAtrn,
  messageCount,
  ODMR_GREETING,
  openOdmr,
  queuedAddresses,
  startOdmrRelay,
  waitForAtrnAfter,
} from "./odmr_helpers.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("odmr: EHLO and commands that are not here", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startOdmrRelay();
  });
  after(() => relay.stop());

  it("EHLO lists AUTH CRAM-MD5, ATRN, ENHANCEDSTATUSCODES; no STARTTLS without a cert, no PIPELINING/SIZE", async () => {
    await runTranscript(
      relay.odmr,
      `${ODMR_GREETING}
      > EHLO customer.test
      < 250-mx.relay.test ODMR service ready
      < 250-AUTH CRAM-MD5
      < 250-ATRN
      < 250-ENHANCEDSTATUSCODES
      < 250 XWATCH
      > QUIT
      < 221 2.0.0 *
      <close`,
    );
  });

  it("HELO, MAIL, RCPT, DATA, ETRN and TURN get 502", async () => {
    await runTranscript(
      relay.odmr,
      `${ODMR_GREETING}
      > HELO customer.test
      < 502 5.5.1 *
      > EHLO customer.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 *
      > MAIL FROM:<a@b.test>
      < 502 5.5.1 *
      > RCPT TO:<a@example.test>
      < 502 5.5.1 *
      > DATA
      < 502 5.5.1 *
      > ETRN example.test
      < 502 5.5.1 *
      > TURN
      < 502 5.5.1 *
      > NOOP
      < 250 2.0.0 Ok
      > QUIT
      < 221 *`,
    );
  });

  it("ATRN before AUTH gets 530 5.7.0; AUTH before EHLO gets 503", async () => {
    await runTranscript(
      relay.odmr,
      `${ODMR_GREETING}
      > AUTH CRAM-MD5
      < 503 5.5.1 *
      > EHLO customer.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 *
      > ATRN example.test
      < 530 5.7.0 Authentication required
      > ATRN
      < 530 5.7.0 Authentication required`,
    );
  });

  it("ATRN on the intake port (25) gets 502 5.5.1", async () => {
    await runTranscript(
      relay.smtp,
      `< 220 *
      > EHLO customer.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 *
      > ATRN example.test
      < 502 5.5.1 *`,
    );
  });
});

describe("odmr: AUTH", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startOdmrRelay();
  });
  after(() => relay.stop());

  it("CRAM-MD5 with the right secret succeeds (235 2.7.0); a second AUTH gets 503", async () => {
    const peer = await openOdmr(relay.odmr);
    try {
      assert.equal(await cramAuth(peer, "alice", "alice-secret"), "235 2.7.0 Authentication successful");
      await peer.sendLine("AUTH CRAM-MD5");
      await peer.expect("503 5.5.1 *");
    } finally {
      peer.close();
    }
  });

  it("wrong secret, unknown user and disabled account all get the same 535 5.7.8 line", async () => {
    const lines: string[] = [];
    for (const [user, secret] of [["alice", "wrong"], ["nobody", "x"], ["eve", "eve-secret"]] as const) {
      const peer = await openOdmr(relay.odmr);
      try {
        lines.push(await cramAuth(peer, user, secret));
      } finally {
        peer.close();
      }
    }
    assert.equal(lines[0], "535 5.7.8 Authentication credentials invalid");
    assert.deepEqual(lines, [lines[0], lines[0], lines[0]]);
  });

  it("unknown mechanism 504 5.5.4; PLAIN and LOGIN without TLS 504 (encryption required)", async () => {
    await runTranscript(
      relay.odmr,
      `${ODMR_GREETING}
      > EHLO customer.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 *
      > AUTH DIGEST-MD5
      < 504 5.5.4 Unrecognized authentication type
      > AUTH PLAIN ${b64("\0alice\0alice-secret")}
      < 504 5.5.4 Encryption required for requested authentication mechanism
      > AUTH LOGIN
      < 504 5.5.4 Encryption required for requested authentication mechanism`,
    );
  });

  it("CRAM-MD5 with an initial response 501; '*' aborts 501; bad base64 501 5.5.2; over-long 500 5.5.6", async () => {
    await runTranscript(
      relay.odmr,
      `${ODMR_GREETING}
      > EHLO customer.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 *
      > AUTH CRAM-MD5 ${b64("alice 0123")}
      < 501 5.7.0 *
      > AUTH CRAM-MD5
      < 334 *
      > *
      < 501 5.7.0 Authentication aborted
      > AUTH CRAM-MD5
      < 334 *
      > !!!not-base64===
      < 501 5.5.2 *
      > AUTH CRAM-MD5
      < 334 *
      > ${"A".repeat(13000)}
      < 500 5.5.6 *
      > NOOP
      < 250 2.0.0 Ok`,
    );
  });

  it("a CRAM-MD5 response replayed on a new challenge gets 535 (challenges are single-use)", async () => {
    const first = await openOdmr(relay.odmr);
    let response: string;
    try {
      await first.sendLine("AUTH CRAM-MD5");
      const challenge = await first.expect("334 *");
      response = cramResponse(challenge.slice(4), "alice", "alice-secret");
      await first.sendLine(response);
      await first.expect("235 *");
    } finally {
      first.close();
    }
    const second = await openOdmr(relay.odmr);
    try {
      await second.sendLine("AUTH CRAM-MD5");
      const challenge2 = await second.expect("334 *");
      assert.notEqual(challenge2, "334 " + Buffer.from("").toString("base64"));
      await second.sendLine(response);
      await second.expect("535 5.7.8 *");
    } finally {
      second.close();
    }
  });

  it("three failures in one session: 535, 535, then 421 4.7.0 and close", async () => {
    const peer = await openOdmr(relay.odmr);
    try {
      assert.match(await cramAuth(peer, "alice", "bad1"), /^535 5\.7\.8 /);
      assert.match(await cramAuth(peer, "alice", "bad2"), /^535 5\.7\.8 /);
      assert.match(await cramAuth(peer, "alice", "bad3"), /^421 4\.7\.0 /);
      await peer.expectClose();
    } finally {
      peer.close();
    }
  });

  it("garbage CRAM-MD5 responses (no space, short digest) get the same 535 as a wrong secret", async () => {
    await runTranscript(
      relay.odmr,
      `${ODMR_GREETING}
      > EHLO customer.test
      < 250-*
      < 250-*
      < 250-*
      < 250-*
      < 250 *
      > AUTH CRAM-MD5
      < 334 *
      > ${b64("alice")}
      < 535 5.7.8 Authentication credentials invalid
      > AUTH CRAM-MD5
      < 334 *
      > ${b64("alice 0123abcd")}
      < 535 5.7.8 Authentication credentials invalid`,
    );
  });
});

describe("odmr: STARTTLS, PLAIN and LOGIN under TLS", () => {
  let relay: TestRelay;
  const cert = makeTestCert();
  before(async () => {
    relay = await startOdmrRelay({ cert });
    const passwordHash = await hashPassword("paula-pass", { params: { N: 1024, r: 8, p: 1 } });
    relay.store.addAccount("paula", { cramMd5Secret: cramMd5Secret("paula-pass"), passwordHash });
    relay.store.addDomain("paula.test", "paula");
  });
  after(() => relay.stop());

  const tlsOpen = `${ODMR_GREETING}
      > EHLO customer.test
      < 250-mx.relay.test ODMR service ready
      < 250-AUTH CRAM-MD5
      < 250-STARTTLS
      < 250-ATRN
      < 250-ENHANCEDSTATUSCODES
      < 250 XWATCH
      > STARTTLS
      < 220 2.0.0 *
      !tls
      > EHLO customer.test
      < 250-mx.relay.test ODMR service ready
      < 250-AUTH CRAM-MD5 PLAIN LOGIN
      < 250-ATRN
      < 250-ENHANCEDSTATUSCODES
      < 250 XWATCH`;

  it("EHLO offers STARTTLS before TLS; after it AUTH CRAM-MD5 PLAIN LOGIN and no STARTTLS; PLAIN succeeds", async () => {
    await runTranscript(
      relay.odmrPort,
      `${tlsOpen}
      > STARTTLS
      < 554 5.5.1 *
      > AUTH PLAIN ${b64("\0paula\0paula-pass")}
      < 235 2.7.0 Authentication successful
      > ATRN paula.test
      < 453 4.2.0 You have no mail`,
      { ca: cert.caPem },
    );
  });

  it("LOGIN under STARTTLS succeeds; a wrong PLAIN password gets 535 5.7.8", async () => {
    await runTranscript(
      relay.odmrPort,
      `${tlsOpen}
      > AUTH PLAIN ${b64("\0paula\0wrong")}
      < 535 5.7.8 *
      > AUTH LOGIN
      < 334 VXNlcm5hbWU6
      > ${b64("paula")}
      < 334 UGFzc3dvcmQ6
      > ${b64("paula-pass")}
      < 235 2.7.0 Authentication successful`,
      { ca: cert.caPem },
    );
  });

  it("implicit TLS (odmrs): EHLO offers PLAIN and no STARTTLS", async () => {
    await runTranscript(
      relay.odmrsPort,
      `${ODMR_GREETING}
      > EHLO customer.test
      < 250-mx.relay.test ODMR service ready
      < 250-AUTH CRAM-MD5 PLAIN LOGIN
      < 250-ATRN
      < 250-ENHANCEDSTATUSCODES
      < 250 XWATCH`,
      { implicitTls: true, ca: cert.caPem },
    );
  });
});

describe("odmr: ATRN replies", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startOdmrRelay();
    enqueue(relay.store, ["u@example.test"], "Subject: x\r\n\r\nqueued\r\n");
    enqueue(relay.store, ["u@other.test"], "Subject: y\r\n\r\nfor dave\r\n");
  });
  after(() => relay.stop());

  const atrn = async (arg: string) => {
    const peer = await openOdmr(relay.odmrPort, { user: "alice" });
    try {
      await peer.sendLine(arg === "" ? "ATRN" : `ATRN ${arg}`);
      const line = await peer.readLine();
      // Single-line replies only: nothing else may follow (fetchmail reads one line).
      await peer.sendLine("NOOP");
      const next = await peer.readLine();
      return { line, next };
    } finally {
      peer.close();
    }
  };

  it("not owned, unknown and mixed lists all get the identical single 450 line; nothing delivered", async () => {
    const replies = [];
    for (const arg of ["other.test", "unknown.test", "example.test,other.test", "a.test,nowhere.test"]) {
      replies.push(await atrn(arg));
    }
    for (const r of replies) {
      assert.equal(r.line, "450 4.7.1 ATRN request refused");
      assert.equal(r.next, "250 2.0.0 Ok");
    }
    assert.deepEqual(queuedAddresses(relay), ["u@example.test", "u@other.test"]);
    // Counted and logged, but no history row: refused polls cannot grow the database.
    assert.equal(relay.relay.state.atrnSessions.get("refused"), replies.length);
    assert.ok(!relay.store.recentAtrnSessions(50).some((row) => row.outcome === "refused"));
  });

  it("syntax abuse gets 501 (or 500 for a line over the limit)", async () => {
    const many = Array.from({ length: 200 }, (_, i) => `d${i}.test`).join(",");
    const cases: [string, RegExp][] = [
      ["a.test,,b.test", /^501 /],
      ["a.test,", /^501 /],
      [",a.test", /^501 /],
      ["[1.2.3.4]", /^501 /],
      ["_x.test", /^501 /],
      ["localhost", /^501 /],
      ["a.test.", /^501 /],
      ["*.a.test", /^501 /],
      ["@a.test", /^501 /],
      ["a.test b.test", /^501 /],
      [many, /^50[01] /],
      ["x".repeat(100 * 1024), /^500 /],
    ];
    for (const [arg, want] of cases) {
      const r = await atrn(arg);
      assert.match(r.line ?? "(closed)", want, `ATRN ${arg.slice(0, 40)}`);
    }
    assert.deepEqual(queuedAddresses(relay), ["u@example.test", "u@other.test"]);
  });

  it("no queued mail gets 453 4.2.0 You have no mail (single line)", async () => {
    const id0 = relay.store.recentAtrnSessions(1)[0]?.id;
    const r = await atrn("a.test,b.test");
    assert.equal(r.line, "453 4.2.0 You have no mail");
    assert.equal(r.next, "250 2.0.0 Ok");
    // A poll without mail is remembered on the domains, not as a history row.
    assert.equal(relay.store.recentAtrnSessions(1)[0]?.id, id0);
    const polled = relay.store.listDomains().filter((d) => d.name === "a.test" || d.name === "b.test");
    assert.ok(polled.every((d) => d.lastAtrnAt !== null && d.lastAtrnDelivered === 0));
  });

  it("a held domain answers 453 and keeps its mail", async () => {
    relay.store.setDomainHold("example.test", true);
    try {
      assert.equal((await atrn("example.test")).line, "453 4.2.0 You have no mail");
      assert.equal((await atrn("")).line, "453 4.2.0 You have no mail");
    } finally {
      relay.store.setDomainHold("example.test", false);
    }
    assert.deepEqual(queuedAddresses(relay), ["u@example.test", "u@other.test"]);
  });

  it("bytes pipelined after ATRN: 554 5.5.0 and close, nothing delivered", async () => {
    const peer = await openOdmr(relay.odmr, { user: "alice" });
    try {
      await peer.send("ATRN example.test\r\n220 customer.test ESMTP\r\n");
      await peer.expect("554 5.5.0 *");
      await peer.expectClose();
    } finally {
      peer.close();
    }
    assert.deepEqual(queuedAddresses(relay), ["u@example.test", "u@other.test"]);
    assert.equal(messageCount(relay), 2);
  });

  it("ATRN with spaces after commas is accepted (turns)", async () => {
    const before = relay.store.recentAtrnSessions(1)[0]?.id ?? 0;
    const peer = await openOdmr(relay.odmr, { user: "alice" });
    try {
      await peer.sendLine("ATRN example.test, a.test ,b.test");
      await peer.expect("250 2.0.0 OK now reversing the connection");
      // Hang up without greeting: everything stays queued.
      peer.close();
    } finally {
      peer.close();
    }
    await waitForAtrnAfter(relay, before);
    assert.deepEqual(queuedAddresses(relay), ["u@example.test", "u@other.test"]);
    assert.deepEqual(lastAtrn(relay).domains.split(",").sort(), ["a.test", "b.test", "example.test"]);
  });

  it("bare ATRN means every domain of the account", async () => {
    const before = relay.store.recentAtrnSessions(1)[0]?.id ?? 0;
    const peer = await openOdmr(relay.odmr, { user: "alice" });
    try {
      await peer.sendLine("ATRN");
      await peer.expect("250 2.0.0 *");
      peer.close();
    } finally {
      peer.close();
    }
    await waitForAtrnAfter(relay, before);
    assert.deepEqual(lastAtrn(relay).domains.split(",").sort(), ["a.test", "b.test", "example.test"]);
    assert.deepEqual(queuedAddresses(relay), ["u@example.test", "u@other.test"]);
  });

  it("ATRN answers with one line even when repeated after a refusal (state kept)", async () => {
    const peer = await openOdmr(relay.odmr, { user: "dave" });
    try {
      await peer.sendLine("ATRN example.test");
      await peer.expect("450 4.7.1 ATRN request refused");
      await peer.sendLine("ATRN nowhere.test");
      await peer.expect("450 4.7.1 ATRN request refused");
    } finally {
      peer.close();
    }
  });
});
