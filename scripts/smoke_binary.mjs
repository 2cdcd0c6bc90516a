#!/usr/bin/env node
// Smoke test of the RELEASE BINARY (dist/odmr-relay): copied alone into an empty temp directory
// (no node_modules anywhere near), then: version, user add, domain add, serve -> /healthz 200 ->
// SIGTERM -> exit 0. Prints the start-up time (spawn to /healthz answering) and the binary size.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";

const root = new URL("..", import.meta.url).pathname;
const source = join(root, "dist", "odmr-relay");
const dir = mkdtempSync(join(tmpdir(), "odmr-smoke-"));
const binary = join(dir, "odmr-relay");
copyFileSync(source, binary);
chmodSync(binary, 0o755);

function fail(message) {
  console.error(`smoke: FAIL: ${message}`);
  process.exit(1);
}
function run(args) {
  const r = spawnSync(binary, args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) fail(`${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  console.log(`smoke: ${args.join(" ")} -> ${r.stdout.trim().split("\n")[0]}`);
  return r.stdout;
}
function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

run(["version"]);
run(["user", "add", "smoke", "--generate"]);
run(["domain", "add", "smoke.test", "--user", "smoke"]);
const [httpPort, smtpPort, odmrPort] = [await freePort(), await freePort(), await freePort()];
const started = performance.now();
const child = spawn(binary, [
  "serve",
  "--http-listen",
  `127.0.0.1:${httpPort}`,
  "--smtp-listen",
  `127.0.0.1:${smtpPort}`,
  "--odmr-listen",
  `127.0.0.1:${odmrPort}`,
  "--odmrs-listen",
  "off",
], { cwd: dir, stdio: ["ignore", "inherit", "inherit"] });
let up = false;
for (let i = 0; i < 200 && !up; i++) {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    if (res.status !== 200) fail(`/healthz answered ${res.status}`);
    up = true;
  } catch {
    await new Promise((r) => setTimeout(r, 10));
  }
}
if (!up) fail("/healthz never answered");
const startMs = performance.now() - started;
const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
child.kill("SIGTERM");
const { code, signal } = await exited;
if (code !== 0) fail(`serve exited with ${code ?? signal} after SIGTERM`);
console.log(`smoke: serve -> /healthz 200 in ${startMs.toFixed(0)} ms -> SIGTERM -> exit 0`);
console.log(`smoke: binary ${(statSync(binary).size / 1048576).toFixed(1)} MiB`);
rmSync(dir, { recursive: true, force: true });
console.log("smoke: OK");
