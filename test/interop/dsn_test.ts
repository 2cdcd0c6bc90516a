/**
 * Bounces end to end over real sockets: a message arrives at the intake, the customer refuses one of
 * its recipients after the ATRN turn, and the sender's MX (found through a loopback fake DNS server)
 * receives exactly one well-formed DSN for exactly that recipient; the queue is empty afterwards.
 * Also: a smarthost with STARTTLS and AUTH PLAIN, no DSN for `<>` or NOTIFY=NEVER, a restart with
 * DSNs pending, an MX that never answers (retried, then dropped after dsnLifetime), NOTIFY=SUCCESS,
 * delay warnings and expiry with an injected clock, the customer notice, and Postfix's smtp-sink
 * storing a DSN intact.
 */
import { ManualClock } from "../../src/clock.ts";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { Config } from "../../src/config/fields.ts";
import { loadSecureContext } from "../../src/net/tls.ts";
import { hasSmtpSink, startSmtpSink } from "../client/_smtp_sink.ts";
import { makeTestCert } from "../support/certs.ts";
import { type FakeDns, startFakeDns } from "../support/fake_dns.ts";
import { type FakeMx, startFakeMx } from "../support/fake_mx.ts";
import { startTestRelay, type TestRelay } from "../support/relay.ts";
import { tempDir } from "../support/temp.ts";
import { TranscriptPeer } from "../support/transcript.ts";
import { enqueue, ODMR_SEED, openOdmr, outboundRows, playCustomer, waitFor } from "../server/odmr_helpers.ts";

/** The relay's queue holds nothing: no recipients, no messages, no outbound rows. */
function queueIsEmpty(relay: TestRelay): boolean {
  const count = (table: string) =>
    (relay.store.database.raw.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  return count("recipients") === 0 && count("messages") === 0 && count("outbound") === 0 &&
    count("message_chunks") === 0;
}

/** Sends one message into the intake; `rcpts` may carry RCPT parameters after a space. */
async function receive(
  relay: TestRelay,
  from: string,
  rcpts: string[],
  body = "Subject: hello\r\n\r\nhi\r\n",
) {
  const peer = await TranscriptPeer.connect(relay.smtpPort);
  try {
    await peer.expect("220 *");
    await peer.sendLine("EHLO client.remote.test");
    await peer.readReply();
    await peer.sendLine(`MAIL FROM:<${from}>`);
    await peer.expect("250 *");
    for (const r of rcpts) {
      const [address, ...params] = r.split(" ");
      await peer.sendLine(`RCPT TO:<${address}>${params.length ? " " + params.join(" ") : ""}`);
      await peer.expect("250 *");
    }
    await peer.sendLine("DATA");
    await peer.expect("354 *");
    await peer.send(body + ".\r\n");
    await peer.expect("250 *");
    await peer.sendLine("QUIT");
    await peer.expect("221 *");
  } finally {
    peer.close();
  }
}

/** Collects example.test as the customer, answering RCPT with `rcpt(address)`. */
async function collect(relay: TestRelay, rcpt: (line: string) => string, ehlo?: string[]) {
  const peer = await openOdmr(relay.odmrPort, { user: "alice" });
  await peer.sendLine("ATRN example.test");
  await peer.expect("250 *");
  return await playCustomer(peer, { rcpt, ...(ehlo ? { ehlo } : {}) });
}

/** The DSN's fields as `Name: value` lines, unfolded. */
function fields(text: string): string[] {
  return text.replace(/\r\n[ \t]+/g, " ").split("\r\n");
}

describe("DSNs to the sender's MX, found through DNS", () => {
  let dns: FakeDns;
  let mx: FakeMx;
  let relay: TestRelay;
  before(async () => {
    mx = await startFakeMx({ host: "127.0.0.7", name: "mx.remote.test" });
    dns = await startFakeDns({
      "remote.test": { mx: [{ preference: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { a: ["127.0.0.7"] },
    });
    relay = await startTestRelay({
      config: { smarthost: null, dnsServers: [dns.server], outboundMxPort: mx.port },
    }, ODMR_SEED);
  });
  after(async () => {
    await relay.stop();
    await dns.close();
    await mx.close();
  });

  it("the customer refuses one of two recipients: exactly one DSN, for that one, and the queue is empty", async () => {
    await receive(relay, "sender@remote.test", [
      "good@example.test",
      "bad@example.test ORCPT=rfc822;Bad@Example.test",
    ]);
    const log = await collect(
      relay,
      (l) => (l.includes("bad@") ? "550 5.1.1 <bad@example.test>: no such user" : "250 2.1.5 Ok"),
    );
    assert.equal(log.messages.length, 1);
    await waitFor(
      () => mx.messages.length === 1 && queueIsEmpty(relay),
      "the DSN to arrive and the queue to empty",
    );
    const dsn = mx.messages[0]!;
    assert.match(dsn.mail, /^MAIL FROM:<>( |$)/);
    assert.deepEqual(dsn.rcpts, ["sender@remote.test"]);
    const f = fields(dsn.data);
    assert.ok(f.includes("Auto-Submitted: auto-replied"));
    assert.ok(f.some((l) => /^Content-Type: multipart\/report; report-type=delivery-status;/.test(l)));
    assert.ok(f.includes("Reporting-MTA: dns; mx.relay.test"));
    assert.ok(f.includes("Final-Recipient: rfc822; bad@example.test"));
    assert.ok(f.includes("Original-Recipient: rfc822; Bad@Example.test"));
    assert.ok(f.includes("Action: failed"));
    assert.ok(f.includes("Status: 5.1.1"));
    assert.ok(f.includes("Remote-MTA: dns; customer.test"));
    assert.ok(f.includes("Diagnostic-Code: smtp; 550 5.1.1 <bad@example.test>: no such user"), dsn.data);
    assert.equal(f.filter((l) => l.startsWith("Final-Recipient:")).length, 1, "only the refused recipient");
    assert.ok(f.includes("Subject: hello"), "the original header section is returned");
    assert.equal(relay.relay.state.dsnsSent, 1);
  });

  it("no DSN for the null sender or for NOTIFY=NEVER; both leave the queue", async () => {
    const before = mx.messages.length;
    await receive(relay, "", ["x@example.test"]);
    await receive(relay, "sender@remote.test", ["y@example.test NOTIFY=NEVER"]);
    await collect(relay, () => "550 5.1.1 no");
    await waitFor(() => queueIsEmpty(relay), "both to leave the queue");
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(mx.messages.length, before);
  });

  it("NOTIFY=SUCCESS to a customer without DSN: a 'relayed' DSN", async () => {
    const before = mx.messages.length;
    await receive(relay, "sender@remote.test", ["ok@example.test NOTIFY=SUCCESS,FAILURE"]);
    await collect(relay, () => "250 2.1.5 Ok", ["8BITMIME"]);
    await waitFor(() => mx.messages.length === before + 1 && queueIsEmpty(relay), "the relayed DSN");
    const f = fields(mx.messages.at(-1)!.data);
    assert.ok(f.includes("Action: relayed"));
    assert.ok(f.includes("Final-Recipient: rfc822; ok@example.test"));
  });

  it("a local refusal (8-bit content to a customer without 8BITMIME) is reported as the relay's own", async () => {
    const before = mx.messages.length;
    await receive(
      relay,
      "sender@remote.test",
      ["eight@example.test"],
      "Subject: caf\u00e9\r\n\r\ncaf\u00e9\r\n",
    );
    const log = await collect(relay, () => "250 2.1.5 Ok", ["PIPELINING"]);
    assert.equal(log.messages.length, 0, "never sent");
    await waitFor(() => mx.messages.length === before + 1 && queueIsEmpty(relay), "the DSN");
    const text = mx.messages.at(-1)!.data;
    const f = fields(text);
    assert.ok(f.includes("Status: 5.6.3"), text);
    assert.ok(f.some((l) => l.startsWith("Diagnostic-Code: X-ODMR-Relay; 5.6.3")), text);
    assert.ok(!f.some((l) => l.startsWith("Remote-MTA:")), "nobody else refused it");
    assert.match(text, /8-bit/);
  });

  it("an operator's bounce says so, and the message leaves the queue", async () => {
    const before = mx.messages.length;
    const id = enqueue(
      relay.store,
      ["z@example.test"],
      "Subject: bounce me\r\n\r\nx\r\n",
      "sender@remote.test",
    );
    relay.store.bounceMessage(id, "Returned by the administrator: the domain is moving");
    await relay.relay.reporting!.reportFailures();
    await waitFor(() => mx.messages.length === before + 1 && queueIsEmpty(relay), "the bounce DSN");
    const text = mx.messages.at(-1)!.data;
    assert.match(text, /administrator/i);
    assert.ok(fields(text).includes("Action: failed"));
  });
});

describe("DSNs through a smarthost with STARTTLS and AUTH PLAIN", () => {
  it("the DSN goes to the smarthost under verified TLS, authenticated", async () => {
    const cert = makeTestCert();
    const mx = await startFakeMx({
      tls: loadSecureContext({ certFile: cert.certFile, keyFile: cert.keyFile }),
      auth: { username: "relay", password: "smarthost-secret" },
      authMechanisms: ["PLAIN"],
      name: "localhost",
    });
    const relay = await startTestRelay({
      config: {
        smarthost: { host: "localhost", port: mx.port },
        smarthostTls: "required",
        smarthostCaFile: cert.caFile,
        smarthostUsername: "relay",
        smarthostPassword: "smarthost-secret",
      },
    }, ODMR_SEED);
    try {
      await receive(relay, "sender@far.away.test", ["bad@example.test"]);
      await collect(relay, () => "550 5.1.1 gone");
      await waitFor(() => mx.messages.length === 1 && queueIsEmpty(relay), "the DSN at the smarthost");
      const dsn = mx.messages[0]!;
      assert.deepEqual([dsn.tls, dsn.authUser, dsn.rcpts], [true, "relay", ["sender@far.away.test"]]);
      assert.ok(fields(dsn.data).includes("Final-Recipient: rfc822; bad@example.test"));
      assert.ok(!relay.logs.some((l) => l.includes("smarthost-secret")), "the password is never logged");
    } finally {
      await relay.stop();
      await mx.close();
    }
  });
});

describe("DSNs that cannot be delivered yet", () => {
  it("a restart with DSNs pending sends them afterwards", async () => {
    const dns = await startFakeDns({
      "remote.test": { mx: [{ preference: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { a: ["127.0.0.8"] },
    });
    const closed = await freePort();
    const dataDir = tempDir("odmr-dsn-restart-");
    const clock = new ManualClock(Date.now());
    const config: Partial<Config> = { smarthost: null, dnsServers: [dns.server], outboundMxPort: closed };
    const first = await startTestRelay({ dataDir, config, clock }, ODMR_SEED);
    let mx: FakeMx | undefined;
    try {
      await receive(first, "sender@remote.test", ["bad@example.test"]);
      await collect(first, () => "550 5.1.1 gone");
      await waitFor(() => outboundRows(first)[0]?.attempts === 1, "a failed first attempt");
      await first.stop();
      // Up again, with the MX reachable and the retry due.
      mx = await startFakeMx({ host: "127.0.0.8", port: closed, name: "mx.remote.test" });
      clock.advance(10 * 60_000);
      const second = await startTestRelay({ dataDir, config, clock }, []);
      try {
        await second.relay.outbound!.worker.runDue();
        await waitFor(() => mx!.messages.length === 1 && queueIsEmpty(second), "the DSN after the restart");
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
      await mx?.close();
      await dns.close();
    }
  });

  it("an MX that never answers: retried, then dropped after dsnLifetime with a log line", async () => {
    const silent = net.createServer(() => {}); // accepts and never says a word
    await new Promise<void>((r) => silent.listen(0, "127.0.0.9", () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    const dns = await startFakeDns({
      "remote.test": { mx: [{ preference: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { a: ["127.0.0.9"] },
    });
    const clock = new ManualClock(Date.now());
    const relay = await startTestRelay({
      clock,
      config: {
        smarthost: null,
        dnsServers: [dns.server],
        outboundMxPort: port,
        atrnGreetingTimeout: 200,
        dsnLifetime: 3_600_000,
      },
    }, ODMR_SEED);
    try {
      await receive(relay, "sender@remote.test", ["bad@example.test"]);
      await collect(relay, () => "550 5.1.1 gone");
      await waitFor(() => outboundRows(relay)[0]?.attempts === 1, "the first attempt to time out");
      clock.advance(2 * 60_000); // the first retry is due after a minute
      await relay.relay.outbound!.worker.runDue();
      assert.equal(outboundRows(relay)[0]?.attempts, 2, "retried, still queued");
      clock.advance(3_600_000); // past dsnLifetime
      await relay.relay.outbound!.worker.runDue();
      assert.ok(queueIsEmpty(relay), "dropped");
      assert.ok(relay.logs.some((l) => l.includes("outbound dropped: lifetime over")), "with a log line");
    } finally {
      await relay.stop();
      await dns.close();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe("delay warnings, expiry and the customer notice (injected clock)", () => {
  it("one delay warning per step, the expiry DSN (4.4.7) after the lifetime, and a notice to notifyAddress", async () => {
    const mx = await startFakeMx({ host: "127.0.0.10", name: "mx.remote.test" });
    const dns = await startFakeDns({
      "remote.test": { mx: [{ preference: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { a: ["127.0.0.10"] },
      "phone.test": { a: ["127.0.0.10"] },
    });
    const clock = new ManualClock(Date.now());
    const relay = await startTestRelay({
      clock,
      config: {
        smarthost: null,
        dnsServers: [dns.server],
        outboundMxPort: mx.port,
        dsnDelayWarnings: [3_600_000, 4 * 3_600_000],
        queueLifetime: 86_400_000,
        domainNotifyAfter: 2 * 3_600_000,
      },
    }, ODMR_SEED);
    const hour = 3_600_000;
    const run = async () => {
      await relay.relay.housekeeping.tick();
      await relay.relay.outbound!.worker.runDue();
    };
    try {
      relay.store.database.raw.prepare("UPDATE domains SET notify_address = ? WHERE name = 'example.test'")
        .run("owner@phone.test");
      await receive(relay, "sender@remote.test", ["late@example.test", "never@example.test NOTIFY=FAILURE"]);
      await run();
      assert.equal(mx.messages.length, 0, "nothing yet");
      clock.advance(hour + 1000);
      await run();
      await run(); // a second run in the same step sends nothing more
      assert.equal(mx.messages.length, 1, "one warning for the first step");
      let f = fields(mx.messages[0]!.data);
      assert.ok(f.includes("Action: delayed"));
      assert.ok(f.includes("Final-Recipient: rfc822; late@example.test"));
      assert.ok(!f.includes("Final-Recipient: rfc822; never@example.test"), "NOTIFY=FAILURE: no warning");
      assert.ok(f.some((l) => l.startsWith("Will-Retry-Until: ")));
      assert.match(
        mx.messages[0]!.data,
        /collect/i,
        "explains that the recipient's server collects on demand",
      );
      clock.advance(2 * hour);
      await run();
      const notice = mx.messages.find((m) => m.rcpts[0] === "owner@phone.test");
      assert.ok(notice, "the customer was told mail is waiting");
      assert.match(notice.data, /Subject: Mail for example\.test is waiting to be collected/);
      assert.match(notice.mail, /^MAIL FROM:<>/);
      clock.advance(1.5 * hour); // 4.5 h: the second step; the notice was 1.5 h ago, within its 2 h period
      await run();
      assert.equal(
        mx.messages.filter((m) => m.rcpts[0] === "sender@remote.test").length,
        2,
        "the second step",
      );
      assert.equal(
        mx.messages.filter((m) => m.rcpts[0] === "owner@phone.test").length,
        1,
        "one notice per period",
      );
      clock.advance(24 * hour);
      await run();
      const expiry = mx.messages.find((m) => fields(m.data).includes("Status: 4.4.7"));
      assert.ok(expiry, "the expiry DSN");
      f = fields(expiry.data);
      assert.ok(f.includes("Action: failed") && f.includes("Status: 4.4.7"), expiry.data);
      assert.equal(f.filter((l) => l.startsWith("Final-Recipient:")).length, 2, "one DSN covers both");
      assert.ok(queueIsEmpty(relay), "expired mail leaves the queue after its DSN");
    } finally {
      await relay.stop();
      await dns.close();
      await mx.close();
    }
  });
});

describe("a DSN stored by Postfix's smtp-sink", { skip: hasSmtpSink() ? false : "smtp-sink missing" }, () => {
  it("smtp-sink -d receives the DSN as the sender's MX and stores it intact", async () => {
    const dir = tempDir("odmr-dsn-sink-");
    chmodSync(dir, 0o777); // smtp-sink drops to "nobody" when started as root
    const sink = await startSmtpSink(["-d", join(dir, "%M.")]);
    const dns = await startFakeDns({
      "remote.test": { mx: [{ preference: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { a: ["127.0.0.1"] },
    });
    const relay = await startTestRelay({
      config: { smarthost: null, dnsServers: [dns.server], outboundMxPort: sink.port },
    }, ODMR_SEED);
    try {
      await receive(relay, "sender@remote.test", ["bad@example.test"]);
      await collect(relay, () => "550 5.1.1 gone");
      await sink.waitForMessages(1);
      let files: string[] = [];
      for (let i = 0; i < 100 && files.length === 0; i++) {
        files = readdirSync(dir);
        if (files.length === 0) await new Promise((r) => setTimeout(r, 20));
      }
      const dump = readFileSync(join(dir, files[0]!), "utf8");
      assert.match(dump, /^X-Mail-Args: <>/m);
      assert.match(dump, /^X-Rcpt-Args: <sender@remote\.test>/m);
      // Parsed back by Python's email package: a multipart/report with the three parts.
      const message = dump.slice(dump.indexOf("\n", dump.lastIndexOf("X-Rcpt-Args:")) + 1);
      const py = spawnSync("python3", ["-c", PARSE], { input: message, encoding: "utf8" });
      assert.equal(py.status, 0, py.stderr);
      assert.deepEqual(JSON.parse(py.stdout), {
        type: "multipart/report",
        report: "delivery-status",
        parts: ["text/plain", "message/delivery-status", "text/rfc822-headers"],
        final: "rfc822; bad@example.test",
      });
      await waitFor(() => queueIsEmpty(relay), "the queue to empty");
    } finally {
      await relay.stop();
      await dns.close();
      await sink.stop();
    }
  });
});

const PARSE = `
import email, json, sys
m = email.message_from_string(sys.stdin.read())
parts = m.get_payload()
status = parts[1].get_payload()
final = [b.get("Final-Recipient") for b in status if b.get("Final-Recipient")]
print(json.dumps({"type": m.get_content_type(), "report": m.get_param("report-type"),
  "parts": [p.get_content_type() for p in parts], "final": final[0]}))
`;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.8", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe("DSN edge cases", () => {
  let dns: FakeDns;
  let mx: FakeMx;
  before(async () => {
    mx = await startFakeMx({ host: "127.0.0.12", name: "mx.remote.test" });
    dns = await startFakeDns({
      "remote.test": { mx: [{ preference: 10, exchange: "mx.remote.test" }] },
      "mx.remote.test": { a: ["127.0.0.12"] },
    });
  });
  after(async () => {
    await dns.close();
    await mx.close();
  });
  const relayWith = (extra: Partial<Config> = {}, clock?: { now(): number }) =>
    startTestRelay({
      ...(clock ? { clock } : {}),
      config: { smarthost: null, dnsServers: [dns.server], outboundMxPort: mx.port, ...extra },
    }, ODMR_SEED);

  it("mail that expires while the customer is accepting it is delivered, not reported failed", async () => {
    const clock = new ManualClock(Date.now());
    const relay = await relayWith({ queueLifetime: 3_600_000 }, clock);
    try {
      const before = mx.messages.length;
      enqueue(relay.store, ["late@example.test"], "Subject: late\r\n\r\nx\r\n", "sender@remote.test");
      const log = await collect(relay, () => {
        // The housekeeping runs mid-session, with the mail now past its lifetime.
        // Past the lifetime, but within the session's lease (atrnSessionTimeout + 1 min).
        clock.advance(3_600_000 + 30_000);
        void relay.relay.housekeeping.tick();
        return "250 2.1.5 Ok";
      });
      assert.equal(log.messages.length, 1);
      await waitFor(() => queueIsEmpty(relay), "the queue to empty");
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(mx.messages.length, before, "no DSN for delivered mail");
    } finally {
      await relay.stop();
    }
  });

  it("a multi-line refusal is quoted line by line in Diagnostic-Code", async () => {
    const relay = await relayWith();
    try {
      const before = mx.messages.length;
      await receive(relay, "sender@remote.test", ["bad@example.test"]);
      await collect(relay, () => "550-5.7.1 blocked: see policy A / B\n550 5.7.1 second line");
      await waitFor(() => mx.messages.length === before + 1, "the DSN");
      const f = fields(mx.messages.at(-1)!.data);
      assert.ok(
        f.includes("Diagnostic-Code: smtp; 550-5.7.1 blocked: see policy A / B 550 5.7.1 second line"),
        mx.messages.at(-1)!.data,
      );
    } finally {
      await relay.stop();
    }
  });

  it("a DSN to a hosted sender obeys the intake's rules: no routing syntax, no orphan rows when over quota", async () => {
    const relay = await relayWith();
    try {
      // A sender with routing syntax in a hosted domain: the DSN must not deliver the message there.
      await receive(relay, "victim%evil.test@a.test", ["bad@example.test"]);
      await collect(relay, () => "550 5.1.1 no");
      await waitFor(() => queueIsEmpty(relay), "the queue to empty");
      assert.ok(relay.logs.some((l) => l.includes("report dropped") && l.includes("routing-syntax")));
      // A hosted sender whose domain is over quota: the DSN is dropped and nothing is left behind.
      relay.store.updateDomain("b.test", { quotaBytes: 10 });
      await receive(relay, "someone@b.test", ["bad@example.test"]);
      await collect(relay, () => "550 5.1.1 no");
      await waitFor(() => queueIsEmpty(relay), "the queue to empty again");
    } finally {
      await relay.stop();
    }
  });

  it("one delay warning per message and step, across domains; a changed schedule does not repeat it", async () => {
    const clock = new ManualClock(Date.now());
    const hour = 3_600_000;
    const dataDir = tempDir("odmr-dsn-steps-");
    const before = mx.messages.length;
    const relay = await startTestRelay({
      dataDir,
      clock,
      config: {
        smarthost: null,
        dnsServers: [dns.server],
        outboundMxPort: mx.port,
        dsnDelayWarnings: [24 * hour],
      },
    }, ODMR_SEED);
    try {
      await receive(relay, "sender@remote.test", ["x@a.test", "y@b.test"]);
      clock.advance(25 * hour);
      await relay.relay.housekeeping.tick();
      await relay.relay.outbound!.worker.runDue();
      assert.equal(mx.messages.length, before + 1, "one warning covers both domains");
      assert.equal(
        fields(mx.messages.at(-1)!.data).filter((l) => l.startsWith("Final-Recipient:")).length,
        2,
      );
    } finally {
      await relay.stop();
    }
    const again = await startTestRelay({
      dataDir,
      clock,
      config: {
        smarthost: null,
        dnsServers: [dns.server],
        outboundMxPort: mx.port,
        dsnDelayWarnings: [4 * hour, 24 * hour],
      },
    }, []);
    try {
      clock.advance(hour);
      await again.relay.housekeeping.tick();
      await again.relay.outbound!.worker.runDue();
      assert.equal(mx.messages.length, before + 1, "no second warning for a step already passed");
    } finally {
      await again.stop();
    }
  });

  it("the quota counts a message once per recipient in the domain, as the counters do", async () => {
    const relay = await relayWith();
    try {
      relay.store.updateDomain("example.test", { quotaBytes: 600 });
      const peer = await TranscriptPeer.connect(relay.smtpPort);
      await peer.expect("220 *");
      await peer.sendLine("EHLO c.test");
      await peer.readReply();
      await peer.sendLine("MAIL FROM:<s@remote.test>");
      await peer.expect("250 *");
      for (const r of ["a", "b", "c"]) {
        await peer.sendLine(`RCPT TO:<${r}@example.test>`);
        await peer.expect("250 *");
      }
      await peer.sendLine("DATA");
      await peer.expect("354 *");
      await peer.send("Subject: x\r\n\r\n" + "y".repeat(150) + "\r\n.\r\n");
      await peer.expect("452 4.2.2 *");
      peer.close();
    } finally {
      await relay.stop();
    }
  });

  it("the local postmaster mailbox has a quota", async () => {
    const relay = await relayWith({ postmasterMailboxQuota: 1500 });
    try {
      const replies: string[] = [];
      for (let i = 0; i < 3; i++) {
        const peer = await TranscriptPeer.connect(relay.smtpPort);
        await peer.expect("220 *");
        await peer.sendLine("EHLO c.test");
        await peer.readReply();
        await peer.sendLine("MAIL FROM:<s@remote.test>");
        await peer.expect("250 *");
        await peer.sendLine("RCPT TO:<Postmaster>");
        const rcpt = (await peer.readLine()) ?? "";
        if (rcpt.startsWith("250")) {
          await peer.sendLine("DATA");
          await peer.expect("354 *");
          await peer.send("Subject: x\r\n\r\n" + "z".repeat(400) + "\r\n.\r\n");
          replies.push((await peer.readLine()) ?? "");
        } else replies.push(rcpt);
        peer.close();
      }
      assert.deepEqual(replies.map((r) => r.slice(0, 9)), ["250 2.0.0", "250 2.0.0", "452 4.2.2"]);
    } finally {
      await relay.stop();
    }
  });

  it("an operator's bounce of mail from <> says that no DSN will go", async () => {
    const relay = await startTestRelay(
      { http: true, flags: { httpToken: "0123456789abcdef0123" } },
      ODMR_SEED,
    );
    try {
      const id = enqueue(relay.store, ["z@example.test"], "Subject: x\r\n\r\nx\r\n", "");
      const r = await fetch(`http://127.0.0.1:${relay.httpPort}/queue/${id}/bounce`, {
        method: "POST",
        headers: { Authorization: "Bearer 0123456789abcdef0123" },
      });
      assert.equal((await r.json()).dsn, "none: null sender");
    } finally {
      await relay.stop();
    }
  });
});

describe("a smarthost that refuses our credentials", () => {
  it("is not hammered: after the refusal one row probes per backoff", async () => {
    const cert = makeTestCert();
    const mx = await startFakeMx({
      tls: loadSecureContext({ certFile: cert.certFile, keyFile: cert.keyFile }),
      auth: { username: "relay", password: "the-right-one" },
      name: "localhost",
    });
    const clock = new ManualClock(Date.now());
    const relay = await startTestRelay({
      clock,
      config: {
        smarthost: { host: "localhost", port: mx.port },
        smarthostTls: "required",
        smarthostCaFile: cert.caFile,
        smarthostUsername: "relay",
        smarthostPassword: "a-wrong-one",
        outboundConcurrency: 1,
      },
    }, ODMR_SEED);
    try {
      for (let i = 0; i < 6; i++) {
        const id = enqueue(relay.store, [`b${i}@example.test`], "Subject: x\r\n\r\nx\r\n", "s@far.test");
        relay.store.bounceMessage(id, "test");
      }
      await relay.relay.reporting!.reportFailures();
      await relay.relay.outbound!.worker.runDue();
      await relay.relay.outbound!.worker.runDue();
      assert.equal(mx.sessions.length, 1, "one failed login, then the others wait");
      clock.advance(2 * 60_000);
      await relay.relay.outbound!.worker.runDue();
      assert.equal(mx.sessions.length, 2, "one probe after the backoff");
      assert.equal(outboundRows(relay).length, 6, "nothing lost");
    } finally {
      await relay.stop();
      await mx.close();
    }
  });
});
