// A domain over its queue quota is full for now: RCPT gets 452 4.2.2 (temporary; the sender retries
// after the customer has collected), and nothing is queued. At end of DATA the real size counts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { startTestRelay } from "../support/relay.ts";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { runTranscript, TranscriptPeer } from "../support/transcript.ts";
import { messageCount, OPEN } from "./intake_helpers.ts";

test("RCPT to a domain over its quota gets 452 4.2.2; a declared SIZE that would overflow it too", async () => {
  const relay = await startTestRelay({ odmr: false });
  try {
    relay.store.updateDomain("example.test", { quotaBytes: 1000 });
    await runTranscript(
      relay.smtp,
      `${OPEN}
      > MAIL FROM:<a@remote.test> SIZE=5000
      < 250 *
      > RCPT TO:<user@example.test>
      < 452 4.2.2 *
      > RSET
      < 250 *
      > MAIL FROM:<a@remote.test> SIZE=100
      < 250 *
      > RCPT TO:<user@example.test>
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    assert.equal(messageCount(relay), 0);
  } finally {
    await relay.stop();
  }
});

/** Sends one message of `size` bytes without declaring SIZE; resolves with the reply to the final dot. */
async function sendUndeclared(port: number, size: number): Promise<string> {
  const peer = await TranscriptPeer.connect(port, { timeoutMs: 30_000 });
  try {
    await peer.expect("220 *");
    await peer.sendLine("EHLO client.test");
    await peer.readReply();
    await peer.sendLine("MAIL FROM:<a@remote.test>");
    await peer.expect("250 *");
    await peer.sendLine("RCPT TO:<user@example.test>");
    await peer.expect("250 *");
    await peer.sendLine("DATA");
    await peer.expect("354 *");
    const line = "x".repeat(998) + "\r\n";
    const block = line.repeat(64);
    for (let sent = 0; sent < size; sent += block.length) await peer.send(block);
    await peer.send(".\r\n");
    return (await peer.readLine()) ?? "";
  } finally {
    peer.close();
  }
}

test("the quota counts the real size at end of DATA: parallel undeclared 5 MB messages cannot overrun it", async () => {
  const relay = await startTestRelay({ odmr: false });
  try {
    relay.store.updateDomain("example.test", { quotaBytes: 10 * 1024 });
    const replies = await Promise.all([1, 2, 3, 4, 5].map(() => sendUndeclared(relay.smtpPort, 5_000_000)));
    assert.ok(replies.every((r) => r.startsWith("452 4.2.2 ")), replies.join("\n"));
    assert.equal(messageCount(relay), 0, "nothing is kept");
    // With room for exactly one, one of five parallel senders gets 250 and the rest 452.
    relay.store.updateDomain("example.test", { quotaBytes: 7_000_000 });
    const second = await Promise.all([1, 2, 3, 4, 5].map(() => sendUndeclared(relay.smtpPort, 5_000_000)));
    assert.equal(second.filter((r) => r.startsWith("250 ")).length, 1, second.join("\n"));
    assert.equal(second.filter((r) => r.startsWith("452 4.2.2 ")).length, 4);
    assert.equal(messageCount(relay), 1);
    const spool = readdirSync(join(relay.dataDir, "spool"));
    assert.deepEqual(spool, [], "no spool file is left behind");
  } finally {
    await relay.stop();
  }
});
