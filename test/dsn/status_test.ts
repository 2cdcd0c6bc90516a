import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { normalizeStatus, statusFor } from "../../src/dsn/status.ts";
import { replyFromRecorded } from "../../src/dsn/remote.ts";
import type { DsnRecipient, DsnReply } from "../../src/dsn/types.ts";

const address = "bob@customer.example";
const until = new Date("2025-06-08T10:15:02Z");

describe("statusFor", () => {
  const table: [string, DsnRecipient, string][] = [
    ["refusal with its enhanced code", {
      cause: "customer-rejected",
      address,
      reply: { code: 550, enhanced: "5.1.1", lines: ["no"] },
    }, "5.1.1"],
    // RFC 3463 3.1: without one, the class alone.
    ["refusal without an enhanced code", {
      cause: "customer-rejected",
      address,
      reply: { code: 550, lines: [] },
    }, "5.0.0"],
    ["refusal whose enhanced code has the wrong class", {
      cause: "customer-rejected",
      address,
      reply: { code: 554, enhanced: "2.0.0", lines: [] },
    }, "5.0.0"],
    ["leading zeros dropped", {
      cause: "customer-rejected",
      address,
      reply: { code: 550, enhanced: "5.01.001", lines: [] },
    }, "5.1.1"],
    ["local refusal, code in the text", {
      cause: "local-refusal",
      address,
      text: "5.6.3 Message has 8-bit content",
    }, "5.6.3"],
    [
      "local refusal, explicit code",
      { cause: "local-refusal", address, text: "too big", status: "5.3.4" },
      "5.3.4",
    ],
    ["local refusal, no code", { cause: "local-refusal", address, text: "Refused" }, "5.0.0"],
    // RFC 3463 2: class 4 with Action failed, the mail itself was fine.
    ["expired, never attempted", { cause: "expired", address }, "4.4.7"],
    // RFC 3463 3.5 X.4.7: the actual problem seen on an attempt, when known.
    ["expired after a 452 4.2.2", {
      cause: "expired",
      address,
      lastReply: { code: 452, enhanced: "4.2.2", lines: ["Mailbox full"] },
    }, "4.2.2"],
    ["expired after a 451 without a code", {
      cause: "expired",
      address,
      lastReply: { code: 451, lines: ["Try later"] },
    }, "4.4.7"],
    ["operator bounce", { cause: "operator-bounce", address }, "5.0.0"],
    ["delayed, not collected", { cause: "delayed", address, willRetryUntil: until }, "4.4.1"],
    ["delayed after a 452 4.2.2", {
      cause: "delayed",
      address,
      willRetryUntil: until,
      lastReply: { code: 452, enhanced: "4.2.2", lines: [] },
    }, "4.2.2"],
    ["relayed with 250 2.6.0", {
      cause: "relayed",
      address,
      reply: { code: 250, enhanced: "2.6.0", lines: [] },
    }, "2.6.0"],
    ["relayed without a reply", { cause: "relayed", address }, "2.0.0"],
  ];
  for (const [name, recipient, status] of table) test(name, () => assert.equal(statusFor(recipient), status));
});

describe("normalizeStatus", () => {
  const table: [string | undefined, number | undefined, string | undefined][] = [
    ["5.1.1", undefined, "5.1.1"],
    ["4.004.07", 4, "4.4.7"],
    ["5.1.1", 4, undefined],
    ["3.1.1", undefined, undefined],
    ["5.1", undefined, undefined],
    ["5.1.1000", undefined, undefined],
    [undefined, undefined, undefined],
  ];
  for (const [code, cls, expected] of table) {
    test(`${code} class ${cls}`, () => assert.equal(normalizeStatus(code, cls), expected));
  }
});

describe("replyFromRecorded", () => {
  const table: [number, string, DsnReply][] = [
    [550, "550 5.1.1 User unknown", { code: 550, enhanced: "5.1.1", lines: ["User unknown"] }],
    [550, "550 5.1.1 first / second", { code: 550, enhanced: "5.1.1", lines: ["first", "second"] }],
    [554, "554 Transaction failed", { code: 554, lines: ["Transaction failed"] }],
    // Local refusals record the enhanced code without the reply code.
    [554, "5.6.3 Message has 8-bit content", {
      code: 554,
      enhanced: "5.6.3",
      lines: ["Message has 8-bit content"],
    }],
    // An enhanced code of another class is text.
    [451, "2.0.0 odd", { code: 451, lines: ["2.0.0 odd"] }],
    [550, "550", { code: 550, lines: [""] }],
  ];
  for (const [code, text, expected] of table) {
    test(text, () => assert.deepEqual(replyFromRecorded(code, text), expected));
  }
});
