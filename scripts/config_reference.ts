// Prints the configuration reference table for the README from src/config/fields.ts,
// so the documentation cannot drift from the code: `bun scripts/config_reference.ts`.
import { CONFIG_FIELDS, envName, flagName, SECRET_FIELDS } from "../src/config/fields.ts";

console.log("| setting (file key) | flag | environment | default | what it is |");
console.log("|---|---|---|---|---|");
for (const [key, field] of Object.entries(CONFIG_FIELDS)) {
  const def = key === "hostname" || key === "nodeName"
    ? "(this machine's name)"
    : (field.format as (v: unknown) => string)(field.default);
  const flag = SECRET_FIELDS.has(key) ? "(none: secret)" : `\`--${flagName(key)}\``;
  console.log(
    `| \`${key}\` | ${flag} | \`${envName(key)}\` | \`${def}\` | ${field.doc.replaceAll("|", "\\|")} |`,
  );
}
