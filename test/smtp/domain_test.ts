import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  addressLiteralFor,
  isAddressLiteral,
  isIpv4Address,
  isIpv6Address,
  isValidAtrnDomain,
  isValidDomain,
  parseAtrnDomains,
} from "../../src/smtp/domain.ts";
import { assertSmtpError } from "./helpers.ts";

describe("isValidDomain / isValidAtrnDomain", () => {
  const table: [string, boolean, boolean][] = [
    // name, valid domain, valid for ATRN
    ["example.org", true, true],
    ["EXAMPLE.ORG", true, true],
    ["a-b.example", true, true],
    ["1.2.3.4", true, true],
    ["xn--bcher-kva.example", true, true],
    ["localhost", true, false],
    ["a", true, false],
    ["", false, false],
    ["example.org.", false, false],
    [".example.org", false, false],
    ["a..b", false, false],
    ["_dmarc.example.org", false, false],
    ["a_b.example", false, false],
    ["-a.example", false, false],
    ["a-.example", false, false],
    ["a b.example", false, false],
    ["[1.2.3.4]", false, false],
    ["*.example", false, false],
    ["b\u00fccher.example", false, false],
    [`${"a".repeat(63)}.example`, true, true],
    [`${"a".repeat(64)}.example`, false, false],
    [`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}`, true, true],
    [`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}x`, false, false],
  ];
  for (const [name, valid, atrn] of table) {
    test(JSON.stringify(name), () => {
      assert.equal(isValidDomain(name), valid, "isValidDomain");
      assert.equal(isValidAtrnDomain(name), atrn, "isValidAtrnDomain");
    });
  }
  test("U-labels only with allowUtf8", () => {
    assert.equal(isValidDomain("b\u00fccher.example", { allowUtf8: true }), true);
    assert.equal(isValidDomain("-\u00fc.example", { allowUtf8: true }), false);
  });
});

describe("IP addresses and literals", () => {
  const v4: [string, boolean][] = [
    ["192.0.2.1", true],
    ["0.0.0.0", true],
    ["255.255.255.255", true],
    ["256.0.0.1", false],
    ["1.2.3", false],
    ["1.2.3.4.5", false],
    ["1.2.3.", false],
    ["a.b.c.d", false],
    ["1.2.3.1234", false],
  ];
  for (const [ip, ok] of v4) test(`IPv4 ${ip}`, () => assert.equal(isIpv4Address(ip), ok));

  const v6: [string, boolean][] = [
    ["2001:db8:0:0:0:0:0:1", true],
    ["2001:db8::1", true],
    ["::1", true],
    ["::", true],
    ["fe80::", true],
    ["::ffff:192.0.2.1", true],
    ["0:0:0:0:0:ffff:192.0.2.1", true],
    ["2001:db8::1::2", false],
    ["2001:db8:0:0:0:0:0:1:2", false],
    ["1:2:3:4:5:6:7::", false],
    ["2001:db8::g", false],
    ["12345::1", false],
    ["::ffff:192.0.2.256", false],
    ["1:2:3:4:5:6:192.0.2.1:1", false],
    ["", false],
    [":", false],
  ];
  for (const [ip, ok] of v6) test(`IPv6 ${ip}`, () => assert.equal(isIpv6Address(ip), ok));

  const literals: [string, boolean][] = [
    ["[192.0.2.1]", true],
    ["[IPv6:2001:db8::1]", true],
    ["[ipv6:2001:db8::1]", true],
    ["[IPv6:192.0.2.1]", false],
    ["[x-tag:content]", true],
    ["[x-tag:]", false],
    ["[x-tag:a]b]", false],
    ["[192.0.2.1", false],
    ["192.0.2.1", false],
    ["[]", false],
    ["[hello]", false],
  ];
  for (const [literal, ok] of literals) {
    test(`literal ${literal}`, () => assert.equal(isAddressLiteral(literal), ok));
  }

  test("addressLiteralFor", () => {
    assert.equal(addressLiteralFor("192.0.2.1"), "[192.0.2.1]");
    assert.equal(addressLiteralFor("2001:db8::1"), "[IPv6:2001:db8::1]");
  });
});

describe("parseAtrnDomains", () => {
  const accepted: [string, string[]][] = [
    ["", []],
    ["   ", []],
    ["example.org", ["example.org"]],
    ["Example.ORG", ["example.org"]],
    ["a.example,b.example", ["a.example", "b.example"]],
    // Lenient: spaces around commas.
    ["a.example, b.example", ["a.example", "b.example"]],
    ["a.example ,b.example", ["a.example", "b.example"]],
    ["a.example,B.example,a.EXAMPLE", ["a.example", "b.example"]],
  ];
  for (const [arg, domains] of accepted) {
    test(`accepts ${JSON.stringify(arg)}`, () => assert.deepEqual(parseAtrnDomains(arg), domains));
  }

  const refused: [string, string, { maxDomains?: number; maxLength?: number }?][] = [
    ["empty item", "a.example,,b.example"],
    ["trailing comma", "a.example,"],
    ["leading comma", ",a.example"],
    ["only a comma", ","],
    ["address literal", "[192.0.2.1]"],
    ["IPv6 literal", "[IPv6:::1]"],
    ["underscore", "_x.example"],
    ["single label", "localhost"],
    ["single label in list", "a.example,localhost"],
    ["trailing dot", "example.org."],
    ["wildcard", "*.example.org"],
    ["ETRN-style @", "@example.org"],
    ["space inside a name", "a example.org"],
    ["too many domains", Array.from({ length: 101 }, (_, i) => `d${i}.example`).join(","), {
      maxLength: 10_000,
    }],
    ["configured domain cap", "a.example,b.example,c.example", { maxDomains: 2 }],
    ["over-long argument", "a".repeat(100_000) + ".example"],
    ["over the default 1000 characters", Array.from({ length: 90 }, (_, i) => `d${i}.example`).join(",")],
    ["configured length cap", "abcdef.example", { maxLength: 10 }],
  ];
  for (const [name, arg, options] of refused) {
    test(`refuses ${name}`, () => void assertSmtpError(() => parseAtrnDomains(arg, options), 501, "5.5.4"));
  }

  test("exactly 100 domains are accepted", () => {
    const arg = Array.from({ length: 100 }, (_, i) => `d${i}.example`).join(",");
    assert.equal(parseAtrnDomains(arg, { maxLength: 10_000 }).length, 100);
  });
});
