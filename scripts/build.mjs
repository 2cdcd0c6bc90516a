#!/usr/bin/env node
// Builds the single release binary dist/odmr-relay with `bun build --compile` (DESIGN.md 2).
// Migrations are compiled in (src/queue/migrations_bundle.ts), so the binary needs no files.
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const check = spawnSync(process.execPath, [join(root, "scripts/bundle_migrations.mjs"), "--check"], {
  stdio: "inherit",
});
if (check.status !== 0) process.exit(1);
mkdirSync(join(root, "dist"), { recursive: true });
const outfile = join(root, "dist", "odmr-relay");
const args = [
  "build",
  "--compile",
  "--minify",
  "--bytecode",
  "--format=esm",
  "src/main.ts",
  "--outfile",
  outfile,
];
const result = spawnSync(join(root, "node_modules/.bin/bun"), args, { cwd: root, stdio: "inherit" });
if (result.status !== 0) process.exit(result.status ?? 1);
console.log(`built ${outfile} (${(statSync(outfile).size / 1048576).toFixed(1)} MiB)`);
