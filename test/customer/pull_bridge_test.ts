// The pull bridge must end when the local mail server goes away, even while a write to it is
// waiting for "drain" (a closed socket never emits it).
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { pull } from "../../src/customer/pull.ts";
import { silentLogger } from "../../src/log/logger.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scripted provider: EHLO, AUTH CRAM-MD5, ATRN 250, then floods the customer with data. */
function fakeProvider(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.write("220 provider.test ESMTP\r\n");
    let buffer = "";
    let turned = false;
    socket.on("data", (chunk) => {
      if (turned) return; // after the turn: the local server's greeting; ignore and flood
      buffer += chunk.toString("latin1");
      for (let i; (i = buffer.indexOf("\r\n")) >= 0;) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (line.startsWith("EHLO")) socket.write("250-provider.test\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n");
        else if (line === "AUTH CRAM-MD5") {
          socket.write(`334 ${Buffer.from("<1.2@provider.test>").toString("base64")}\r\n`);
        } else if (line.startsWith("ATRN")) {
          turned = true;
          socket.write("250 OK now reversing the connection\r\n");
          const block = Buffer.alloc(1 << 20, "x");
          const flood = () => {
            for (let n = 0; n < 64 && !socket.destroyed; n++) {
              if (!socket.write(block)) return void socket.once("drain", flood);
            }
          };
          setTimeout(flood, 50);
        } else socket.write("235 2.7.0 ok\r\n");
      }
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("pull returns when the local server stops reading and closes during a large transfer", async () => {
  const provider = await fakeProvider();
  const local = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.write("220 local.test ready\r\n");
    socket.pause(); // never reads: the bridge's writes back up
    setTimeout(() => socket.destroy(), 300);
  });
  await new Promise<void>((r) => local.listen(0, "127.0.0.1", () => r()));
  try {
    const result = await Promise.race([
      pull({
        host: "127.0.0.1",
        port: (provider.address() as net.AddressInfo).port,
        tls: "none",
        username: "u",
        secret: "s",
        domains: ["a.test"],
        helo: "customer.test",
        localHost: "127.0.0.1",
        localPort: (local.address() as net.AddressInfo).port,
        connectTimeoutMs: 5000,
        timeoutMs: 5000,
        logger: silentLogger(),
      }),
      sleep(20_000).then(() => "hung" as const),
    ]);
    assert.notEqual(result, "hung", "pull must not hang on a vanished local server");
  } finally {
    provider.close();
    local.close();
  }
});
