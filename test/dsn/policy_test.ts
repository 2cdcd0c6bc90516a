import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { actionFor, type DsnPolicyInput, needsDsn } from "../../src/dsn/policy.ts";

describe("needsDsn", () => {
  const sender = "alice@sender.example";
  const table: [string, DsnPolicyInput, boolean][] = [
    // RFC 5321 6.1: never a notification about a message from <>.
    ["failure for <>", { sender: "", action: "failed" }, false],
    ["delay for <>", { sender: "", action: "delayed" }, false],
    ["success for <>", { sender: "", action: "relayed", notify: "SUCCESS" }, false],
    // RFC 3461 4.1: no NOTIFY is FAILURE,DELAY.
    ["failure, no NOTIFY", { sender, action: "failed" }, true],
    ["failure, NOTIFY null", { sender, action: "failed", notify: null }, true],
    ["delay, no NOTIFY", { sender, action: "delayed" }, true],
    ["relayed, no NOTIFY", { sender, action: "relayed" }, false],
    ["failure, NEVER", { sender, action: "failed", notify: "NEVER" }, false],
    ["delay, NEVER", { sender, action: "delayed", notify: "NEVER" }, false],
    ["relayed, NEVER", { sender, action: "relayed", notify: "NEVER" }, false],
    ["failure, FAILURE", { sender, action: "failed", notify: "FAILURE" }, true],
    ["failure, SUCCESS only", { sender, action: "failed", notify: "SUCCESS" }, false],
    ["failure, DELAY only", { sender, action: "failed", notify: "DELAY" }, false],
    ["failure, SUCCESS,FAILURE", { sender, action: "failed", notify: "SUCCESS,FAILURE" }, true],
    ["delay, FAILURE only", { sender, action: "delayed", notify: "FAILURE" }, false],
    ["delay, FAILURE,DELAY", { sender, action: "delayed", notify: "FAILURE,DELAY" }, true],
    ["relayed, SUCCESS", { sender, action: "relayed", notify: "SUCCESS" }, true],
    ["relayed, SUCCESS to a DSN-capable next hop", {
      sender,
      action: "relayed",
      notify: "SUCCESS",
      nextHopHasDsn: true,
    }, false],
    ["relayed, FAILURE only", { sender, action: "relayed", notify: "FAILURE" }, false],
    ["parsed list", { sender, action: "delayed", notify: ["SUCCESS", "DELAY"] }, true],
    ["lower case, spaces", { sender, action: "failed", notify: " failure , delay" }, true],
    ["empty string is absent", { sender, action: "failed", notify: "" }, true],
  ];
  for (const [name, input, expected] of table) {
    test(name, () => assert.equal(needsDsn(input), expected));
  }
});

describe("actionFor", () => {
  const table: [Parameters<typeof actionFor>[0], string][] = [
    ["customer-rejected", "failed"],
    ["local-refusal", "failed"],
    ["expired", "failed"],
    ["operator-bounce", "failed"],
    ["delayed", "delayed"],
    ["relayed", "relayed"],
  ];
  for (const [cause, action] of table) test(cause, () => assert.equal(actionFor(cause), action));
});
