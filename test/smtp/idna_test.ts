import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { asciiLowerCase, canonicalDomain, displayDomain } from "../../src/smtp/idna.ts";

describe("canonicalDomain", () => {
  const cases: [string, string | null][] = [
    ["example.test", "example.test"],
    ["EXAMPLE.Test", "example.test"],
    ["böb.test", "xn--bb-fka.test"],
    ["xn--bb-fka.test", "xn--bb-fka.test"],
    ["XN--BB-FKA.TEST", "xn--bb-fka.test"],
    ["münchen.xn--bb-fka.test", "xn--mnchen-3ya.xn--bb-fka.test"], // mixed label forms
    ["faß.de", "xn--fa-hia.de"], // nontransitional: ß is kept (IDNA2008)
    ["\u212Ailo.test", null], // Kelvin sign: UTS #46 maps it to k, but it is not a U-label
    ["ｅｘａｍｐｌｅ.test", null], // fullwidth letters: mapped, not a U-label
    ["xn--zz.test", null], // invalid Punycode
    ["xn--.test", null],
    ["a\u200db.test", null], // ZWJ outside its allowed context
    ["", null],
  ];
  for (const [input, want] of cases) {
    test(`${JSON.stringify(input)} -> ${want}`, () => assert.equal(canonicalDomain(input), want));
  }
});

describe("asciiLowerCase", () => {
  test("folds only A-Z", () => {
    assert.equal(asciiLowerCase("AbC\u212A\u00C9"), "abc\u212A\u00C9");
  });
});

describe("displayDomain", () => {
  test("shows U-labels", () => {
    assert.equal(displayDomain("xn--bb-fka.test"), "böb.test");
    assert.equal(displayDomain("example.test"), "example.test");
  });
});
