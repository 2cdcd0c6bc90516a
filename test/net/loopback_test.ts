import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { isLoopback } from "../../src/net/loopback.ts";
import { isLoopbackHost } from "../../src/http/auth.ts";
import { loadConfig } from "../../src/config/load.ts";

describe("isLoopback", () => {
  test("localhost, 127.0.0.0/8 and ::1 in every spelling are loopback", () => {
    for (
      const host of [
        "localhost",
        "LocalHost",
        "localhost.",
        "127.0.0.1",
        "127.255.255.254",
        "127.0.0.1.",
        "::1",
        "[::1]",
        "0:0:0:0:0:0:0:1",
        "::0001",
        "::ffff:127.0.0.1",
        "[::FFFF:7f00:1]",
      ]
    ) {
      assert.equal(isLoopback(host), true, host);
    }
  });

  test("other addresses and names are not, nor forms a parser might read otherwise", () => {
    for (
      const host of [
        "",
        "0.0.0.0",
        "::",
        "128.0.0.1",
        "10.0.0.1",
        "::ffff:128.0.0.1",
        "::2",
        "fe80::1%lo",
        "127.0.0.256",
        "127.0.0",
        "127.1",
        "0177.0.0.1",
        "127.0.0.01",
        "0x7f.0.0.1",
        "localhost.evil.example",
        "evil.localhost",
        "localhost..",
        "127.0.0.1:8025",
        "[::1]:8025",
        "not an address",
      ]
    ) {
      assert.equal(isLoopback(host), false, host);
    }
  });

  test("the config and the Host check use the same rule", () => {
    // A listener on a loopback spelling needs no token; a wildcard one does.
    for (const listen of ["127.0.0.1:8025", "localhost:8025", "[::1]:8025", "[0:0:0:0:0:0:0:1]:8025"]) {
      const { config } = loadConfig({ env: {}, flags: { httpListen: listen } });
      assert.equal(config.httpListen?.port, 8025, listen);
      const host = config.httpListen!.host;
      const header = host.includes(":") ? `[${host}]:8025` : `${host}:8025`;
      assert.equal(isLoopbackHost(header), isLoopback(host), header);
    }
    assert.throws(() => loadConfig({ env: {}, flags: { httpListen: "0.0.0.0:8025" } }), /requires httpToken/);
    // A bare IPv6 literal is not a Host header.
    assert.equal(isLoopbackHost("::1"), false);
    assert.equal(isLoopbackHost("[::1]:8025"), true);
    assert.equal(isLoopbackHost("localhost:8025"), true);
    assert.equal(isLoopbackHost("[::1"), false);
  });
});
