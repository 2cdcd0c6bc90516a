import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { originalEnvelopeId, originalRecipient } from "../../src/dsn/delivery_status.ts";
import { xtextEncode } from "../../src/smtp/params.ts";

describe("originalEnvelopeId: ENVID xtext-decoded (RFC 3461 4, 4.4)", () => {
  const table: [string | null | undefined, string | undefined][] = [
    ["QQ314159", "QQ314159"],
    ["Q3+2Breport+3D1", "Q3+report=1"],
    ["a+20b", "a b"],
    ["lower+2bhex", "lower+hex"],
    ["+C3+A9t+C3+A9", "\u00e9t\u00e9"],
    // Not valid xtext (a bare "+"): shown as it came rather than dropped.
    ["bad+", "bad+"],
    ["", undefined],
    [null, undefined],
    [undefined, undefined],
  ];
  for (const [envid, expected] of table) {
    test(String(envid), () => assert.equal(originalEnvelopeId(envid), expected));
  }

  test("round trip through xtextEncode", () => {
    const id = "id with spaces, + and = and \u00fc";
    assert.equal(originalEnvelopeId(xtextEncode(id)), id);
  });
});

describe("originalRecipient: ORCPT as stored (RFC 3461 4.2, RFC 6533 3)", () => {
  const table: [string | null | undefined, { type: string; address: string } | undefined][] = [
    ["rfc822;Bob@Customer.example", { type: "rfc822", address: "Bob@Customer.example" }],
    ["RFC822;bob+tag@customer.example", { type: "RFC822", address: "bob+tag@customer.example" }],
    ["utf-8;\\x{7528}\\x{6237}@customer.example", {
      type: "utf-8",
      address: "\u7528\u6237@customer.example",
    }],
    ["UTF-8;j\\x{FC}rgen@x.example", { type: "UTF-8", address: "j\u00fcrgen@x.example" }],
    // Not a code point: left as it is.
    ["utf-8;a\\x{D800}b@x", { type: "utf-8", address: "a\\x{D800}b@x" }],
    ["x400;/G=Bob/", { type: "x400", address: "/G=Bob/" }],
    ["no-type@x.example", { type: "rfc822", address: "no-type@x.example" }],
    [null, undefined],
    ["", undefined],
  ];
  for (const [orcpt, expected] of table) {
    test(String(orcpt), () => assert.deepEqual(originalRecipient(orcpt), expected));
  }
});
