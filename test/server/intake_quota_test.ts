// A domain over its queue quota is full for now: RCPT gets 452 4.2.2 (temporary; the sender retries
// after the customer has collected), and nothing is queued.
import assert from "node:assert/strict";
import { test } from "node:test";
import { startTestRelay } from "../support/relay.ts";
import { runTranscript } from "../support/transcript.ts";
import { messageCount, OPEN } from "./intake_helpers.ts";

test("RCPT to a domain over its quota gets 452 4.2.2; a declared SIZE that would overflow it too", async () => {
  const relay = await startTestRelay({ odmr: false });
  try {
    relay.store.updateDomain("example.test", { quotaBytes: 1000 });
    await runTranscript(
      relay.smtpPort,
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
