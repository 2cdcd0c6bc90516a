import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as codes from "../../src/smtp/reply_codes.ts";
import { type Reply, SmtpError } from "../../src/smtp/reply_codes.ts";

/** Every exported reply, factories called with a sample argument. */
function allReplies(): [string, Reply][] {
  const replies: [string, Reply][] = [];
  for (const [name, value] of Object.entries(codes)) {
    if (name === "SmtpError") continue;
    const reply = typeof value === "function" ? (value as (arg: string) => Reply)("mx.example") : value;
    replies.push([name, reply as Reply]);
  }
  return replies;
}

describe("reply constants", () => {
  const replies = allReplies();

  test("there are constants to check", () => {
    assert.ok(replies.length > 50);
  });

  for (const [name, reply] of replies) {
    test(`${name} is consistent`, () => {
      // The name carries the number (DESIGN 4.4).
      assert.match(name, /^C\d{3}[A-Z]/);
      assert.equal(Number(name.slice(1, 4)), reply.code, "code matches the name");
      assert.ok(reply.code >= 200 && reply.code <= 559, "first digit 2-5 (RFC 5321 4.2)");
      assert.ok(reply.lines.length >= 1);
      for (const line of reply.lines) assert.match(line, /^[\x20-\x7e]*$/, "printable ASCII text");
      if (reply.enhanced !== undefined) {
        assert.match(reply.enhanced, /^[245]\.\d{1,3}\.\d{1,3}$/, "RFC 3463 syntax");
        assert.equal(reply.enhanced[0], String(reply.code)[0], "class matches the code (RFC 3463 2)");
      }
      if (Math.floor(reply.code / 100) === 3) {
        assert.equal(reply.enhanced, undefined, "no enhanced code on 3xx");
      }
    });
  }

  test("shared constants cannot be modified", () => {
    assert.throws(() => {
      (codes.C250Ok.lines as string[]).push("x");
    });
    assert.throws(() => {
      (codes.C250Ok as { code: number }).code = 500;
    });
  });

  const exact: [Reply, number, string | undefined][] = [
    [codes.C450AtrnRefused, 450, "4.7.1"],
    [codes.C453NoMail, 453, "4.2.0"],
    [codes.C530AuthRequired, 530, "5.7.0"],
    [codes.C550RelayDenied, 550, "5.7.1"],
    [codes.C552TooBig, 552, "5.3.4"],
    [codes.C553UnicodeRecipientNotAllowed, 553, "5.6.7"],
    [codes.C550UnicodeSenderNotAllowed, 550, "5.6.7"],
    [codes.C554TooManyHops, 554, "5.4.6"],
    [codes.C550BareLineEndingInData, 550, "5.6.0"],
    [codes.C354StartInput, 354, undefined],
    [codes.C220Greeting("mx.example"), 220, undefined],
    [codes.C421Timeout("mx.example"), 421, "4.4.2"],
  ];
  for (const [reply, code, enhanced] of exact) {
    test(`${code} ${enhanced ?? "-"} ${reply.lines[0]}`, () => {
      assert.equal(reply.code, code);
      assert.equal(reply.enhanced, enhanced);
    });
  }
});

describe("SmtpError", () => {
  test("carries the reply and keeps the log reason out of it", () => {
    const cause = new Error("database is locked");
    const error = new SmtpError(codes.C451LocalError, { cause, logReason: "queue insert failed" });
    assert.ok(error instanceof Error);
    assert.equal(error.name, "SmtpError");
    assert.equal(error.reply, codes.C451LocalError);
    assert.equal(error.logReason, "queue insert failed");
    assert.equal(error.message, "queue insert failed");
    assert.equal(error.cause, cause);
    assert.ok(!error.reply.lines.join(" ").includes("database"));
  });

  test("without options the message is the reply", () => {
    const error = new SmtpError(codes.C503NeedMail);
    assert.equal(error.logReason, undefined);
    assert.equal(error.message, "503 Error: need MAIL command");
    assert.equal(error.cause, undefined);
  });
});
