// RFC 5321 4.5.1: `RCPT TO:<Postmaster>` (no domain) must be accepted: it goes to `postmasterAddress`
// when that is in a hosted domain, is forwarded through the outbound path when it is outside, and
// otherwise waits in the relay's own postmaster mailbox, shown by /status and `queue list`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { startFakeDns } from "../support/fake_dns.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { startTestRelay } from "../support/relay.ts";
import { runTranscript } from "../support/transcript.ts";
import { allRecipients, lastMessageId, OPEN } from "./intake_helpers.ts";

/** One message from a@remote.test to the bare postmaster address (`rcpt`), accepted at RCPT and DATA. */
async function mailThePostmaster(port: number, subject: string, rcpt = "Postmaster"): Promise<void> {
  await runTranscript(
    port,
    `${OPEN}
    > MAIL FROM:<a@remote.test>
    < 250 *
    > RCPT TO:<${rcpt}>
    < 250 2.1.5 Ok
    > DATA
    < 354 *
    > Subject: ${subject}
    > .
    < 250 *
    > QUIT
    < 221 *
  `,
  );
}

test("bare <Postmaster> goes to postmasterAddress when it is configured", async () => {
  const relay = await startTestRelay({
    odmr: false,
    flags: { postmasterAddress: "hostmaster@example.test" },
  });
  try {
    await mailThePostmaster(relay.smtpPort, "to the postmaster");
    const id = lastMessageId(relay);
    assert.deepEqual(
      allRecipients(relay).filter((r) => r.message_id === id).map((r) => [r.address, r.domain]),
      [["hostmaster@example.test", "example.test"]],
    );
  } finally {
    await relay.stop();
  }
});

test("without postmasterAddress, bare <Postmaster> waits in the local mailbox, shown by /status", async () => {
  const relay = await startTestRelay({ odmr: false, http: true });
  try {
    await mailThePostmaster(relay.smtpPort, "hello postmaster", "postmaster");
    const status = await (await fetch(`http://127.0.0.1:${relay.httpPort}/status`)).json();
    assert.deepEqual(status.postmaster, { messages: 1 });
    // It never expires: the housekeeping leaves it alone.
    await relay.relay.housekeeping.tick();
    assert.equal(allRecipients(relay).filter((r) => r.domain === "").length, 1);
  } finally {
    await relay.stop();
  }
});

test("an outside postmasterAddress: bare <Postmaster> mail is forwarded through the outbound path", async () => {
  const mx = await startFakeMx({ host: "127.0.0.11", name: "mx.ops.test" });
  const dns = await startFakeDns({
    "ops.test": { mx: [{ preference: 5, exchange: "mx.ops.test" }] },
    "mx.ops.test": { a: ["127.0.0.11"] },
  });
  const relay = await startTestRelay({
    odmr: false,
    flags: { postmasterAddress: "noc@ops.test" },
    config: { smarthost: null, dnsServers: [dns.server], outboundMxPort: mx.port },
  });
  try {
    await mailThePostmaster(relay.smtpPort, "abuse report");
    await relay.relay.housekeeping.tick();
    await relay.relay.outbound!.worker.runDue();
    assert.equal(mx.messages.length, 1);
    assert.deepEqual(mx.messages[0]!.rcpts, ["noc@ops.test"]);
    assert.match(mx.messages[0]!.mail, /^MAIL FROM:<a@remote\.test>/);
    assert.match(mx.messages[0]!.data, /Subject: abuse report/);
    assert.equal(allRecipients(relay).length, 0);
  } finally {
    await relay.stop();
    await dns.close();
    await mx.close();
  }
});

test("a forward the outside postmasterAddress refuses is reported to its sender", async () => {
  const mx = await startFakeMx({
    host: "127.0.0.13",
    name: "mx.ops.test",
    rcptReply: (address) => (address === "noc@ops.test" ? "550 5.1.1 no such user" : undefined),
  });
  const dns = await startFakeDns({
    "ops.test": { mx: [{ preference: 5, exchange: "mx.ops.test" }] },
    "remote.test": { mx: [{ preference: 5, exchange: "mx.ops.test" }] },
    "mx.ops.test": { a: ["127.0.0.13"] },
  });
  const relay = await startTestRelay({
    odmr: false,
    flags: { postmasterAddress: "noc@ops.test" },
    config: { smarthost: null, dnsServers: [dns.server], outboundMxPort: mx.port },
  });
  try {
    await mailThePostmaster(relay.smtpPort, "abuse report");
    await relay.relay.housekeeping.tick();
    await relay.relay.outbound!.worker.runDue();
    await relay.relay.outbound!.worker.runDue();
    const dsn = mx.messages.find((m) => m.rcpts[0] === "a@remote.test");
    assert.ok(dsn, "the sender was told");
    assert.match(dsn.data, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user/);
  } finally {
    await relay.stop();
    await dns.close();
    await mx.close();
  }
});

test("a U-label postmasterAddress is stored in A-label form (an ASCII message must not need SMTPUTF8)", async () => {
  const relay = await startTestRelay({ odmr: false, flags: { postmasterAddress: "pm@böb.test" } }, [
    { username: "bob", password: "bob-secret", domains: ["xn--bb-fka.test"] },
  ]);
  try {
    await mailThePostmaster(relay.smtpPort, "x");
    assert.deepEqual(
      allRecipients(relay).map((r) => [r.address, r.domain]),
      [["pm@xn--bb-fka.test", "xn--bb-fka.test"]],
    );
  } finally {
    await relay.stop();
  }
});
