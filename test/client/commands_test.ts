/**
 * The command lines the client composes (src/client/commands.ts): MAIL FROM and RCPT TO with only the
 * parameters the customer advertised, passed on as received, control characters never on the wire, and
 * the EHLO/HELO argument.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { clean, isAscii, mailCommand, rcptCommand, sanitizeHelloName } from "../../src/client/commands.ts";
import type { Recipient } from "../../src/client/outcome.ts";
import type { DeliverableMessage } from "../../src/client/types.ts";
import { Capabilities } from "../../src/smtp/ehlo.ts";
import { caps, deliverable } from "./_memory_customer.ts";

/** A 7-bit message without DSN data; `extra` overrides envelope fields. */
function message(extra: Partial<DeliverableMessage> = {}): DeliverableMessage {
  return deliverable([], { size: 4321, ...extra });
}

/** A recipient with DSN data. */
function rcpt(notify: string | null, orcpt: string | null, address = "user@example.test"): Recipient {
  return { id: 1, address, notify, orcpt };
}

const ALL = caps("SIZE 100000", "8BITMIME", "SMTPUTF8", "DSN", "AUTH PLAIN", "PIPELINING");

describe("mailCommand", () => {
  test("nothing advertised: no parameters at all", () => {
    const m = message({ eightBit: true, smtputf8: true, bodyType: "8BITMIME", ret: "FULL", envid: "abc" });
    assert.equal(mailCommand(m, new Capabilities()), "MAIL FROM:<sender@origin.test>");
  });

  test("the null sender", () => {
    assert.equal(mailCommand(message({ mailFrom: "" }), ALL), "MAIL FROM:<> SIZE=4321");
  });

  test("every parameter in order: SIZE, BODY, SMTPUTF8, RET, ENVID; never AUTH=", () => {
    const m = message({ eightBit: true, smtputf8: true, ret: "FULL", envid: "id+2B1" });
    assert.equal(
      mailCommand(m, ALL),
      "MAIL FROM:<sender@origin.test> SIZE=4321 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=id+2B1",
    );
  });

  test("SIZE is the exact size, also when SIZE is advertised without a limit", () => {
    assert.equal(mailCommand(message({ size: 7 }), caps("SIZE")), "MAIL FROM:<sender@origin.test> SIZE=7");
  });

  const bodies: [Partial<DeliverableMessage>, string][] = [
    [{ eightBit: true }, " BODY=8BITMIME"],
    [{ bodyType: "8bitmime" }, " BODY=8BITMIME"],
    [{ bodyType: "7BIT" }, " BODY=7BIT"],
    [{ bodyType: "7bit", eightBit: true }, " BODY=8BITMIME"],
    [{ bodyType: null }, ""],
    [{ bodyType: "BINARYMIME" }, ""],
  ];
  for (const [fields, expected] of bodies) {
    test(`8BITMIME advertised, ${JSON.stringify(fields)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(
        mailCommand(message(fields), caps("8BITMIME")),
        `MAIL FROM:<sender@origin.test>${expected}`,
      );
    });
  }

  test("BODY is never sent without 8BITMIME", () => {
    assert.equal(
      mailCommand(message({ eightBit: true }), caps("SIZE")),
      "MAIL FROM:<sender@origin.test> SIZE=4321",
    );
  });

  test("SMTPUTF8 when advertised and the message was received with it or its sender needs it", () => {
    const c = caps("SMTPUTF8");
    assert.equal(mailCommand(message({ smtputf8: true }), c), "MAIL FROM:<sender@origin.test> SMTPUTF8");
    assert.equal(
      mailCommand(message({ mailFrom: "jöran@origin.test" }), c),
      "MAIL FROM:<jöran@origin.test> SMTPUTF8",
    );
    assert.equal(mailCommand(message(), c), "MAIL FROM:<sender@origin.test>");
    assert.equal(mailCommand(message({ smtputf8: true }), caps("DSN")), "MAIL FROM:<sender@origin.test>");
  });

  test("RET is upper-cased; anything but FULL or HDRS is left out", () => {
    const c = caps("DSN");
    assert.equal(mailCommand(message({ ret: "hdrs" }), c), "MAIL FROM:<sender@origin.test> RET=HDRS");
    assert.equal(mailCommand(message({ ret: "SOME" }), c), "MAIL FROM:<sender@origin.test>");
  });

  for (const envid of ["a=b", "a b", "x+zz", "x+2b", "x+2"]) {
    test(`an ENVID that is not plain xtext (${JSON.stringify(envid)}) is left out`, () => {
      assert.equal(mailCommand(message({ envid }), caps("DSN")), "MAIL FROM:<sender@origin.test>");
    });
  }

  test("an empty ENVID is left out; control characters are removed from it", () => {
    const c = caps("DSN");
    assert.equal(mailCommand(message({ envid: "" }), c), "MAIL FROM:<sender@origin.test>");
    assert.equal(mailCommand(message({ envid: "ab\r\ncd" }), c), "MAIL FROM:<sender@origin.test> ENVID=abcd");
  });

  test("RET and ENVID are never sent without DSN", () => {
    assert.equal(
      mailCommand(message({ ret: "FULL", envid: "abc" }), caps("SIZE")),
      "MAIL FROM:<sender@origin.test> SIZE=4321",
    );
  });

  test("CR, LF and other controls in the sender never reach the line", () => {
    const line = mailCommand(message({ mailFrom: "a\r\nRSET\r\n\x00@b.test" }), new Capabilities());
    assert.equal(line, "MAIL FROM:<aRSET@b.test>");
  });
});

describe("rcptCommand", () => {
  test("without DSN: the address alone, whatever was received", () => {
    assert.equal(
      rcptCommand(rcpt("SUCCESS", "rfc822;user@example.test"), caps("SIZE")),
      "RCPT TO:<user@example.test>",
    );
  });

  test("with DSN: NOTIFY upper-cased and ORCPT as received", () => {
    assert.equal(
      rcptCommand(rcpt("success,failure,delay", "rfc822;user@example.test"), caps("DSN")),
      "RCPT TO:<user@example.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;user@example.test",
    );
    assert.equal(rcptCommand(rcpt("NEVER", null), caps("DSN")), "RCPT TO:<user@example.test> NOTIFY=NEVER");
  });

  for (
    const notify of ["NEVER,SUCCESS", "SOMETIMES", "SUCCESS,FAILURE,DELAY,SUCCESS", "", "SUCCESS FAILURE"]
  ) {
    test(`NOTIFY ${JSON.stringify(notify)} is not a valid list and is left out`, () => {
      assert.equal(rcptCommand(rcpt(notify, null), caps("DSN")), "RCPT TO:<user@example.test>");
    });
  }

  test("ORCPT's address is xtext-encoded again: + and = and controls do not pass raw", () => {
    assert.equal(
      rcptCommand(rcpt(null, "rfc822;a+b=c@example.test"), caps("DSN")),
      "RCPT TO:<user@example.test> ORCPT=rfc822;a+2Bb+3Dc@example.test",
    );
    assert.equal(
      rcptCommand(rcpt(null, "rfc822;a\r\nb@example.test"), caps("DSN")),
      "RCPT TO:<user@example.test> ORCPT=rfc822;ab@example.test",
    );
  });

  test("a utf-8 ORCPT keeps its RFC 6533 escapes", () => {
    assert.equal(
      rcptCommand(rcpt(null, "utf-8;j\\x{F6}ran@example.test"), caps("DSN")),
      "RCPT TO:<user@example.test> ORCPT=utf-8;j\\x{F6}ran@example.test",
    );
  });

  for (
    const orcpt of ["no-semicolon@example.test", ";user@example.test", "rfc 822;user@example.test", "-x;u@e"]
  ) {
    test(`an ORCPT without a valid address type (${JSON.stringify(orcpt)}) is left out`, () => {
      assert.equal(rcptCommand(rcpt(null, orcpt), caps("DSN")), "RCPT TO:<user@example.test>");
    });
  }

  test("CR and LF in the address never reach the line", () => {
    assert.equal(
      rcptCommand(rcpt(null, null, "a@b.test>\r\nDATA\r\n"), new Capabilities()),
      "RCPT TO:<a@b.test>DATA>",
    );
  });
});

describe("clean, isAscii and sanitizeHelloName", () => {
  test("clean removes C0 controls and DEL, nothing else", () => {
    assert.equal(clean("a\x00b\tc\r\nd\x1fe\x7ff g~ü"), "abcdef g~ü");
  });

  test("isAscii", () => {
    assert.equal(isAscii("plain@example.test\x7f"), true);
    assert.equal(isAscii(""), true);
    assert.equal(isAscii("jöran@example.test"), false);
  });

  test("our name without spaces or controls", () => {
    assert.equal(sanitizeHelloName("relay.test", "192.0.2.1"), "relay.test");
    assert.equal(sanitizeHelloName(" relay\t.test\r\n", "192.0.2.1"), "relay.test");
  });

  test("no usable name: the address literal of our end", () => {
    assert.equal(sanitizeHelloName("", "192.0.2.1"), "[192.0.2.1]");
    assert.equal(sanitizeHelloName(" \r\n", "2001:db8::5"), "[IPv6:2001:db8::5]");
    assert.equal(sanitizeHelloName("", ""), "[127.0.0.1]");
  });
});
