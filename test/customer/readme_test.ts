// The README's table of pull settings is the table in src/config/pull_fields.ts; this test fails when
// a setting is added, renamed or re-documented without the README, and prints the rows to paste.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { flagName } from "../../src/config/fields.ts";
import { describePullDefault, PULL_FIELDS, pullEnvName, type PullKey } from "../../src/config/pull_fields.ts";
import { EXIT_CODES } from "../../src/customer/outcome.ts";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

function expectedRows(): string[] {
  return (Object.keys(PULL_FIELDS) as PullKey[]).map((key) => {
    const def = describePullDefault(key);
    const f = PULL_FIELDS[key];
    return `| \`--${flagName(key)}\` | \`${key}\` | \`${pullEnvName(key)}\` | \`${def}\` | ${
      f.doc.replaceAll("|", "\\|")
    } |`;
  });
}

test("the README's pull settings table matches src/config/pull_fields.ts", () => {
  const rows = README.split("\n").filter((l) => l.startsWith("| `--") && l.includes("`ODMR_RELAY_PULL_"));
  const expected = expectedRows();
  assert.deepEqual(rows, expected, `the README's rows should be:\n${expected.join("\n")}`);
});

test("the README's exit code table lists every outcome with its code", () => {
  for (const [outcome, code] of Object.entries(EXIT_CODES)) {
    assert.match(README, new RegExp(`^\\| ${code} \\| \`${outcome}\` \\|`, "m"), outcome);
  }
});
