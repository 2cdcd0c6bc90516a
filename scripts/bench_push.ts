/**
 * Push-delivery latency (`pull --watch`): the relay (`serve`) and `pull --watch` as separate processes,
 * Postfix's `smtp-sink -d` as the customer's local MTA. Sends N messages into the intake, one every
 * `gapMs`, and measures, per message, the time from the intake's `250` to the sink writing the message
 * (the dump directory is polled every millisecond, which is the resolution). Prints median and max.
 * Loopback only; every loop and wait is bounded.
 *
 *   bun scripts/bench_push.ts [N=20] [gapMs=200]
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { relayCommand } from "./bench/relay_process.ts";

const SMTP_SINK = "/usr/sbin/smtp-sink";
const count = Math.min(Math.max(1, Number(process.argv[2] ?? 20) || 20), 10_000);
const gapMs = Math.min(Math.max(0, Number(process.argv[3] ?? 200) || 200), 60_000);
// RELAY_BIN=dist/odmr-relay runs the compiled binary (relay and pull) instead of Bun on the source.
const [relayCmd, ...relayPre] = relayCommand(process.env.RELAY_BIN || undefined);
const SECRET = "push-bench-secret-0123456789";

if (!existsSync(SMTP_SINK)) {
  console.error(`${SMTP_SINK} is missing (apt-get install postfix)`);
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** One SMTP transaction; resolves with the time (performance.now) the 250 to the final dot arrived. */
function sendOne(port: number, rcpt: string, subject: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setNoDelay(true);
    const steps = [
      "EHLO bench.test\r\n",
      "MAIL FROM:<bench@sender.test>\r\n",
      `RCPT TO:<${rcpt}>\r\n`,
      "DATA\r\n",
      `Subject: ${subject}\r\n\r\npush bench\r\n.\r\n`,
      "QUIT\r\n",
    ];
    let buffer = "";
    let step = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("SMTP send timed out"));
    }, 30_000);
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      for (;;) {
        const end = buffer.indexOf("\r\n");
        if (end < 0) return;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (line[3] === "-") continue;
        if (step === 5) {
          // The reply to the final dot: the message is committed.
          if (!line.startsWith("250")) reject(new Error(`intake refused: ${line}`));
          resolve(performance.now());
        }
        if (step < steps.length) socket.write(steps[step++]!);
        else {
          clearTimeout(timer);
          socket.end();
        }
      }
    });
    socket.on("error", reject);
  });
}

const dir = mkdtempSync(join(tmpdir(), "odmr-bench-push-"));
const dataDir = join(dir, "data");
const dumps = join(dir, "sink");
mkdirSync(dumps);
// smtp-sink drops to "nobody" when started as root: it must reach and write the dump directory.
chmodSync(dir, 0o755);
chmodSync(dumps, 0o777);
const children: ChildProcess[] = [];
try {
  const [smtp, odmr, http, sinkPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const cli = (args: string[], input?: string) => {
    const r = spawnSync(relayCmd, [...relayPre, ...args, "--data-dir", dataDir], { input, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  };
  cli(["user", "add", "bench", "--password-stdin"], SECRET);
  cli(["domain", "add", "push.test", "--user", "bench"]);
  const quiet = { stdio: ["ignore", "ignore", "inherit"] as ("ignore" | "inherit")[] };
  // smtp-sink refuses to run as root without an unprivileged user to switch to.
  const asUser = process.getuid?.() === 0 ? ["-u", "nobody"] : [];
  children.push(
    spawn(SMTP_SINK, ["-d", join(dumps, "%M."), ...asUser, `127.0.0.1:${sinkPort}`, "100"], quiet),
  );
  children.push(spawn(relayCmd, [
    ...relayPre,
    "serve",
    "--data-dir",
    dataDir,
    "--smtp-listen",
    `127.0.0.1:${smtp}`,
    "--odmr-listen",
    `127.0.0.1:${odmr}`,
    "--odmrs-listen",
    "off",
    "--http-listen",
    `127.0.0.1:${http}`,
    "--log-level",
    "warn",
    "--smtp-min-free-space",
    "0",
  ], quiet));
  await until("smtp-sink", () =>
    new Promise<boolean>((resolve) => {
      const probe = net.connect({ host: "127.0.0.1", port: sinkPort });
      probe.once("connect", () => {
        probe.destroy();
        resolve(true);
      });
      probe.once("error", () => resolve(false));
    }), 10_000);
  await until("the relay", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${http}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 30_000);
  children.push(spawn(relayCmd, [
    ...relayPre,
    "pull",
    "--server",
    `127.0.0.1:${odmr}`,
    "--user",
    "bench",
    "--domains",
    "push.test",
    "--smtp",
    `127.0.0.1:${sinkPort}`,
    "--tls",
    "none",
    "--watch",
    "--log-level",
    "warn",
  ], { ...quiet, env: { ...process.env, ODMR_RELAY_PULL_SECRET: SECRET } }));
  await until("the watch", async () => {
    const status = await (await fetch(`http://127.0.0.1:${http}/status`)).json() as { watching: unknown[] };
    return status.watching.length === 1;
  }, 30_000);

  const accepted: number[] = [];
  const arrived = new Map<number, number>();
  let polling = true;
  const seen = new Set<string>();
  // Watch the dump directory: a file appears when smtp-sink has the final dot.
  const poller = (async () => {
    while (polling) {
      for (const name of readdirSync(dumps)) {
        if (seen.has(name)) continue;
        const text = readFileSync(join(dumps, name), "latin1");
        const match = /Subject: push (\d+)/.exec(text);
        if (!match) continue;
        seen.add(name);
        arrived.set(Number(match[1]), performance.now());
      }
      await sleep(1);
    }
  })();
  for (let i = 0; i < count; i++) {
    accepted[i] = await sendOne(smtp, `u${i}@push.test`, `push ${i}`);
    await sleep(gapMs);
  }
  await until("every message at the sink", () => arrived.size === count, 30_000);
  polling = false;
  await poller;
  const latencies = accepted.map((t, i) => arrived.get(i)! - t).sort((a, b) => a - b);
  const median = latencies[Math.floor(latencies.length / 2)]!;
  const max = latencies.at(-1)!;
  console.log(
    `push latency over ${count} messages, ${gapMs} ms apart: median ${median.toFixed(1)} ms, ` +
      `max ${max.toFixed(1)} ms (intake 250 -> smtp-sink dump; relay and pull ${
        process.env.RELAY_BIN ? "binary" : "on Bun"
      })`,
  );
} finally {
  for (const child of children) child.kill("SIGTERM");
  await sleep(300);
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
