#!/usr/bin/env node
// Smoke test of a release binary, copied alone into an empty temp directory (no node_modules near):
// version (and its platform), user add, domain add, serve -> /healthz 200, one message over SMTP,
// /status shows it queued, ATRN collected with the binary's own `pull` into a local SMTP sink,
// /status shows it delivered, SIGTERM -> exit 0. Prints the start-up time and the binary size.
//
//   node scripts/smoke_binary.mjs                                   # dist/odmr-relay, this machine
//   node scripts/smoke_binary.mjs --binary dist/odmr-relay-linux-arm64 \
//     --emulator "qemu-aarch64-static -L /usr/aarch64-linux-gnu"
//   node scripts/smoke_binary.mjs --database postgres://...        # on a shared PostgreSQL queue
//                                                                   # (scripts/smoke_postgres.ts starts one)
//
// Every wait is bounded, so a hung binary fails the smoke instead of hanging CI. Under an emulator
// the binary runs some 10-50x slower, so the bounds are multiplied by SLOW.
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
} from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const root = new URL("..", import.meta.url).pathname;
const { values: opts } = parseArgs({
  options: { binary: { type: "string" }, emulator: { type: "string" }, database: { type: "string" } },
});
const source = resolve(opts.binary ?? join(root, "dist", "odmr-relay"));
const emulator = (opts.emulator ?? "").split(/\s+/).filter(Boolean);
const SLOW = emulator.length ? 10 : 1;
const seconds = (s) => s * 1000 * SLOW;
const smokeStarted = performance.now();

const dir = mkdtempSync(join(tmpdir(), "odmr-smoke-"));
const binary = join(dir, basename(source));
copyFileSync(source, binary);
chmodSync(binary, 0o755);
// The caller's ODMR_RELAY_* settings must not leak into the relay under test.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ODMR_RELAY_")));
// --database: every command below (user, domain, serve) works on that shared PostgreSQL queue instead.
if (opts.database) env.ODMR_RELAY_DATABASE = opts.database;
/** The command line that runs the binary with `args`, through the emulator when there is one. */
const command = (args) =>
  emulator.length ? [emulator[0], [...emulator.slice(1), binary, ...args]] : [binary, args];

let serve = null;
function fail(message) {
  console.error(`smoke: FAIL: ${message}`);
  if (serve && serve.exitCode === null) serve.kill("SIGKILL");
  console.error(`smoke: left ${dir} for inspection`);
  process.exit(1);
}
setTimeout(() => fail("the whole smoke took too long"), seconds(30)).unref();

function run(args) {
  const [cmd, argv] = command(args);
  const r = spawnSync(cmd, argv, { cwd: dir, env, encoding: "utf8", timeout: seconds(20) });
  if (r.status !== 0) fail(`${args.join(" ")} exited ${r.status ?? r.signal ?? r.error}: ${r.stderr}`);
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
/** The architecture an ELF executable is for, in Node's naming; null when not ELF or not known. */
function elfArch(path) {
  const header = Buffer.alloc(20);
  const fd = openSync(path, "r");
  readSync(fd, header, 0, 20, 0);
  closeSync(fd);
  if (header.toString("latin1", 0, 4) !== "\x7fELF") return null;
  return { 62: "x64", 183: "arm64" }[header.readUInt16LE(18)] ?? null;
}
async function getStatus() {
  const res = await fetch(`http://127.0.0.1:${httpPort}/status`, {
    signal: AbortSignal.timeout(seconds(10)),
  });
  if (res.status !== 200) fail(`/status answered ${res.status}`);
  return await res.json();
}

const version = run(["version"]).trim();
// A cross-compiled binary must report its own target, and proves we are not smoking the host binary.
const arch = elfArch(binary);
if (arch && !version.includes(`(linux-${arch},`)) fail(`version does not say linux-${arch}: ${version}`);
run(["user", "add", "smoke", "--generate"]);
const secret = /shown once\): (\S+)/.exec(run(["user", "passwd", "smoke", "--generate"]))?.[1];
if (!secret) fail("user passwd printed no secret");
run(["domain", "add", "smoke.test", "--user", "smoke"]);

const [httpPort, smtpPort, odmrPort] = [await freePort(), await freePort(), await freePort()];
const started = performance.now();
const [serveCmd, serveArgs] = command([
  "serve",
  "--http-listen",
  `127.0.0.1:${httpPort}`,
  "--smtp-listen",
  `127.0.0.1:${smtpPort}`,
  "--odmr-listen",
  `127.0.0.1:${odmrPort}`,
  "--odmrs-listen",
  "off",
]);
serve = spawn(serveCmd, serveArgs, { cwd: dir, env, stdio: ["ignore", "inherit", "inherit"] });
const exited = new Promise((resolve) => serve.on("exit", (code, signal) => resolve({ code, signal })));
const healthDeadline = performance.now() + seconds(15);
for (;;) {
  if (serve.exitCode !== null) fail(`serve exited with ${serve.exitCode} before /healthz answered`);
  if (performance.now() > healthDeadline) fail("/healthz never answered");
  const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { signal: AbortSignal.timeout(seconds(2)) })
    .catch(() => null);
  if (res?.status === 200) break;
  if (res) fail(`/healthz answered ${res.status}`);
  await new Promise((r) => setTimeout(r, 10));
}
const startMs = performance.now() - started;

/** Plays `steps` ([expected reply code, line to send next]) against an SMTP server. */
function smtpSession(port, steps) {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.setTimeout(seconds(30), () => socket.destroy(new Error("SMTP reply timed out")));
    let buffer = "";
    let step = 0;
    socket.on("data", (d) => {
      buffer += d;
      for (let i; (i = buffer.indexOf("\r\n")) >= 0;) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (/^\d{3}-/.test(line)) continue; // a multiline reply goes on
        const [expected, next] = steps[step++] ?? [];
        if (!expected || !line.startsWith(expected)) return socket.destroy(new Error(`unexpected: ${line}`));
        if (next === undefined) socket.end();
        else socket.write(next + "\r\n");
      }
    });
    socket.on("close", () => (step === steps.length ? resolve() : reject(new Error("closed early"))));
    socket.on("error", reject);
  });
}
await smtpSession(smtpPort, [
  ["220", "EHLO smoke.client"],
  ["250", "MAIL FROM:<a@sender.test>"],
  ["250", "RCPT TO:<bob@smoke.test>"],
  ["250", "DATA"],
  ["354", "Subject: smoke\r\n\r\nhello from the smoke test\r\n."],
  ["250", "QUIT"],
  ["221"],
]).catch((e) => fail(`SMTP intake: ${e.message}`));
const queued = await getStatus();
if (queued.queue?.recipients !== 1) fail(`/status after intake: queue ${JSON.stringify(queued.queue)}`);
console.log("smoke: message received on the intake; /status shows 1 recipient queued");

// A minimal local SMTP server standing in for the customer's MTA; it keeps what it is sent.
let sinkReceived = "";
const sink = createServer((socket) => {
  socket.write("220 sink ready\r\n");
  let buffer = "";
  let inData = false;
  socket.on("data", (d) => {
    buffer += d;
    for (let i; (i = buffer.indexOf("\r\n")) >= 0;) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      sinkReceived += line + "\n";
      if (inData) {
        if (line === ".") {
          inData = false;
          socket.write("250 ok\r\n");
        }
        continue;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "DATA") {
        inData = true;
        socket.write("354 go\r\n");
      } else if (verb === "QUIT") socket.end("221 bye\r\n");
      else socket.write("250 ok\r\n");
    }
  });
});
await new Promise((r) => sink.listen(0, "127.0.0.1", r));
// Async spawn: the sink above runs on this process's event loop, which spawnSync would block.
const [pullCmd, pullArgs] = command([
  "pull",
  "--server",
  `127.0.0.1:${odmrPort}`,
  "--user",
  "smoke",
  "--domains",
  "smoke.test",
  "--smtp",
  `127.0.0.1:${sink.address().port}`,
  "--tls", // the smoke relay has no certificate; pull wants plaintext said out loud
  "none",
  "--timeout",
  `${30 * SLOW}s`,
]);
const pulled = await new Promise((resolve) => {
  const p = spawn(pullCmd, pullArgs, { cwd: dir, env: { ...env, ODMR_RELAY_PULL_SECRET: secret } });
  const killer = setTimeout(() => p.kill("SIGKILL"), seconds(60));
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d) => (stdout += d));
  p.stderr.on("data", (d) => (stderr += d));
  p.on("exit", (status, signal) => {
    clearTimeout(killer);
    resolve({ status: status ?? signal, stdout, stderr });
  });
});
sink.close();
if (pulled.status !== 0) fail(`pull exited ${pulled.status}: ${pulled.stderr}`);
if (!/RCPT TO:<bob@smoke\.test>/i.test(sinkReceived) || !sinkReceived.includes("hello from the smoke test")) {
  fail(`the local server did not get the message: ${sinkReceived}`);
}
console.log(`smoke: ATRN with the binary's pull -> ${pulled.stdout.trim()}`);
// The relay records the ATRN session after the connection ends, so pull can exit before the
// record is written (on PostgreSQL the write is a round trip): poll for it, bounded.
let after = await getStatus();
for (let waited = 0; !after.recentAtrnSessions?.[0] && waited < seconds(10); waited += 100) {
  await new Promise((r) => setTimeout(r, 100));
  after = await getStatus();
}
const atrn = after.recentAtrnSessions?.[0];
if (after.queue?.recipients !== 0 || atrn?.delivered !== 1) {
  fail(`/status after pull: queue ${JSON.stringify(after.queue)}, last ATRN ${JSON.stringify(atrn)}`);
}
console.log(`smoke: /status shows the queue empty and ATRN session ${atrn.id} delivered 1`);

serve.kill("SIGTERM");
const stopped = await Promise.race([exited, new Promise((r) => setTimeout(r, seconds(20), null).unref())]);
if (!stopped) fail("serve did not exit after SIGTERM");
if (stopped.code !== 0) fail(`serve exited with ${stopped.code ?? stopped.signal} after SIGTERM`);
console.log(`smoke: serve -> /healthz 200 in ${startMs.toFixed(0)} ms -> SIGTERM -> exit 0`);
console.log(`smoke: binary ${(statSync(binary).size / 1048576).toFixed(1)} MiB`);
rmSync(dir, { recursive: true, force: true });
const total = ((performance.now() - smokeStarted) / 1000).toFixed(1);
console.log(`smoke: OK in ${total} s (${basename(source)}${emulator.length ? ` under ${emulator[0]}` : ""})`);
