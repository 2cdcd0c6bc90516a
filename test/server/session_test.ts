// The session loop's one error boundary (docs/design.md#seams, 3): an unexpected exception in a
// handler is a bug; that connection gets `421 4.3.0` and is closed, every other one goes on, and the
// relay keeps serving.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startTestRelay } from "../support/relay.ts";
import { TranscriptPeer } from "../support/transcript.ts";

async function openSession(port: number): Promise<TranscriptPeer> {
  const peer = await TranscriptPeer.connect(port);
  await peer.expect("220 *");
  await peer.sendLine("EHLO client.test");
  await peer.readReply();
  await peer.sendLine("MAIL FROM:<a@remote.test>");
  await peer.expect("250 *");
  return peer;
}

test("a queue that fails at RCPT: 451 4.3.0 for that recipient; the session and the relay go on", async () => {
  const relay = await startTestRelay({ odmr: false });
  const store = relay.store as unknown as { recipientVerdict: (...args: unknown[]) => unknown };
  const real = store.recipientVerdict.bind(store);
  try {
    const bystander = await openSession(relay.smtpPort);
    const victim = await openSession(relay.smtpPort);
    store.recipientVerdict = () => {
      throw new Error("a bug");
    };
    await victim.sendLine("RCPT TO:<u@example.test>");
    await victim.expect("451 4.3.0 *");
    store.recipientVerdict = real;
    // The same session retries the recipient once the queue answers again.
    await victim.sendLine("RCPT TO:<u@example.test>");
    await victim.expect("250 *");
    victim.close();
    // The other session, opened before, goes on; and a new one works.
    await bystander.sendLine("RCPT TO:<u@example.test>");
    await bystander.expect("250 *");
    bystander.close();
    const fresh = await openSession(relay.smtpPort);
    await fresh.sendLine("RCPT TO:<u@example.test>");
    await fresh.expect("250 *");
    fresh.close();
    assert.ok(relay.logs.some((l) => l.includes("queue unavailable at RCPT") && l.includes("a bug")));
  } finally {
    store.recipientVerdict = real;
    await relay.stop();
  }
});
