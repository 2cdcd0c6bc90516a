#!/usr/bin/env node
// Measures how much the relay's resident memory grows while it receives one large message on the
// intake port (issue 3: "a 50 MB message is received without holding it in memory").
//
//   node scripts/measure_intake_rss.mjs [--runtime bun|deno] [--size-mb 50] [--json] [--trace]
//
// Spawns `serve` from this checkout in a temp data directory (smtp on a free loopback port, other
// listeners off), warms it up with one 1 MB message, reads VmRSS from /proc/PID/status as the
// baseline, then streams the big message and samples VmRSS every 10 ms until the 250. Prints the
// baseline, the peak, the growth, and the stored size (checked with the sqlite3 CLI).
// --trace prints the RSS timeline (every 100 ms, plus when the client finished sending and when the
// final reply came), to see whether growth happens while receiving or while committing.
// Not a timed test; loopback only; the relay is stopped by its PID at the end.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const runtime = opt("--runtime", "bun");
const sizeMb = Number(opt("--size-mb", "50"));
const json = args.includes("--json");
const trace = args.includes("--trace");
const samples = [];

const bin = join(root, "node_modules", ".bin", runtime);
const main = join(root, "src", "main.ts");
const cli = (rest) => (runtime === "deno" ? ["run", "-A", main, ...rest] : [main, ...rest]);
const dir = mkdtempSync(join(tmpdir(), "odmr-rss-"));
let child = null;
let dataDone = 0;
let sentBytes = 0;

function fail(message) {
  console.error(`measure_intake_rss: ${message}`);
  if (child && child.exitCode === null) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}

function admin(rest) {
  const r = spawnSync(bin, cli([...rest, "--data-dir", join(dir, "data")]), { encoding: "utf8" });
  if (r.status !== 0) fail(`${rest.join(" ")} failed: ${r.stderr}`);
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** A tiny SMTP client: sends `size` bytes of body in one transaction, returns the final reply. */
function sendMessage(port, size) {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    let buf = "";
    let step = 0;
    const lines = [
      "EHLO rss.test",
      `MAIL FROM:<rss@remote.test> SIZE=${size}`,
      "RCPT TO:<big@example.test>",
      "DATA",
    ];
    const line = Buffer.from("0123456789".repeat(7) + "abcdefgh\r\n");
    const block = Buffer.alloc(line.length * 1024);
    for (let i = 0; i < 1024; i++) line.copy(block, i * line.length);
    const pump = async () => {
      let sent = 0;
      sock.write("Subject: rss\r\n\r\n");
      sent += 17;
      while (sent + block.length <= size - 16) {
        if (!sock.write(block)) await new Promise((r) => sock.once("drain", r));
        sent += block.length;
      }
      sock.write(".\r\n");
      dataDone = Date.now();
      sentBytes = sent;
    };
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      let i;
      while ((i = buf.indexOf("\r\n")) >= 0) {
        const reply = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (/^\d{3}-/.test(reply)) continue;
        if (step === 0 && !reply.startsWith("220")) return reject(new Error(reply));
        if (step > 0 && step <= 3 && !reply.startsWith("250")) return reject(new Error(reply));
        if (step === 4) {
          if (!reply.startsWith("354")) return reject(new Error(reply));
          pump().catch(reject);
          step++;
          continue;
        }
        if (step === 5) {
          sock.end("QUIT\r\n");
          return resolve(reply);
        }
        sock.write(lines[step] + "\r\n");
        step++;
      }
    });
    sock.on("error", reject);
  });
}

async function waitForPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = connect({ host: "127.0.0.1", port });
      s.on("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail("relay did not start listening");
}

admin(["user", "add", "alice", "--generate"]);
admin(["domain", "add", "example.test", "--user", "alice"]);
const port = await freePort();
child = spawn(
  bin,
  cli([
    "serve",
    "--data-dir",
    join(dir, "data"),
    "--smtp-listen",
    `127.0.0.1:${port}`,
    "--odmr-listen",
    "off",
    "--odmrs-listen",
    "off",
    "--http-listen",
    "off",
    "--log-level",
    "warn",
    "--smtp-min-free-space",
    "0",
    "--smtp-max-message-size",
    String(Math.max(64, Math.ceil(sizeMb * 1.1)) * 1024 * 1024),
  ]),
  { stdio: ["ignore", "ignore", "inherit"] },
);
await waitForPort(port);
const pid = child.pid;

await sendMessage(port, 1024 * 1024); // warm-up: JIT, SQLite page cache, spool path
await new Promise((r) => setTimeout(r, 200));
const baseline = rssBytes(pid);
let peak = baseline;
let peakDuringData = baseline;
const timer = setInterval(() => {
  try {
    const rss = rssBytes(pid);
    peak = Math.max(peak, rss);
    if (!dataDone) peakDuringData = Math.max(peakDuringData, rss);
    if (trace) samples.push([Date.now(), rss]);
  } catch { /* exited */ }
}, 10);
const size = Math.round(sizeMb * 1024 * 1024);
dataDone = 0; // the warm-up set it
const sendStart = Date.now();
const reply = await sendMessage(port, size).catch((e) => fail(`send failed: ${e.message}`));
const replyAt = Date.now();
await new Promise((r) => setTimeout(r, 100));
clearInterval(timer);
peak = Math.max(peak, rssBytes(pid));

const q = spawnSync("sqlite3", [
  join(dir, "data", "queue.db"),
  "SELECT size FROM messages ORDER BY id DESC LIMIT 1",
], {
  encoding: "utf8",
});
const storedSize = Number(q.stdout.trim());
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
rmSync(dir, { recursive: true, force: true });

const result = {
  runtime,
  messageBytes: size,
  baselineRssBytes: baseline,
  peakRssBytes: peak,
  rssGrowthBytes: peak - baseline,
  rssGrowthWhileReceivingBytes: peakDuringData - baseline,
  reply,
  storedSize,
  stored: reply.startsWith("250") && storedSize > sentBytes,
};
const mb = (n) => (n / 1024 / 1024).toFixed(1);
console.log(
  `${runtime}: ${mb(size)} MB message -> ${reply.slice(0, 40)}; stored ${storedSize} bytes; ` +
    `RSS baseline ${mb(baseline)} MB, peak ${mb(peak)} MB, growth ${mb(peak - baseline)} MB ` +
    `(while receiving ${mb(peakDuringData - baseline)} MB) ` +
    `(${((100 * (peak - baseline)) / size).toFixed(1)}% of the message)`,
);
if (json) console.log(JSON.stringify(result));
if (trace) {
  let last = -Infinity;
  for (const [t, rss] of samples) {
    if (t - last < 100) continue;
    last = t;
    const phase = t < dataDone ? "sending" : t < replyAt ? "after last byte sent" : "after reply";
    console.log(
      `  t=${String(t - sendStart).padStart(6)} ms  growth ${mb(rss - baseline).padStart(6)} MB  ${phase}`,
    );
  }
  console.log(`  last byte sent at ${dataDone - sendStart} ms, reply at ${replyAt - sendStart} ms`);
}
process.exit(result.stored ? 0 : 1);
