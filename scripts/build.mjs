#!/usr/bin/env node
// Builds the binary for this machine, dist/odmr-relay, with `bun build --compile` (DESIGN.md 2).
// Migrations are compiled in (src/queue/migrations_bundle.ts), so the binary needs no files.
// The release binaries for other platforms come from release.mjs.
import { join } from "node:path";
import { checkMigrationsBundle, compile, dist, mib } from "./compile.mjs";

checkMigrationsBundle();
const outfile = join(dist, "odmr-relay");
console.log(`built ${outfile} (${mib(compile(outfile))})`);
