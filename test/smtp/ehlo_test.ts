import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildEhloReply, Capabilities, parseEhloReply, sizeLimitOf } from "../../src/smtp/ehlo.ts";
import { formatReply } from "../../src/smtp/reply.ts";

describe("buildEhloReply", () => {
  test("port 366 reply as in RFC 2645", () => {
    const reply = buildEhloReply("provider.example", "Hello client.example", ["AUTH CRAM-MD5", "ATRN"]);
    assert.equal(
      formatReply(reply, { enhanced: true }),
      "250-provider.example Hello client.example\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n",
    );
  });
  test("no keywords is a one-line reply", () => {
    assert.equal(
      formatReply(buildEhloReply("mx.example", "", []), { enhanced: false }),
      "250 mx.example\r\n",
    );
  });
  test("never carries an enhanced code", () => {
    assert.equal(buildEhloReply("mx.example", "hi", ["SIZE 10"]).enhanced, undefined);
  });
});

describe("parseEhloReply", () => {
  test("keywords, parameters, case and junk", () => {
    const caps = parseEhloReply([
      "customer.example ready",
      "PIPELINING",
      "size 10240000",
      "8BITMIME",
      "AUTH=LOGIN PLAIN",
      "AUTH PLAIN LOGIN",
      "auth CRAM-MD5 PLAIN",
      "",
      "  ",
      "-BAD",
      "X_UNDERSCORE",
      "BAD\u00e9 x",
      "DSN",
      "XTRA  a   b",
    ]);
    assert.deepEqual([...caps.keys()], ["PIPELINING", "SIZE", "8BITMIME", "AUTH", "DSN", "XTRA"]);
    assert.deepEqual(caps.get("size"), ["10240000"]);
    assert.deepEqual(caps.get("Auth"), ["PLAIN", "LOGIN", "CRAM-MD5"]);
    assert.deepEqual(caps.get("XTRA"), ["a", "b"]);
    assert.equal(caps.has("pipelining"), true);
    assert.equal(caps.has("STARTTLS"), false);
    assert.equal(caps.has("customer.example"), false, "first line is the greeting");
  });
  test("one-line reply has no keywords", () => {
    assert.equal(parseEhloReply(["mx.example"]).size, 0);
    assert.equal(parseEhloReply([]).size, 0);
  });
  test("Capabilities is case-insensitive for every operation", () => {
    const caps = new Capabilities();
    caps.set("starttls", []);
    assert.equal(caps.has("STARTTLS"), true);
    assert.deepEqual(caps.get("StartTls"), []);
    assert.equal(caps.delete("STARTtls"), true);
    assert.equal(caps.size, 0);
  });
});

describe("sizeLimitOf", () => {
  const table: [string[], number | undefined][] = [
    [["mx"], undefined],
    [["mx", "SIZE"], 0],
    [["mx", "SIZE 0"], 0],
    [["mx", "SIZE 52428800"], 52428800],
    [["mx", "SIZE lots"], undefined],
  ];
  for (const [lines, limit] of table) {
    test(lines.join(" / "), () => assert.equal(sizeLimitOf(parseEhloReply(lines)), limit));
  }
});
