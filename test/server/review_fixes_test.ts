// Regression tests for defects found in review: each failed before its fix.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { makeTestCert } from "../support/certs.ts";
import { startTestRelay } from "../support/relay.ts";
import { playTranscript, runTranscript, TranscriptPeer } from "../support/transcript.ts";
import { messageCount, OPEN } from "./intake_helpers.ts";
import { cramAuth, enqueue, openOdmr, startOdmrRelay } from "./odmr_helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("DATA cannot outlive the session cap by dripping one byte at a time", async () => {
  // Each byte arrives well within smtpDataTimeout, so only the session cap can end this.
  const relay = await startTestRelay({
    odmr: false,
    config: { smtpSessionTimeout: 1500, smtpDataTimeout: 5000 },
  });
  try {
    const peer = await TranscriptPeer.open(relay.smtp);
    await playTranscript(
      peer,
      `${OPEN}\n> MAIL FROM:<a@remote.test>\n< 250 *\n> RCPT TO:<u@example.test>\n< 250 *\n> DATA\n< 354 *`,
    );
    let reply: string | null = null;
    for (let i = 0; i < 40 && !peer.closed; i++) {
      await peer.send(new TextEncoder().encode("x"), "x").catch(() => {});
      await sleep(150);
    }
    reply = await peer.readLine(2000).catch(() => null);
    assert.match(reply ?? "", /^421 4\.4\.2 /, "the session cap ends the drip with 421");
    assert.equal(messageCount(relay), 0);
    peer.close();
  } finally {
    await relay.stop();
  }
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

test("a locked account answers the right secret exactly like a wrong one (no oracle)", async () => {
  const relay = await startOdmrRelay({ flags: { authMaxFailuresPerAccountIp: "3" } });
  try {
    for (let i = 0; i < 3; i++) {
      const peer = await openOdmr(relay.odmr);
      assert.match(await cramAuth(peer, "alice", "wrong-secret"), /^535 5\.7\.8 /);
      peer.close();
    }
    const peer = await openOdmr(relay.odmr);
    assert.match(await cramAuth(peer, "alice", "alice-secret"), /^535 5\.7\.8 /);
    peer.close();
  } finally {
    await relay.stop();
  }
});

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
      await sleep(50);
    }
    assert.match(answer, /^250 /, "the domain is free again");
  } finally {
    await relay.stop();
  }
});

test("implicit-TLS handshakes count against the connection limit", async () => {
  const cert = makeTestCert();
  const relay = await startTestRelay({ cert, config: { odmrMaxConnections: 2, odmrMaxConnectionsPerIp: 2 } });
  const sockets: net.Socket[] = [];
  try {
    const closed: Promise<void>[] = [];
    for (let i = 0; i < 6; i++) {
      const s = net.connect({ host: "127.0.0.1", port: relay.odmrsPort });
      s.on("error", () => {});
      sockets.push(s);
      closed.push(new Promise((resolve) => s.once("close", () => resolve())));
      await new Promise((r) => s.once("connect", r));
    }
    // Never sending a ClientHello: the first two wait in their handshake, the others are closed.
    const settled = await Promise.race([
      Promise.all(closed.slice(2)).then(() => "closed"),
      sleep(5000).then(() => "still open"),
    ]);
    assert.equal(settled, "closed");
  } finally {
    for (const s of sockets) s.destroy();
    await relay.stop();
  }
});
