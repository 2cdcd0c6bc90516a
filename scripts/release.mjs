#!/usr/bin/env node
// `npm run release`: the release binaries dist/odmr-relay-linux-x64 and dist/odmr-relay-linux-arm64,
// cross-compiled with `bun build --compile --target`, and dist/SHA256SUMS (`sha256sum -c SHA256SUMS`).
//
// x64 is built on bun's -baseline runtime, which needs no AVX2: home servers are often old NAS, Atom
// or Celeron boxes. In bun 1.4.5 the bun-linux-x64 and bun-linux-x64-baseline packages carry the
// same executable (byte for byte), so baseline costs nothing in size or speed today; naming it keeps
// the promise if a later bun splits them again.
//
// The target runtime (the bun executable the app is appended to) comes from the npm registry. Left
// alone, bun downloads it itself from a hard-coded https://registry.npmjs.org URL (ignoring .npmrc,
// checking no hash) into ~/.bun/install/cache. npm fetches it here instead: npm uses this machine's
// registry and proxy settings and its cache (so a second release works offline), and the tarball is
// checked against package-lock.json, which pins the arm64 runtime as an optional package of `bun`.
// The runtime must be the bundler's own bun version: --bytecode output is tied to it.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkMigrationsBundle, compile, dist, mib, root } from "./compile.mjs";

const TARGETS = [
  { name: "linux-x64", target: "bun-linux-x64-baseline", runtime: "@oven/bun-linux-x64-baseline" },
  { name: "linux-arm64", target: "bun-linux-arm64", runtime: "@oven/bun-linux-aarch64" },
];
const bunVersion = JSON.parse(readFileSync(join(root, "node_modules/bun/package.json"), "utf8")).version;
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")).packages;

function fail(message) {
  console.error(`release: ${message}`);
  process.exit(1);
}

/** Fetches `pkg@bunVersion` with npm into a new directory, checks it, returns its bun executable. */
function fetchRuntime(pkg) {
  const dir = mkdtempSync(join(work, "runtime-"));
  const packed = spawnSync(
    "npm",
    ["pack", `${pkg}@${bunVersion}`, "--json", "--prefer-offline", "--pack-destination", dir],
    { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
  );
  if (packed.status !== 0) fail(`npm pack ${pkg}@${bunVersion} failed (is the npm registry reachable?)`);
  const tarball = join(dir, JSON.parse(packed.stdout)[0].filename);
  const integrity = "sha512-" + createHash("sha512").update(readFileSync(tarball)).digest("base64");
  const locked = lock[`node_modules/${pkg}`];
  const pinned = locked?.version === bunVersion ? locked.integrity : null;
  if (pinned && pinned !== integrity) {
    fail(`${pkg}@${bunVersion}: tarball ${integrity} does not match package-lock.json ${pinned}`);
  }
  const untar = spawnSync("tar", ["-xzf", tarball, "-C", dir, "package/bin/bun"], { stdio: "inherit" });
  if (untar.status !== 0) fail(`cannot unpack ${tarball}`);
  const checked = pinned ? "matches package-lock.json" : "not in package-lock.json; npm checked it";
  console.log(`release: runtime ${pkg}@${bunVersion} (${checked})`);
  return join(dir, "package/bin/bun");
}

checkMigrationsBundle();
// A failed run must not leave checksums of older binaries next to newer ones.
rmSync(join(dist, "SHA256SUMS"), { force: true });
// The unpacked runtimes (~100 MiB each) go on every exit, including fail() and a failed compile.
const work = mkdtempSync(join(tmpdir(), "odmr-release-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));
const sums = [];
const sizes = [];
for (const { name, target, runtime } of TARGETS) {
  const file = `odmr-relay-${name}`;
  const size = compile(join(dist, file), [
    `--target=${target}`,
    `--compile-executable-path=${fetchRuntime(runtime)}`,
  ]);
  const sha256 = createHash("sha256").update(readFileSync(join(dist, file))).digest("hex");
  sums.push(`${sha256}  ${file}\n`); // two spaces: the `sha256sum` text format
  sizes.push(`release: dist/${file}  ${mib(size)} (${size} bytes)  ${target}`);
}
writeFileSync(join(dist, "SHA256SUMS"), sums.join(""));
console.log(sizes.join("\n"));
console.log("release: wrote dist/SHA256SUMS (check: cd dist && sha256sum -c SHA256SUMS)");
