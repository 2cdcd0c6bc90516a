/**
 * From replies to per-recipient outcomes (src/client/outcome.ts): the class mapping, the "too many
 * recipients" reading of 552, how a reply is written down, and the MessageResult a message adds up to
 * (every recipient without a definitive answer deferred).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DeliveryAbort } from "../../src/client/errors.ts";
import {
  describeReply,
  isTemporary552,
  MessageOutcomes,
  outcomeOfReply,
  type Recipient,
  recordReply,
  type SetOutcome,
} from "../../src/client/outcome.ts";
import type { DeliverableMessage, RecipientOutcome } from "../../src/client/types.ts";
import { Code421Closing, Code451LocalError, Code552ExceededStorage } from "../../src/smtp/codes.ts";
import type { ParsedReply } from "../../src/smtp/reply.ts";
import { deliverable } from "./_memory_customer.ts";

/** A recipient with id `id`. */
function rcpt(id: number): Recipient {
  return { id, address: `r${id}@example.test`, notify: null, orcpt: null };
}

/** A message to recipients with ids 1..n. */
function message(n: number): DeliverableMessage {
  return deliverable([], { size: 10, recipients: Array.from({ length: n }, (_, i) => rcpt(i + 1)) });
}

/** What `outcomeOfReply` records for `reply`. */
function mapped(reply: ParsedReply, positiveMeansDelivered?: boolean): [string, number | null, string][] {
  const calls: [string, number | null, string][] = [];
  const set: SetOutcome = (_r, result, code, text) => calls.push([result, code, text]);
  outcomeOfReply(rcpt(1), reply, set, positiveMeansDelivered);
  return calls;
}

describe("outcomeOfReply", () => {
  test("2xx to the final dot: delivered", () => {
    assert.deepEqual(mapped({ code: 250, enhanced: "2.0.0", lines: ["queued"] }, true), [
      ["delivered", 250, "250 2.0.0 queued"],
    ]);
  });

  test("2xx where a 2xx is not a delivery (DATA): deferred", () => {
    assert.deepEqual(mapped({ code: 250, lines: ["ok"] }), [["deferred", 250, "250 ok"]]);
  });

  test("3xx and 4xx: deferred, whatever the stage", () => {
    assert.deepEqual(mapped({ code: 354, lines: ["go"] }, true), [["deferred", 354, "354 go"]]);
    assert.deepEqual(mapped({ code: 451, lines: ["later"] }, true), [["deferred", 451, "451 later"]]);
  });

  test("5xx: failed, whatever the stage", () => {
    assert.deepEqual(mapped({ code: 550, enhanced: "5.1.1", lines: ["unknown"] }), [
      ["failed", 550, "550 5.1.1 unknown"],
    ]);
    assert.deepEqual(mapped({ code: 554, lines: ["no"] }, true), [["failed", 554, "554 no"]]);
  });
});

describe("isTemporary552", () => {
  const table: [string, ParsedReply, number, boolean][] = [
    ["552 5.5.3 before 100 accepted", { code: 552, enhanced: "5.5.3", lines: ["too many"] }, 0, true],
    ["552 5.2.2 with 100 accepted", { code: 552, enhanced: "5.2.2", lines: ["full"] }, 100, true],
    ["552 without enhanced code with 150 accepted", { code: 552, lines: ["full"] }, 150, true],
    ["552 5.2.2 with 99 accepted", { code: 552, enhanced: "5.2.2", lines: ["full"] }, 99, false],
    ["552 without enhanced code with none accepted", { code: 552, lines: ["too big"] }, 0, false],
    ["452 5.5.3 is not a 552", { code: 452, enhanced: "4.5.3", lines: ["x"] }, 100, false],
    ["550 with 100 accepted", { code: 550, lines: ["x"] }, 100, false],
  ];
  for (const [what, reply, accepted, expected] of table) {
    test(`${what} -> ${expected}`, () => {
      assert.equal(isTemporary552(reply, accepted), expected);
    });
  }

  test("its code is the named 552", () => {
    assert.equal(isTemporary552({ code: Code552ExceededStorage, enhanced: "5.5.3", lines: [] }, 0), true);
  });
});

describe("describeReply", () => {
  test("code, enhanced code and text on one line", () => {
    assert.equal(
      describeReply({ code: 550, enhanced: "5.1.1", lines: ["User unknown"] }),
      "550 5.1.1 User unknown",
    );
  });

  test("lines joined with ' / ', empty ones dropped", () => {
    assert.equal(
      describeReply({ code: 421, enhanced: "4.3.2", lines: ["", "going down", "", "bye"] }),
      "421 4.3.2 going down / bye",
    );
  });

  test("no enhanced code and no text: the code alone", () => {
    assert.equal(describeReply({ code: 250, lines: [""] }), "250");
  });

  test("clipped to 500 characters with ... at the end", () => {
    const text = describeReply({ code: 550, lines: ["x".repeat(1000)] });
    assert.equal(text.length, 500);
    assert.ok(text.startsWith("550 xxx"));
    assert.ok(text.endsWith("x..."));
  });
});

describe("recordReply", () => {
  test("code and enhanced code, then each line's text on its own line", () => {
    assert.equal(
      recordReply({ code: 550, enhanced: "5.1.1", lines: ["first", "second"] }),
      "550 5.1.1 first\nsecond",
    );
  });

  test("without an enhanced code", () => {
    assert.equal(recordReply({ code: 451, lines: ["try later"] }), "451 try later");
  });

  test("no text: the code alone, no trailing space", () => {
    assert.equal(recordReply({ code: 250, lines: [""] }), "250");
  });

  test("a long reply is kept whole up to 8000 characters", () => {
    const lines = Array.from({ length: 20 }, (_, i) => `${i} ${"y".repeat(300)}`);
    const text = recordReply({ code: 554, lines });
    assert.equal(text, `554 ${lines.join("\n")}`);
    const huge = recordReply({ code: 554, lines: ["z".repeat(9000)] });
    assert.equal(huge.length, 8000);
    assert.ok(huge.endsWith("z..."));
  });
});

describe("MessageOutcomes", () => {
  test("one outcome per recipient in the message's order, whatever order they were set in, and the counts", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(3), "failed", 550, "550 no");
    o.set(rcpt(1), "delivered", 250, "250 ok");
    o.set(rcpt(2), "deferred", 450, "450 busy");
    const result = o.result(message(3), null);
    assert.deepEqual(result.outcomes.map((x) => x.id), [1, 2, 3]);
    assert.deepEqual([result.delivered, result.deferred, result.failed], [1, 1, 1]);
    assert.equal(result.abort, null);
  });

  test("a recipient never answered, with no abort: deferred 451 4.4.2 Not attempted", () => {
    const result = new MessageOutcomes().result(message(1), null);
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "deferred", code: Code451LocalError, text: "4.4.2 Not attempted" },
    ]);
    assert.equal(result.deferred, 1);
  });

  test("after an abort the unanswered are deferred with the abort's code and text; answered ones stay", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(1), "failed", 550, "550 no");
    const abort = new DeliveryAbort("refused", "4.3.2 Customer closing during RCPT: 421 bye", {
      code: Code421Closing,
    });
    const result = o.result(message(2), abort);
    assert.deepEqual(result.outcomes, [
      { id: 1, result: "failed", code: 550, text: "550 no" },
      { id: 2, result: "deferred", code: 421, text: "4.3.2 Customer closing during RCPT: 421 bye" },
    ]);
    assert.equal(result.abort, abort);
    assert.deepEqual([result.delivered, result.deferred, result.failed], [0, 1, 1]);
  });

  test("an abort's text is clipped to 500 characters on the recipients", () => {
    const abort = new DeliveryAbort("protocol", `4.5.0 ${"q".repeat(900)}`);
    const [only] = new MessageOutcomes().result(message(1), abort).outcomes;
    assert.equal(only!.text!.length, 500);
    assert.equal(only!.code, Code451LocalError);
  });

  test("a later set replaces an earlier one", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(1), "deferred", 452, "452 too many");
    o.set(rcpt(1), "delivered", 250, "250 ok");
    assert.deepEqual(o.result(message(1), null).outcomes, [
      { id: 1, result: "delivered", code: 250, text: "250 ok" },
    ]);
  });

  test("local is kept only when set", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(1), "failed", 554, "5.3.4 too big", true);
    o.set(rcpt(2), "failed", 550, "550 no");
    const [local, remote] = o.result(message(2), null).outcomes as [RecipientOutcome, RecipientOutcome];
    assert.equal(local.local, true);
    assert.equal("local" in remote, false);
  });

  test("a recorded text is clipped only beyond 8000 characters", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(1), "failed", 550, "a".repeat(8000));
    o.set(rcpt(2), "failed", 550, "b".repeat(8001));
    const [kept, clipped] = o.result(message(2), null).outcomes as [RecipientOutcome, RecipientOutcome];
    assert.equal(kept.text, "a".repeat(8000));
    assert.equal(clipped.text!.length, 8000);
    assert.ok(clipped.text!.endsWith("b..."));
  });

  test("outcomes of recipients not in the message are left out", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(9), "delivered", 250, "250 ok");
    const result = o.result(message(1), null);
    assert.deepEqual(result.outcomes.map((x) => x.id), [1]);
    assert.equal(result.delivered, 0);
  });
});

describe("MessageOutcomes.result counts relayed as delivered", () => {
  test("a relayed recipient is a delivery, not a failure", () => {
    const o = new MessageOutcomes();
    o.set(rcpt(1), "relayed", 250, "250 ok");
    const result = o.result(message(1), null);
    assert.deepEqual([result.delivered, result.deferred, result.failed], [1, 0, 0]);
  });
});
