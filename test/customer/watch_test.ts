/**
 * Push delivery end to end (`pull --watch`): the real relay, `pull` in-process as the customer and a
 * loopback SMTP server as its local MTA. An empty queue still turns (XWATCH), mail accepted at intake
 * goes out on the open session, the domain stays leased, NOOP keeps it alive, the watch ends after
 * its longest duration, and a relay without push (atrnMaxWatching 0) answers the poll as before.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pull } from "../../src/customer/pull.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { TranscriptPeer } from "../support/transcript.ts";
import { openOdmr, startOdmrRelay, waitFor } from "../server/odmr_helpers.ts";
import { pollOptions } from "./_helpers.ts";
import { ManualClock } from "../../src/clock.ts";

/** `pull --watch` as alice (example.test) against the relay's ODMR port, delivering to `localPort`. */
function watch(odmrPort: number, localPort: number) {
  return pull({ host: "127.0.0.1", port: odmrPort, ...pollOptions(localPort, { watch: true }) });
}

/** Sends one message to `rcpt` through the intake. */
async function send(port: number, rcpt: string, subject: string): Promise<void> {
  const peer = await TranscriptPeer.connect(port);
  try {
    await peer.expect("220 *");
    await peer.sendLine("EHLO sender.test");
    await peer.readReply();
    await peer.sendLine("MAIL FROM:<s@remote.test>");
    await peer.expect("250 *");
    await peer.sendLine(`RCPT TO:<${rcpt}>`);
    await peer.expect("250 *");
    await peer.sendLine("DATA");
    await peer.expect("354 *");
    await peer.send(`Subject: ${subject}\r\n\r\nbody\r\n.\r\n`);
    await peer.expect("250 *");
    await peer.sendLine("QUIT");
  } finally {
    peer.close();
  }
}

describe("push delivery (pull --watch)", () => {
  it("an empty queue turns, new mail goes out on the open session, NOOP keeps it alive", async () => {
    const local = await startFakeMx({ name: "local.test" });
    const relay = await startOdmrRelay({ config: { atrnWatchKeepalive: 300, atrnWatchMaxDuration: 60_000 } });
    try {
      const session = watch(relay.odmrPort, local.port);
      await waitFor(() => relay.relay.watching().length === 1, "the session to watch");
      assert.deepEqual(relay.relay.watching()[0]!.domains, ["example.test"]);
      for (let i = 0; i < 3; i++) {
        await send(relay.smtpPort, `u${i}@example.test`, `push ${i}`);
        await waitFor(() => local.messages.length === i + 1, `message ${i} pushed`);
      }
      assert.match(local.messages[2]!.data, /Subject: push 2/);
      // The domain stays leased: a second customer host that wants to watch it too gets 451 (one
      // with nothing to collect simply hears 453, as ever).
      const other = await openOdmr(relay.odmrPort, { user: "alice" });
      await other.sendLine("XWATCH");
      await other.expect("250 *");
      await other.sendLine("ATRN example.test");
      await other.expect("451 *");
      other.close();
      await waitFor(() => local.sessions[0]!.commands.includes("NOOP"), "a keepalive NOOP", 3000);
      // /status shows the watcher; stopping the relay ends the watch with QUIT, nothing lost.
      await relay.stop();
      const result = await session;
      assert.equal(result.outcome, "turned", result.message);
      assert.equal(result.watched, true);
      assert.equal(result.messages, 3);
      assert.ok(local.sessions[0]!.commands.includes("QUIT"));
    } finally {
      await relay.stop();
      await local.close();
    }
  });

  it("the watch ends after atrnWatchMaxDuration with QUIT; the customer can reconnect at once", async () => {
    const local = await startFakeMx({ name: "local.test" });
    const relay = await startOdmrRelay({ config: { atrnWatchKeepalive: 200, atrnWatchMaxDuration: 700 } });
    try {
      const first = await watch(relay.odmrPort, local.port);
      assert.deepEqual([first.outcome, first.watched], ["turned", true]);
      assert.equal(relay.relay.watching().length, 0, "the slot is free again");
      const again = watch(relay.odmrPort, local.port);
      await waitFor(() => relay.relay.watching().length === 1, "the reconnected session to watch");
      assert.equal((await again).outcome, "turned");
    } finally {
      await relay.stop();
      await local.close();
    }
  });

  it("without push on the relay (atrnMaxWatching 0) --watch polls as before: 453 with no mail", async () => {
    const local = await startFakeMx({ name: "local.test" });
    const relay = await startOdmrRelay({ config: { atrnMaxWatching: 0 } });
    try {
      const peer = await openOdmr(relay.odmrPort, { user: "alice" });
      await peer.sendLine("XWATCH");
      await peer.expect("502 *");
      peer.close();
      const result = await watch(relay.odmrPort, local.port);
      assert.equal(result.outcome, "no-mail");
    } finally {
      await relay.stop();
      await local.close();
    }
  });

  it("atrnMaxWatching bounds the watching sessions: the next XWATCH gets 452", async () => {
    const local = await startFakeMx({ name: "local.test" });
    const relay = await startOdmrRelay({ config: { atrnMaxWatching: 1, atrnWatchMaxDuration: 60_000 } });
    try {
      const session = watch(relay.odmrPort, local.port);
      await waitFor(() => relay.relay.watching().length === 1, "the first session to watch");
      const peer = await openOdmr(relay.odmrPort, { user: "dave" });
      await peer.sendLine("XWATCH");
      await peer.expect("452 4.3.2 *");
      peer.close();
      await relay.stop();
      assert.equal((await session).outcome, "turned");
    } finally {
      await relay.stop();
      await local.close();
    }
  });
});

describe("push delivery: review regressions", () => {
  it("XWATCH needs AUTH and is forgotten after STARTTLS-style resets; per-account limit", async () => {
    const relay = await startOdmrRelay({
      config: { atrnMaxWatchingPerAccount: 1, atrnWatchMaxDuration: 60_000 },
    });
    const local = await startFakeMx({ name: "local.test" });
    try {
      const anon = await openOdmr(relay.odmrPort);
      await anon.sendLine("XWATCH");
      await anon.expect("530 *");
      anon.close();
      const session = watch(relay.odmrPort, local.port);
      await waitFor(() => relay.relay.watching().length === 1, "the first watch");
      // alice already watches once: her second session may ask, but it is not kept open.
      const second = await pull({
        host: "127.0.0.1",
        port: relay.odmrPort,
        ...pollOptions(local.port, { watch: true, domains: ["a.test"] }),
      });
      assert.deepEqual([second.outcome, second.watched], ["turned", false], "the relay did not watch it");
      await relay.stop();
      await session;
    } finally {
      await relay.stop();
      await local.close();
    }
  });

  it("a local server that refuses the session does not make pull think it watched", async () => {
    const relay = await startOdmrRelay();
    const local = await startFakeMx({ greeting: "421 local.test busy" });
    try {
      const result = await watch(relay.odmrPort, local.port);
      assert.equal(result.watched, false);
    } finally {
      await relay.stop();
      await local.close();
    }
  });

  it("a hold or a disabled account takes effect in a running watch; deferred mail is retried at keepalive", async () => {
    let refuse = true;
    const local = await startFakeMx({
      name: "local.test",
      rcptReply: (
        address,
      ) => (address === "later@example.test" && refuse ? "451 4.3.0 try later" : undefined),
    });
    const relay = await startOdmrRelay({ config: { atrnWatchKeepalive: 300, atrnWatchMaxDuration: 60_000 } });
    try {
      const session = watch(relay.odmrPort, local.port);
      await waitFor(() => relay.relay.watching().length === 1, "the watch");
      await send(relay.smtpPort, "later@example.test", "deferred once");
      await waitFor(() => local.sessions[0]!.commands.some((c) => c.includes("later@")), "the first try");
      refuse = false;
      await waitFor(
        () => local.messages.some((m) => /deferred once/.test(m.data)),
        "the retry at keepalive",
        5000,
      );
      relay.store.setDomainHold("example.test", true);
      await send(relay.smtpPort, "held@example.test", "while held");
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(!local.messages.some((m) => /while held/.test(m.data)), "a held domain is not delivered");
      relay.store.setAccountDisabled("alice", true);
      const result = await session;
      assert.equal(result.outcome, "turned", "a disabled account's watch ends");
      assert.equal(relay.relay.watching().length, 0);
    } finally {
      await relay.stop();
      await local.close();
    }
  });

  it("the lease is renewed while a watch delivers: a second host never delivers the same mail", async () => {
    const clock = new ManualClock(Date.now());
    const local = await startFakeMx({ name: "local.test" });
    const relay = await startOdmrRelay({
      clock,
      config: { atrnSessionTimeout: 1000, atrnWatchKeepalive: 200, atrnWatchMaxDuration: 3_600_000 },
    });
    try {
      const session = watch(relay.odmrPort, local.port);
      await waitFor(() => relay.relay.watching().length === 1, "the watch");
      // Time passes far beyond the first lease (atrnSessionTimeout + 1 min) while the watch lives on.
      for (let i = 0; i < 3; i++) {
        clock.advance(10 * 60_000);
        await send(relay.smtpPort, `m${i}@example.test`, `m${i}`);
        await waitFor(() => local.messages.length === i + 1, `m${i}`);
      }
      const other = await openOdmr(relay.odmrPort, { user: "alice" });
      await other.sendLine("XWATCH");
      await other.expect("250 *");
      await other.sendLine("ATRN example.test");
      await other.expect("451 *");
      other.close();
      await relay.stop();
      await session;
    } finally {
      await relay.stop();
      await local.close();
    }
  });
});
