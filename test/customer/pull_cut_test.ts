// A collection the provider cuts off before its QUIT (it died, the network failed) is not reported as
// a complete session: pull exits 6, so a cron job or the daemon's backoff can tell (nothing is lost:
// what the local server did not confirm stays queued at the provider).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { pull } from "../../src/customer/pull.ts";
import { EXIT_CODES } from "../../src/customer/outcome.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { pollOptions } from "./_helpers.ts";

/** A provider that turns, says EHLO to the local server, and then vanishes without QUIT. */
function vanishingProvider(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    let step = 0;
    socket.write("220 provider.test ESMTP\r\n");
    let buffer = "";
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      for (let end = buffer.indexOf("\r\n"); end >= 0; end = buffer.indexOf("\r\n")) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (step === 0 && line.startsWith("EHLO")) {
          socket.write("250-provider.test\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n");
        } else if (step === 1) socket.write("334 PDEyMzQ1QHByb3ZpZGVyLnRlc3Q+\r\n");
        else if (step === 2) socket.write("235 2.7.0 ok\r\n");
        else if (step === 3) socket.write("250 2.0.0 OK now reversing the connection\r\n");
        else if (line.startsWith("220 ")) socket.write("EHLO provider.test\r\n");
        else if (line.startsWith("250 ")) socket.destroy(); // gone, mid-session
        if (step < 4) step++;
      }
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () => new Promise((r) => server.close(() => r())),
      }))
  );
}

test("a session the provider cuts off before QUIT is not a success (exit 6)", async () => {
  const provider = await vanishingProvider();
  const local = await startFakeMx({ name: "local.test" });
  try {
    const result = await pull({ host: "127.0.0.1", port: provider.port, ...pollOptions(local.port) });
    assert.equal(result.outcome, "connect-failed", result.message);
    assert.equal(EXIT_CODES[result.outcome], 6);
    assert.match(result.message, /cut off before the provider's QUIT/);
  } finally {
    await provider.close();
    await local.close();
  }
});
