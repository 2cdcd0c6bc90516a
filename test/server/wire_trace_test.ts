// The wire trace (logWire, level trace) must never contain credentials: the AUTH line's argument
// and every SASL continuation line are redacted (DESIGN.md 8: "AUTH and DATA redacted").
import { test } from "node:test";
import assert from "node:assert/strict";
import { cramResponse, ODMR_SEED, openOdmr, startOdmrRelay } from "./odmr_helpers.ts";

test("the wire trace redacts AUTH and the CRAM-MD5 response", async () => {
  const relay = await startOdmrRelay({ logLevel: "trace", flags: { logWire: true } });
  try {
    const account = ODMR_SEED.find((a) => !a.disabled)!;
    const peer = await openOdmr(relay.odmrPort);
    await peer.sendLine("AUTH CRAM-MD5");
    const challenge = await peer.expect("334 *");
    const response = cramResponse(challenge.slice(4), account.username, account.password);
    await peer.sendLine(response);
    await peer.expect("235 *");
    await peer.sendLine("QUIT");
    await peer.expect("221 *");
    peer.close();
    const trace = relay.logs.filter((l) => l.includes("msg=recv") || l.includes('"recv"'));
    assert.ok(trace.some((l) => l.includes("EHLO customer.test")), "the trace is on");
    assert.ok(!relay.logs.some((l) => l.includes(response)), "the CRAM-MD5 response never reaches the log");
    assert.ok(trace.some((l) => l.includes("[redacted]")));
  } finally {
    await relay.stop();
  }
});
