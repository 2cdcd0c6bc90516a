// The README's configuration table is generated from src/config/fields.ts (scripts/config_reference.ts);
// this test fails when a setting is added, renamed or re-documented without regenerating it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { CONFIG_FIELDS, envName, flagName, SECRET_FIELDS } from "../../src/config/fields.ts";

test("the README's configuration table matches the config fields", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const rows = readme.split("\n").filter((l) =>
    /^\| `[a-zA-Z0-9]+` \| /.test(l) && l.includes("`ODMR_RELAY_")
  );
  const keys = rows.map((l) => /^\| `([a-zA-Z0-9]+)`/.exec(l)![1]);
  assert.deepEqual(keys, Object.keys(CONFIG_FIELDS), "regenerate with: bun scripts/config_reference.ts");
  for (const [key, field] of Object.entries(CONFIG_FIELDS)) {
    const row = rows[keys.indexOf(key)]!;
    const flag = SECRET_FIELDS.has(key) ? "(none: secret)" : `\`--${flagName(key)}\``;
    assert.ok(row.includes(` ${flag} `), `${key}: flag`);
    assert.ok(row.includes(`\`${envName(key)}\``), `${key}: environment variable`);
    assert.ok(row.includes(field.doc.replaceAll("|", "\\|")), `${key}: doc text`);
  }
});
