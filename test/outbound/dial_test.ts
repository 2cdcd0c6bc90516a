import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { dial, mxEndpoints, parseSmarthost } from "../../src/outbound/dial.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { TEST_TIMEOUTS } from "./_helpers.ts";

describe("dial", () => {
  test("parseSmarthost takes HOST:PORT and [IPv6]:PORT, and names what is wrong", () => {
    assert.deepEqual(parseSmarthost("SMTP.Example.net:587"), { host: "smtp.example.net", port: 587 });
    assert.deepEqual(parseSmarthost("127.0.0.1:25"), { host: "127.0.0.1", port: 25 });
    assert.deepEqual(parseSmarthost("[2001:db8::1]:2525"), { host: "2001:db8::1", port: 2525 });
    for (const bad of ["smtp.example.net", "host:0", "host:65536", "[nonsense]:25", "a b:25", ":25"]) {
      assert.throws(() => parseSmarthost(bad), /Smarthost/, bad);
    }
  });

  test("mxEndpoints: hosts in order, each host's addresses in order, one port", () => {
    const hosts = [
      { name: "a.test", addresses: ["127.0.0.2", "::1"], preference: 10 },
      { name: "b.test", addresses: ["127.0.0.3"], preference: 20 },
    ];
    assert.deepEqual(mxEndpoints(hosts, 2525), [
      { host: "a.test", address: "127.0.0.2", port: 2525 },
      { host: "a.test", address: "::1", port: 2525 },
      { host: "b.test", address: "127.0.0.3", port: 2525 },
    ]);
    assert.equal(mxEndpoints(hosts)[0]?.port, 25);
  });

  test("at most maxConnections connections per attempt", async () => {
    const sink = await startFakeMx({ host: "127.0.0.20" });
    await sink.close(); // its port is now closed on every address used below
    const endpoints = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"].map((address) => ({
      host: `h-${address}`,
      address,
      port: sink.port,
    }));
    const result = await dial(endpoints, {
      hostname: "relay.test",
      tls: { mode: "opportunistic" },
      timeouts: TEST_TIMEOUTS,
      maxConnections: 2,
    });
    assert.equal(result.ok, false);
    assert.equal(result.attempts.length, 2);
  });

  test("STARTTLS advertised but refused: the opportunistic session goes on in plaintext", async () => {
    const sink = await startFakeMx({ keywords: ["PIPELINING", "STARTTLS"] }); // no TLS context: 502
    try {
      const result = await dial([{ host: "mx.test", address: "127.0.0.1", port: sink.port }], {
        hostname: "relay.test",
        tls: { mode: "opportunistic" },
        timeouts: TEST_TIMEOUTS,
      });
      assert.equal(result.ok, true);
      if (!result.ok) return;
      assert.equal(result.session.tls, null);
      assert.ok(result.session.client.capabilities.has("PIPELINING"));
      await result.session.client.quit();
      assert.deepEqual(sink.sessions[0]!.commands.slice(0, 2).map((c) => c.split(" ")[0]), [
        "EHLO",
        "STARTTLS",
      ]);
    } finally {
      await sink.close();
    }
  });
});
