import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { findInvalidCommandChar, parseCommand } from "../../src/smtp/command.ts";

describe("parseCommand", () => {
  const table: [string, string, string][] = [
    ["EHLO example.org", "EHLO", "example.org"],
    ["ehlo example.org", "EHLO", "example.org"],
    ["eHlO Example.ORG", "EHLO", "Example.ORG"],
    ["QUIT", "QUIT", ""],
    ["quit   ", "QUIT", ""],
    ["QUIT \t", "QUIT", ""],
    ["MAIL FROM:<a@b> SIZE=10  ", "MAIL", "FROM:<a@b> SIZE=10"],
    ["RCPT  TO:<a@b>", "RCPT", "TO:<a@b>"],
    ["NOOP anything goes here", "NOOP", "anything goes here"],
    ["ATRN a.example,b.example", "ATRN", "a.example,b.example"],
    ["AUTH\tPLAIN", "AUTH", "PLAIN"],
    ["", "", ""],
    ["   ", "", ""],
    // Unicode case mapping must not make a known verb: "\u0131" (dotless i) upper-cases to "I".
    ["qu\u0131t", "QU\u0131T", ""],
  ];
  for (const [line, verb, arg] of table) {
    test(JSON.stringify(line), () => assert.deepEqual(parseCommand(line), { verb, arg }));
  }
});

describe("findInvalidCommandChar", () => {
  const table: [string, boolean, string | null][] = [
    ["MAIL FROM:<a@b>", false, null],
    ["NOOP\tx", false, null],
    ["MAIL FROM:<a\0@b>", false, "nul"],
    ["EHLO x\ry", false, "cr"],
    ["EHLO x\ny", false, "lf"],
    ["EHLO x\x1by", false, "control"],
    ["EHLO x\x7fy", false, "control"],
    ["EHLO x\x01", false, "control"],
    ["MAIL FROM:<j\u00f6rg@b>", false, "non-ascii"],
    ["MAIL FROM:<j\u00f6rg@b>", true, null],
    ["MAIL FROM:<j\u00f6rg\0@b>", true, "nul"],
    ["RCPT TO:<\u{1f600}@b>", true, null],
  ];
  for (const [line, allowNonAscii, expected] of table) {
    test(`${JSON.stringify(line)} allowNonAscii=${allowNonAscii}`, () => {
      assert.equal(findInvalidCommandChar(line, { allowNonAscii }), expected);
    });
  }
});
