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
const secret = /shown once\): (\S+)/.exec(run(["user", "passwd", "smoke", "--generate"]))[1];
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

// Receive one message over SMTP (the intake), then collect it with the binary's own `pull`.
async function smtpSession(port, lines) {
  const { connect } = await import("node:net");
  return await new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let buffer = "";
    let step = 0;
    socket.on("data", (d) => {
      buffer += d;
      while (buffer.includes("\r\n")) {
        const line = buffer.slice(0, buffer.indexOf("\r\n"));
        buffer = buffer.slice(line.length + 2);
        if (/^\d{3}-/.test(line)) continue;
        if (!/^[23]/.test(line)) return reject(new Error(`unexpected reply: ${line}`));
        if (step < lines.length) socket.write(lines[step++] + "\r\n");
        else socket.end();
      }
    });
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
}
await smtpSession(smtpPort, [
  "EHLO smoke.client",
  "MAIL FROM:<a@sender.test>",
  "RCPT TO:<bob@smoke.test>",
  "DATA",
  "Subject: smoke\r\n\r\nhello from the smoke test\r\n.",
  "QUIT",
]);
console.log("smoke: message received on the intake");

// A minimal local SMTP server standing in for the customer's MTA.
const { createServer: createTcpServer } = await import("node:net");
let sinkGotData = false;
const sink = createTcpServer((socket) => {
  socket.write("220 sink ready\r\n");
  let buffer = "";
  let inData = false;
  socket.on("data", (d) => {
    buffer += d;
    for (let i; (i = buffer.indexOf("\r\n")) >= 0;) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      if (inData) {
        if (line === ".") {
          inData = false;
          sinkGotData = true;
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
const sinkPort = sink.address().port;
// Async spawn: the sink above runs on this process's event loop, which spawnSync would block.
const pulled = await new Promise((resolve) => {
  const p = spawn(binary, [
    "pull",
    "--server",
    `127.0.0.1:${odmrPort}`,
    "--user",
    "smoke",
    "--domains",
    "smoke.test",
    "--smtp",
    `127.0.0.1:${sinkPort}`,
    "--timeout",
    "30s",
  ], { cwd: dir, env: { ...process.env, ODMR_RELAY_PULL_SECRET: secret } });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d) => (stdout += d));
  p.stderr.on("data", (d) => (stderr += d));
  p.on("exit", (status) => resolve({ status, stdout, stderr }));
});
sink.close();
if (pulled.status !== 0 || !sinkGotData) {
  fail(`pull exited ${pulled.status}, sink got data: ${sinkGotData}: ${pulled.stderr}`);
}
console.log(`smoke: ATRN with the binary's pull -> ${pulled.stdout.trim()}`);
const status = await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json().catch(() => null);
if (status) {
  console.log(`smoke: /status answers (queue: ${JSON.stringify(status.queue ?? status.totals ?? {})})`);
}
const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
child.kill("SIGTERM");
const { code, signal } = await exited;
if (code !== 0) fail(`serve exited with ${code ?? signal} after SIGTERM`);
console.log(`smoke: serve -> /healthz 200 in ${startMs.toFixed(0)} ms -> SIGTERM -> exit 0`);
console.log(`smoke: binary ${(statSync(binary).size / 1048576).toFixed(1)} MiB`);
rmSync(dir, { recursive: true, force: true });
console.log("smoke: OK");
