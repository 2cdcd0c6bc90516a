import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as tls from "node:tls";
import {
  sendOutbound,
  type SendOutboundOptions,
  type SmarthostDestination,
} from "../../src/outbound/send.ts";
import { type FakeDns, startFakeDns, type Zone } from "../support/fake_dns.ts";
import { type FakeMx, type FakeMxOptions, startFakeMx } from "../support/fake_mx.ts";
import { makeTestCert } from "../support/certs.ts";
import { capturingLogger, DSN_TEXT, messageOf, TEST_TIMEOUTS } from "./_helpers.ts";

const cert = makeTestCert();
const secureContext = tls.createSecureContext({ cert: cert.certPem, key: cert.keyPem });

describe("sendOutbound: direct delivery to the MX hosts", () => {
  let dns: FakeDns;
  /** The port every fake MX listens on (MX delivery has one port for all hosts, here not 25). */
  let port = 0;
  const sinks: FakeMx[] = [];

  /** A fake MX on `address`, on the shared port. */
  const mx = async (address: string, options: FakeMxOptions = {}): Promise<FakeMx> => {
    const sink = await startFakeMx({ host: address, port, ...options });
    sinks.push(sink);
    return sink;
  };

  /** Zone: `domain` with MX hosts `mxN.domain` at the given preferences and addresses. */
  const zoneFor = (domain: string, hosts: [number, string][]): Zone => {
    const zone: Zone = {
      [domain]: { mx: hosts.map(([preference], i) => ({ preference, exchange: `mx${i}.${domain}` })) },
    };
    hosts.forEach(([, address], i) => (zone[`mx${i}.${domain}`] = { a: [address] }));
    return zone;
  };

  const send = (domain: string, recipients: string[], extra: Partial<SendOutboundOptions> = {}) =>
    sendOutbound({
      destination: { kind: "mx", domain, mxPort: port },
      ...messageOf(DSN_TEXT, recipients),
      hostname: "relay.test",
      dns: { dnsServers: [dns.server], timeoutMs: 200, tries: 1 },
      timeouts: TEST_TIMEOUTS,
      ...extra,
    });

  before(async () => {
    dns = await startFakeDns({});
    const first = await startFakeMx({ host: "127.0.0.2" });
    port = first.port;
    await first.close();
  });
  after(async () => {
    for (const s of sinks) await s.close();
    await dns.close();
  });

  test("a DSN from <> reaches the best MX intact", async () => {
    dns.zone = zoneFor("a.test", [[20, "127.0.0.3"], [10, "127.0.0.2"]]);
    const best = await mx("127.0.0.2");
    const other = await mx("127.0.0.3");
    const result = await send("a.test", ["sender@a.test"]);
    assert.deepEqual(result.recipients, [{
      address: "sender@a.test",
      result: "delivered",
      code: 250,
      text: "250 2.0.0 Ok: queued as FAKE",
      remoteMta: "mx1.a.test",
    }]);
    assert.equal(result.remoteMta, "mx1.a.test");
    assert.equal(result.remoteAddress, `127.0.0.2:${port}`);
    assert.equal(best.messages.length, 1);
    assert.equal(other.sessions.length, 0);
    const got = best.messages[0]!;
    assert.equal(got.mail.split(" ")[0], "MAIL");
    assert.match(got.mail, /^MAIL FROM:<> /);
    assert.deepEqual(got.rcpts, ["sender@a.test"]);
    assert.equal(got.data, DSN_TEXT);
    assert.equal(got.tls, false);
  });

  test("an MX on a closed port, then one greeting 421 and one 554: the next MX takes it", async () => {
    dns.zone = zoneFor("b.test", [[10, "127.0.0.9"], [20, "127.0.0.4"], [30, "127.0.0.5"], [
      40,
      "127.0.0.6",
    ]]);
    const busy = await mx("127.0.0.4", { greeting: "421 4.3.2 busy" });
    const hostile = await mx("127.0.0.5", { greeting: "554 5.7.1 no thanks" });
    const good = await mx("127.0.0.6");
    const result = await send("b.test", ["x@b.test"]);
    assert.equal(result.recipients[0]?.result, "delivered");
    assert.equal(result.remoteMta, "mx3.b.test");
    assert.equal(good.messages.length, 1);
    assert.equal(busy.sessions.length, 1);
    assert.equal(hostile.sessions.length, 1);
    assert.deepEqual(result.attempts.map((a) => a.endpoint.host), ["mx0.b.test", "mx1.b.test", "mx2.b.test"]);
    assert.match(result.attempts[0]!.text, /^4\.4\.1 Connection failed: ECONNREFUSED/);
    assert.match(result.attempts[1]!.text, /421 4\.3\.2 busy/);
    assert.match(result.attempts[2]!.text, /554 5\.7\.1 no thanks/);
  });

  test("no MX reachable: every recipient deferred (never failed), with the last reason", async () => {
    dns.zone = zoneFor("c.test", [[10, "127.0.0.9"], [20, "127.0.0.10"]]);
    const result = await send("c.test", ["a@c.test", "b@c.test"]);
    for (const r of result.recipients) {
      assert.equal(r.result, "deferred");
      assert.equal(r.code, 451);
      assert.equal(r.remoteMta, null);
      assert.match(
        r.text,
        /^4\.4\.1 Connection failed: ECONNREFUSED \(mx1\.c\.test\[127\.0\.0\.10\]:\d+; 2 destinations/,
      );
    }
    assert.equal(result.remoteMta, null);
  });

  test("opportunistic STARTTLS to an MX that offers it (certificate not checked), EHLO again after", async () => {
    dns.zone = zoneFor("tls.test", [[10, "127.0.0.7"]]);
    const sink = await mx("127.0.0.7", { tls: secureContext });
    const result = await send("tls.test", ["r@tls.test"]);
    assert.equal(result.recipients[0]?.result, "delivered", result.recipients[0]?.text);
    assert.equal(sink.messages[0]?.tls, true);
    assert.match(result.tls?.protocol ?? "", /^TLSv1\.[23]$/);
    assert.equal(result.tls?.authorized, false); // the test CA is not trusted here, and that is fine
    const verbs = sink.sessions[0]!.commands.map((c) => c.split(" ")[0]);
    assert.deepEqual(verbs.slice(0, 3), ["EHLO", "STARTTLS", "EHLO"]);
  });

  test("a TLS handshake that fails: the same MX once more in plaintext (Postfix 'may')", async () => {
    dns.zone = zoneFor("badtls.test", [[10, "127.0.0.8"]]);
    const sink = await mx("127.0.0.8", { tls: secureContext, brokenTls: true });
    const result = await send("badtls.test", ["r@badtls.test"]);
    assert.equal(result.recipients[0]?.result, "delivered", result.recipients[0]?.text);
    assert.equal(sink.sessions.length, 2);
    assert.ok(sink.sessions[0]!.commands.includes("STARTTLS"));
    assert.ok(!sink.sessions[1]!.commands.includes("STARTTLS"));
    assert.equal(sink.messages[0]?.tls, false);
    assert.equal(result.tls, null);
    assert.match(result.attempts[0]!.text, /^4\.7\.0 STARTTLS failed/);
  });

  test("per-recipient replies: 550 failed, 450 deferred, 250 delivered", async () => {
    dns.zone = zoneFor("mixed.test", [[10, "127.0.0.11"]]);
    await mx("127.0.0.11", {
      rcptReply: (a) =>
        a.startsWith("gone")
          ? "550 5.1.1 No such user"
          : a.startsWith("full")
          ? "450 4.2.2 Mailbox full"
          : undefined,
    });
    const result = await send("mixed.test", ["gone@mixed.test", "full@mixed.test", "ok@mixed.test"]);
    assert.deepEqual(result.recipients.map((r) => [r.address, r.result, r.code, r.text]), [
      ["gone@mixed.test", "failed", 550, "550 5.1.1 No such user"],
      ["full@mixed.test", "deferred", 450, "450 4.2.2 Mailbox full"],
      ["ok@mixed.test", "delivered", 250, "250 2.0.0 Ok: queued as FAKE"],
    ]);
    assert.ok(result.recipients.every((r) => r.remoteMta === "mx0.mixed.test"));
  });

  test("DNS answers: NXDOMAIN and null MX fail (550, 556), a DNS timeout defers; nothing is dialled", async () => {
    dns.zone = { "null.test": { mx: [{ preference: 0, exchange: "." }] }, "slow.test": { all: "timeout" } };
    const nx = await send("nowhere.test", ["a@nowhere.test"], {
      dns: { dnsServers: [dns.server], timeoutMs: 200, tries: 1, notFoundIsAmbiguous: false },
    });
    assert.deepEqual(nx.recipients.map((r) => [r.result, r.code]), [["failed", 550]]);
    assert.match(nx.recipients[0]!.text, /^5\.4\.4 /);
    const nullMx = await send("null.test", ["a@null.test"]);
    assert.deepEqual(nullMx.recipients.map((r) => [r.result, r.code]), [["failed", 556]]);
    assert.match(nullMx.recipients[0]!.text, /^5\.1\.10 /);
    const slow = await send("slow.test", ["a@slow.test"]);
    assert.deepEqual(slow.recipients.map((r) => [r.result, r.code]), [["deferred", 451]]);
    assert.match(slow.recipients[0]!.text, /^4\.4\.3 /);
    assert.deepEqual([nx.attempts, nullMx.attempts, slow.attempts], [[], [], []]);
  });

  test("a silent MX: the greeting timeout moves on, bounded", async () => {
    dns.zone = zoneFor("mute.test", [[10, "127.0.0.12"], [20, "127.0.0.13"]]);
    await mx("127.0.0.12", { greeting: null });
    const good = await mx("127.0.0.13");
    const start = Date.now();
    const result = await send("mute.test", ["a@mute.test"], {
      timeouts: { ...TEST_TIMEOUTS, greetingMs: 300 },
    });
    assert.equal(result.recipients[0]?.result, "delivered");
    assert.equal(good.messages.length, 1);
    assert.match(result.attempts[0]!.text, /^4\.4\.2 No reply to greeting within 300 ms/);
    assert.ok(Date.now() - start < 3000);
  });

  test("the attempt's time limit and the caller's signal end it: deferred with the reason", async () => {
    dns.zone = zoneFor("late.test", [[10, "127.0.0.14"]]);
    await mx("127.0.0.14", { greeting: null });
    const timed = await send("late.test", ["a@late.test"], {
      timeouts: { ...TEST_TIMEOUTS, attemptMs: 300 },
    });
    assert.deepEqual(timed.recipients.map((r) => [r.result, r.code]), [["deferred", 451]]);
    assert.match(timed.recipients[0]!.text, /^4\.4\.2 Outbound attempt took longer than 300 ms/);

    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const cancelled = await send("late.test", ["a@late.test"], { signal: controller.signal });
    assert.equal(cancelled.recipients[0]?.result, "deferred");
    assert.match(cancelled.recipients[0]!.text, /^4\.3\.0 Outbound delivery cancelled/);
  });
});

describe("sendOutbound: through a smarthost", () => {
  const account = { username: "relay", password: "s3cret-Pa55" };
  const sinks: FakeMx[] = [];
  const smarthost = async (options: FakeMxOptions): Promise<FakeMx> => {
    const sink = await startFakeMx(options);
    sinks.push(sink);
    return sink;
  };
  const send = (sink: FakeMx, extra: Partial<SmarthostDestination>, logger = capturingLogger()) =>
    sendOutbound({
      destination: { kind: "smarthost", host: "127.0.0.1", port: sink.port, tls: "required", ...extra },
      ...messageOf(DSN_TEXT, ["sender@far.test"]),
      hostname: "relay.test",
      timeouts: TEST_TIMEOUTS,
      logger: logger.logger,
    });
  after(async () => {
    for (const s of sinks) await s.close();
  });

  test("required STARTTLS verified against the configured CA, then AUTH PLAIN; no secret in the trace", async () => {
    const sink = await smarthost({ tls: secureContext, auth: account });
    const log = capturingLogger("trace");
    const result = await send(sink, { caFile: cert.caFile, credentials: account }, log);
    assert.equal(result.recipients[0]?.result, "delivered", result.recipients[0]?.text);
    assert.equal(result.tls?.authorized, true);
    assert.equal(sink.messages[0]?.authUser, "relay");
    assert.equal(sink.messages[0]?.tls, true);
    assert.equal(sink.messages[0]?.data, DSN_TEXT);
    const plain = btoa(`\0${account.username}\0${account.password}`);
    const all = log.lines.join("\n");
    assert.match(all, /AUTH PLAIN <redacted>/);
    assert.ok(!all.includes(account.password) && !all.includes(plain), "credentials in the log");
  });

  test("AUTH LOGIN when the smarthost offers only LOGIN", async () => {
    const sink = await smarthost({ tls: secureContext, auth: account, authMechanisms: ["LOGIN"] });
    const result = await send(sink, { caFile: cert.caFile, credentials: account });
    assert.equal(result.recipients[0]?.result, "delivered", result.recipients[0]?.text);
    assert.equal(sink.messages[0]?.authUser, "relay");
    assert.ok(sink.sessions[0]!.commands.includes("AUTH LOGIN"));
  });

  test("required STARTTLS with a certificate the system roots do not trust: deferred, nothing sent", async () => {
    const sink = await smarthost({ tls: secureContext, auth: account });
    const result = await send(sink, { credentials: account });
    assert.equal(result.recipients[0]?.result, "deferred");
    assert.match(result.recipients[0]!.text, /^4\.7\.0 STARTTLS failed: .*certificate/i);
    assert.equal(sink.sessions.length, 1, "no plaintext retry under required TLS");
    assert.equal(sink.messages.length, 0);
  });

  test("required STARTTLS not offered: deferred with a clear reason, no MAIL", async () => {
    const sink = await smarthost({});
    const result = await send(sink, { caFile: cert.caFile });
    assert.deepEqual(result.recipients.map((r) => [r.result, r.code]), [["deferred", 451]]);
    assert.match(
      result.recipients[0]!.text,
      /^4\.7\.0 127\.0\.0\.1 does not offer STARTTLS, which is required/,
    );
    assert.ok(!sink.sessions[0]!.commands.some((c) => c.startsWith("MAIL")));
  });

  test("credentials refused: deferred (the operator's problem), logged at level error, no MAIL", async () => {
    const sink = await smarthost({ tls: secureContext, auth: account });
    const log = capturingLogger();
    const result = await send(
      sink,
      { caFile: cert.caFile, credentials: { ...account, password: "wrong" } },
      log,
    );
    assert.equal(result.recipients[0]?.result, "deferred");
    assert.match(
      result.recipients[0]!.text,
      /^4\.7\.0 127\.0\.0\.1 refused AUTH PLAIN for relay: 535 5\.7\.8/,
    );
    assert.ok(log.lines.some((l) => l.includes("level=error") && l.includes("refused our credentials")));
    assert.ok(!log.lines.join("\n").includes("wrong"));
    assert.ok(!sink.sessions[0]!.commands.some((c) => c.startsWith("MAIL")));
  });

  test("opportunistic: plaintext without credentials, but credentials never go unencrypted", async () => {
    const sink = await smarthost({});
    const plain = await send(sink, { tls: "opportunistic" });
    assert.equal(plain.recipients[0]?.result, "delivered");
    assert.equal(sink.messages[0]?.tls, false);

    const withAuth = await send(sink, { tls: "opportunistic", credentials: account });
    assert.equal(withAuth.recipients[0]?.result, "deferred");
    assert.match(
      withAuth.recipients[0]!.text,
      /^4\.7\.0 Not sending credentials to 127\.0\.0\.1 without TLS/,
    );
    assert.equal(sink.messages.length, 1);
  });

  test("an unreadable CA file defers without dialling", async () => {
    const sink = await smarthost({ tls: secureContext });
    const result = await send(sink, { caFile: "/nonexistent/ca.pem" });
    assert.equal(result.recipients[0]?.result, "deferred");
    assert.match(result.recipients[0]!.text, /^4\.7\.0 Cannot read CA file/);
    assert.equal(sink.sessions.length, 0);
  });
});
