import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  type MailParamOptions,
  type MailParams,
  parseEsmtpParams,
  parseMailParams,
  parseRcptParams,
  type RcptParams,
  xtextDecode,
  xtextEncode,
} from "../../src/smtp/params.ts";
import { assertSmtpError } from "./helpers.ts";

const all: MailParamOptions = { size: true, eightBitMime: true, smtputf8: true, dsn: true, auth: true };

describe("parseEsmtpParams", () => {
  test("tokens", () => {
    assert.deepEqual(parseEsmtpParams(" size=10  body=8BITMIME SMTPUTF8 "), [
      { keyword: "SIZE", value: "10" },
      { keyword: "BODY", value: "8BITMIME" },
      { keyword: "SMTPUTF8", value: null },
    ]);
    assert.deepEqual(parseEsmtpParams(""), []);
  });
  const bad: [string, string][] = [
    ["empty value", "SIZE="],
    ["leading hyphen", "-X=1"],
    ["equals in value", "X=a=b"],
    ["underscore in keyword", "X_Y=1"],
    ["non-ASCII value", "X=\u00e9"],
    ["control in value", "X=a\x01"],
  ];
  for (const [name, raw] of bad) {
    test(`refuses ${name}`, () => void assertSmtpError(() => parseEsmtpParams(raw), 501, "5.5.4"));
  }
  test("refuses duplicates, case-insensitively", () => {
    assertSmtpError(() => parseEsmtpParams("SIZE=1 size=2"), 501, "5.5.4");
  });
});

describe("parseMailParams", () => {
  const accepted: [string, MailParams][] = [
    ["", { smtputf8: false }],
    ["SIZE=0", { smtputf8: false, size: 0 }],
    ["SIZE=12345", { smtputf8: false, size: 12345 }],
    ["SIZE=99999999999999999999", { smtputf8: false, size: Number.POSITIVE_INFINITY }],
    ["BODY=7BIT", { smtputf8: false, body: "7BIT" }],
    ["body=8bitmime", { smtputf8: false, body: "8BITMIME" }],
    ["SMTPUTF8", { smtputf8: true }],
    ["RET=FULL", { smtputf8: false, ret: "FULL" }],
    ["ret=hdrs", { smtputf8: false, ret: "HDRS" }],
    ["ENVID=QQ314159+2B1", { smtputf8: false, envid: "QQ314159+2B1" }],
    ["ENVID=" + "x".repeat(100), { smtputf8: false, envid: "x".repeat(100) }],
    ["AUTH=<>", { smtputf8: false, auth: null }],
    ["AUTH=e+3Dmc2@example.com", { smtputf8: false, auth: "e=mc2@example.com" }],
    [
      "SIZE=1 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc",
      { smtputf8: true, size: 1, body: "8BITMIME", ret: "HDRS", envid: "abc" },
    ],
  ];
  for (const [raw, expected] of accepted) {
    test(`accepts ${JSON.stringify(raw)}`, () => assert.deepEqual(parseMailParams(raw, all), expected));
  }

  const refused: [string, string, number, MailParamOptions?][] = [
    ["SIZE without value", "SIZE", 501],
    ["SIZE not digits", "SIZE=12a", 501],
    ["SIZE negative", "SIZE=-1", 501],
    ["SIZE 21 digits", "SIZE=" + "1".repeat(21), 501],
    ["BODY unknown", "BODY=BINARYMIME", 501],
    ["BODY without value", "BODY", 501],
    ["SMTPUTF8 with value", "SMTPUTF8=yes", 501],
    ["RET unknown", "RET=SOME", 501],
    ["ENVID 101", "ENVID=" + "x".repeat(101), 501],
    ["ENVID bad xtext", "ENVID=a+zz", 501],
    ["ENVID NUL", "ENVID=a+00", 501],
    ["AUTH empty", "AUTH", 501],
    ["AUTH CR", "AUTH=a+0Db@c", 501],
    ["duplicate", "SIZE=1 SIZE=1", 501],
    ["unknown keyword", "XFOO=1", 555],
    ["RCPT keyword on MAIL", "NOTIFY=NEVER", 555],
    ["SIZE not advertised", "SIZE=1", 555, { eightBitMime: true }],
    ["BODY not advertised", "BODY=8BITMIME", 555, { size: true }],
    ["SMTPUTF8 not advertised", "SMTPUTF8", 555, { size: true }],
    ["DSN not advertised", "RET=FULL", 555, { size: true }],
    ["ENVID without DSN", "ENVID=x", 555, {}],
    ["AUTH not advertised", "AUTH=<>", 555, {}],
  ];
  for (const [name, raw, code, options] of refused) {
    test(`refuses ${name}`, () => void assertSmtpError(() => parseMailParams(raw, options ?? all), code));
  }
});

describe("parseRcptParams", () => {
  const accepted: [string, RcptParams][] = [
    ["", {}],
    ["NOTIFY=NEVER", { notify: ["NEVER"] }],
    ["notify=never", { notify: ["NEVER"] }],
    ["NOTIFY=SUCCESS", { notify: ["SUCCESS"] }],
    ["NOTIFY=SUCCESS,FAILURE,DELAY", { notify: ["SUCCESS", "FAILURE", "DELAY"] }],
    ["NOTIFY=delay,failure", { notify: ["DELAY", "FAILURE"] }],
    [
      "ORCPT=rfc822;Bob+40example.org",
      { orcpt: { addrType: "rfc822", encoded: "Bob+40example.org", address: "Bob@example.org" } },
    ],
    [
      "NOTIFY=FAILURE ORCPT=rfc822;a@b",
      { notify: ["FAILURE"], orcpt: { addrType: "rfc822", encoded: "a@b", address: "a@b" } },
    ],
  ];
  for (const [raw, expected] of accepted) {
    test(`accepts ${JSON.stringify(raw)}`, () =>
      assert.deepEqual(parseRcptParams(raw, { dsn: true }), expected));
  }

  const refused: [string, string, number, boolean?][] = [
    ["NEVER combined", "NOTIFY=NEVER,SUCCESS", 501],
    ["SUCCESS then NEVER", "NOTIFY=SUCCESS,NEVER", 501],
    ["repeated item", "NOTIFY=SUCCESS,SUCCESS", 501],
    ["empty item", "NOTIFY=SUCCESS,,DELAY", 501],
    ["trailing comma", "NOTIFY=SUCCESS,", 501],
    ["unknown item", "NOTIFY=ALWAYS", 501],
    ["NOTIFY without value", "NOTIFY", 501],
    ["ORCPT without semicolon", "ORCPT=rfc822", 501],
    ["ORCPT empty address", "ORCPT=rfc822;", 501],
    ["ORCPT bad type", "ORCPT=;a@b", 501],
    ["ORCPT bad xtext", "ORCPT=rfc822;a+4", 501],
    ["ORCPT over 500", "ORCPT=rfc822;" + "a".repeat(494), 501],
    ["ORCPT LF", "ORCPT=rfc822;a+0Ab", 501],
    ["duplicate NOTIFY", "NOTIFY=NEVER NOTIFY=NEVER", 501],
    ["MAIL keyword on RCPT", "SIZE=1", 555],
    ["DSN not advertised", "NOTIFY=NEVER", 555, false],
  ];
  for (const [name, raw, code, dsn] of refused) {
    test(`refuses ${name}`, () =>
      void assertSmtpError(() => parseRcptParams(raw, { dsn: dsn ?? true }), code));
  }

  test("ORCPT of exactly 500 characters is accepted", () => {
    const value = "rfc822;" + "a".repeat(493);
    assert.equal(value.length, 500);
    assert.equal(parseRcptParams(`ORCPT=${value}`, { dsn: true }).orcpt?.address.length, 493);
  });
});

describe("xtext", () => {
  const pairs: [string, string][] = [
    ["abc", "abc"],
    ["a+b", "a+2Bb"],
    ["a=b", "a+3Db"],
    ["a b", "a+20b"],
    ["\u00e9", "+C3+A9"],
    ["\r\n", "+0D+0A"],
    ["~!", "~!"],
    ["", ""],
  ];
  for (const [plain, encoded] of pairs) {
    test(`${JSON.stringify(plain)} <-> ${encoded}`, () => {
      assert.equal(xtextEncode(plain), encoded);
      assert.equal(xtextDecode(encoded), plain);
    });
  }
  const invalid = ["a b", "a=b", "+", "+4", "+GG", "\u00e9", "+FF", "+C3"];
  for (const text of invalid) {
    test(`decode refuses ${JSON.stringify(text)}`, () => assert.equal(xtextDecode(text), null));
  }
  test("lower-case hex tolerated", () => assert.equal(xtextDecode("a+2bb"), "a+b"));
});
