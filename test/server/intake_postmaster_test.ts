// RFC 5321 4.5.1: `RCPT TO:<Postmaster>` (no domain) must be accepted. The relay has no mailbox of
// its own, so it is routed to `postmasterAddress` when that is configured.
import assert from "node:assert/strict";
import { test } from "node:test";
import { startTestRelay } from "../support/relay.ts";
import { runTranscript } from "../support/transcript.ts";
import { allRecipients, lastMessageId, OPEN } from "./intake_helpers.ts";

test("bare <Postmaster> goes to postmasterAddress when it is configured", async () => {
  const relay = await startTestRelay({
    odmr: false,
    flags: { postmasterAddress: "hostmaster@example.test" },
  });
  try {
    await runTranscript(
      relay.smtpPort,
      `${OPEN}
      > MAIL FROM:<a@remote.test>
      < 250 *
      > RCPT TO:<Postmaster>
      < 250 2.1.5 Ok
      > DATA
      < 354 *
      > Subject: to the postmaster
      > .
      < 250 *
      > QUIT
      < 221 *
    `,
    );
    const id = lastMessageId(relay);
    assert.deepEqual(
      allRecipients(relay).filter((r) => r.message_id === id).map((r) => [r.address, r.domain]),
      [["hostmaster@example.test", "example.test"]],
    );
  } finally {
    await relay.stop();
  }
});
