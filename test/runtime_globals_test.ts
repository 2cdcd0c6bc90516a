// DESIGN.md 2: Deno.*, Bun.* and bun:* appear only in src/runtime/. Everything else is runtime-neutral.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const SRC = new URL("../src/", import.meta.url).pathname;

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (/\.tsx?$/.test(name)) yield path;
  }
}

test("runtime globals appear only in src/runtime/", () => {
  const offenders: string[] = [];
  for (const path of files(SRC)) {
    if (path.startsWith(join(SRC, "runtime"))) continue;
    const code = readFileSync(path, "utf8").replace(/\/\/.*$/gm, "").replace(/\/\*[\s\S]*?\*\//g, "");
    if (/\bDeno\.|\bBun\.|["']bun:/.test(code)) offenders.push(path.slice(SRC.length));
  }
  assert.deepEqual(offenders, []);
});

test("the version constant matches package.json", async () => {
  const { VERSION } = await import("../src/version.ts");
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(VERSION, pkg.version);
});
