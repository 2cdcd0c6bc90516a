#!/usr/bin/env node
// The npm registry reachable here carries only deno's linux-x64 binary package, so `npm install`
// writes a package-lock.json without deno's other optional platform packages, and `npm ci` then
// refuses the lock as "out of sync". This adds those entries (name, version, os/cpu, no tarball):
// npm skips them on other platforms and fetches them by name@version where they apply.
// Run after any `npm install` that rewrites the lock: `node scripts/lock_platforms.mjs`.
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const packages = lock.packages;
const denoVersion = packages["node_modules/deno"]?.version;
const base = packages["node_modules/@deno/linux-x64-glibc"];
if (!denoVersion || !base) throw new Error("package-lock.json has no deno / @deno/linux-x64-glibc entry");
const platforms = {
  "darwin-arm64": { os: "darwin", cpu: "arm64" },
  "darwin-x64": { os: "darwin", cpu: "x64" },
  "linux-arm64-glibc": { os: "linux", cpu: "arm64", libc: "glibc" },
  "win32-arm64": { os: "win32", cpu: "arm64" },
  "win32-x64": { os: "win32", cpu: "x64" },
};
let added = 0;
for (const [name, p] of Object.entries(platforms)) {
  const key = `node_modules/@deno/${name}`;
  if (packages[key]) continue;
  const { integrity: _i, resolved: _r, os: _o, cpu: _c, libc: _l, ...rest } = base;
  packages[key] = {
    ...rest,
    version: denoVersion,
    cpu: [p.cpu],
    os: [p.os],
    ...(p.libc ? { libc: [p.libc] } : {}),
  };
  added++;
}
lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : 1)),
);
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`package-lock.json: added ${added} deno platform entries`);
