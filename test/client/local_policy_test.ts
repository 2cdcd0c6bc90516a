/**
 * What the client refuses before MAIL (src/client/local_policy.ts, docs/protocol.md#no-downgrade): a
 * message over the customer's SIZE (5.3.4), 8-bit content without 8BITMIME (5.6.3), a message or
 * recipient that needs SMTPUTF8 without it (5.6.7). Everything else is offered, in order.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { refuseLocally } from "../../src/client/local_policy.ts";
import type { DeliverableMessage } from "../../src/client/types.ts";
import { Capabilities } from "../../src/smtp/ehlo.ts";
import { caps, deliverable } from "./_memory_customer.ts";

/** A 7-bit ASCII message of 1000 octets to `rcpts` (ids 1, 2, ...). */
function message(rcpts: string[], extra: Partial<DeliverableMessage> = {}): DeliverableMessage {
  return deliverable(rcpts, { size: 1000, ...extra });
}

const SIZE_TEXT = "5.3.4 Message size 1001 exceeds the receiving server's limit 1000";
const EIGHT_BIT_TEXT = "5.6.3 Message has 8-bit content and the receiving server lacks 8BITMIME";
const UTF8_TEXT = "5.6.7 Message needs SMTPUTF8 and the receiving server does not offer it";

/** The verdict as ids: [todo ids, [refused id, text]...]. */
function verdict(m: DeliverableMessage, c: Capabilities): [number[], [number, string][]] {
  const v = refuseLocally(m, c);
  return [v.todo.map((r) => r.id), v.refused.map((x) => [x.recipient.id, x.text])];
}

describe("refuseLocally", () => {
  test("a plain message to a customer that advertises nothing: every recipient offered, in order", () => {
    const m = message(["a@x.test", "b@x.test", "c@x.test"]);
    const v = refuseLocally(m, new Capabilities());
    assert.deepEqual(v.refused, []);
    assert.deepEqual(v.todo, m.recipients);
    assert.equal(v.todo[0], m.recipients[0], "the recipients themselves, not copies");
  });

  test("over the advertised SIZE: every recipient refused 5.3.4", () => {
    assert.deepEqual(verdict(message(["a@x.test", "b@x.test"], { size: 1001 }), caps("SIZE 1000")), [
      [],
      [[1, SIZE_TEXT], [2, SIZE_TEXT]],
    ]);
  });

  test("exactly the advertised SIZE is offered", () => {
    assert.deepEqual(verdict(message(["a@x.test"], { size: 1000 }), caps("SIZE 1000")), [[1], []]);
  });

  for (const size of ["SIZE", "SIZE 0", "SIZE lots"]) {
    test(`"${size}" sets no limit`, () => {
      assert.deepEqual(verdict(message(["a@x.test"], { size: 10 ** 9 }), caps(size)), [[1], []]);
    });
  }

  test("8-bit content without 8BITMIME: every recipient refused 5.6.3; with it, offered", () => {
    const m = message(["a@x.test", "b@x.test"], { eightBit: true });
    assert.deepEqual(verdict(m, caps("SIZE 5000")), [[], [[1, EIGHT_BIT_TEXT], [2, EIGHT_BIT_TEXT]]]);
    assert.deepEqual(verdict(m, caps("8BITMIME")), [[1, 2], []]);
  });

  test("too big and 8-bit: the size is the reason given", () => {
    assert.deepEqual(verdict(message(["a@x.test"], { size: 1001, eightBit: true }), caps("SIZE 1000")), [
      [],
      [[1, SIZE_TEXT]],
    ]);
  });

  test("a non-ASCII sender without SMTPUTF8: every recipient refused 5.6.7", () => {
    const m = message(["a@x.test", "b@x.test"], { mailFrom: "jöran@origin.test", smtputf8: true });
    assert.deepEqual(verdict(m, caps("8BITMIME")), [[], [[1, UTF8_TEXT], [2, UTF8_TEXT]]]);
  });

  test("a UTF-8 message with 8-bit content without SMTPUTF8: refused 5.6.7", () => {
    const m = message(["a@x.test"], { smtputf8: true, eightBit: true });
    assert.deepEqual(verdict(m, caps("8BITMIME")), [[], [[1, UTF8_TEXT]]]);
  });

  test("received with SMTPUTF8 but all ASCII and 7-bit: nothing needs it, offered", () => {
    assert.deepEqual(verdict(message(["a@x.test"], { smtputf8: true }), new Capabilities()), [[1], []]);
  });

  test("without SMTPUTF8 only the non-ASCII recipients are refused; the others keep their order", () => {
    const m = message(["a@x.test", "ü@x.test", "c@x.test", "d@bücher.test"], { smtputf8: true });
    assert.deepEqual(verdict(m, new Capabilities()), [[1, 3], [[2, UTF8_TEXT], [4, UTF8_TEXT]]]);
  });

  test("SMTPUTF8 advertised: non-ASCII sender and recipients are all offered", () => {
    const m = message(["ü@x.test", "a@x.test"], {
      mailFrom: "jöran@origin.test",
      smtputf8: true,
      eightBit: true,
    });
    assert.deepEqual(verdict(m, caps("SMTPUTF8", "8BITMIME")), [[1, 2], []]);
  });

  test("SMTPUTF8 does not excuse 8-bit content without 8BITMIME", () => {
    const m = message(["a@x.test"], { smtputf8: true, eightBit: true });
    assert.deepEqual(verdict(m, caps("SMTPUTF8")), [[], [[1, EIGHT_BIT_TEXT]]]);
  });

  test("every refusal text starts with a permanent enhanced status code", () => {
    const cases: [DeliverableMessage, Capabilities][] = [
      [message(["a@x.test"], { size: 1001 }), caps("SIZE 1000")],
      [message(["a@x.test"], { eightBit: true }), new Capabilities()],
      [message(["ü@x.test"]), new Capabilities()],
    ];
    for (const [m, c] of cases) {
      for (const { text } of refuseLocally(m, c).refused) assert.match(text, /^5\.\d\.\d /);
    }
  });
});
