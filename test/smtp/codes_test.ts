import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as codes from "../../src/smtp/codes.ts";
import * as replies from "../../src/smtp/reply_codes.ts";

describe("named reply codes", () => {
  const named = Object.entries(codes).filter(([name]) => name.startsWith("Code"));

  test("there are codes to check", () => {
    assert.ok(named.length > 20);
  });

  for (const [name, value] of named) {
    test(`${name} is the number in its name`, () => {
      // The name carries the number (DESIGN 4.4), and the number is an RFC 5321 4.2 reply code.
      assert.match(name, /^Code[2-5]\d\d[A-Z]/);
      assert.equal(value, Number(name.slice(4, 7)));
    });
  }

  test("every reply constant uses a code of the vocabulary", () => {
    const known = new Set<unknown>(named.map(([, value]) => value));
    for (const [name, value] of Object.entries(replies)) {
      if (name === "SmtpError") continue;
      const reply = typeof value === "function"
        ? (value as (arg: string) => replies.Reply)("mx.example")
        : value;
      assert.ok(known.has((reply as replies.Reply).code), `${name}: ${(reply as replies.Reply).code}`);
    }
  });

  test("isPositive is the 2yz class", () => {
    assert.equal(codes.isPositive({ code: codes.Code250Ok }), true);
    assert.equal(codes.isPositive({ code: codes.Code252CannotVerify }), true);
    assert.equal(codes.isPositive({ code: codes.Code354StartInput }), false);
    assert.equal(codes.isPositive({ code: codes.Code421Closing }), false);
    assert.equal(codes.isPositive({ code: codes.Code554Failed }), false);
  });
});
