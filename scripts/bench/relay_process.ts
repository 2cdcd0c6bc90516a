/**
 * The relay as a separate process for the benchmarks: the compiled binary (or `bun src/main.ts`), in its
 * own data directory, on free loopback ports. Start-up is timed from the spawn to the first accepted
 * connection (the intake's 220 read); RSS is read from /proc. Loopback only; every wait is bounded.
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;

/** The command that runs the relay: the binary when given, else Bun on the source. */
export function relayCommand(bin: string | undefined): [string, ...string[]] {
  return bin ? [bin] : [join(root, "node_modules/.bin/bun"), join(root, "src/main.ts")];
}

/** Runs a CLI command of the relay (user, domain...) and throws with its stderr when it fails. */
export function relayCli(bin: string | undefined, args: string[], input?: string): string {
  const [cmd, ...pre] = relayCommand(bin);
  const r = spawnSync(cmd!, [...pre, ...args], { encoding: "utf8", input, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A running relay. */
export interface RelayProcess {
  child: ChildProcess;
  smtpPort: number;
  odmrPort: number;
  httpPort: number;
  /** Milliseconds from spawn to the first accepted connection (its 220 read). */
  startupMs: number;
  rssBytes(): number;
  stop(): Promise<void>;
}

/** Resident memory of a process, from /proc (0 once it is gone). */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Waits for a 220 greeting on `port`; false on refusal, close or timeout. */
export function greets(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    let text = "";
    s.on("data", (d: Uint8Array) => {
      text += new TextDecoder().decode(d);
      if (text.includes("\r\n")) done(text.startsWith("220"));
    });
    s.on("error", () => done(false));
    s.on("close", () => done(false));
  });
}

/** Starts `serve` on `dataDir` with the given extra flags and waits (at most 120 s) for the intake's 220. */
export async function startRelayProcess(
  bin: string | undefined,
  dataDir: string,
  extraFlags: string[] = [],
): Promise<RelayProcess> {
  const [smtpPort, odmrPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const [cmd, ...pre] = relayCommand(bin);
  const started = performance.now();
  const child = spawn(cmd!, [
    ...pre,
    "serve",
    "--data-dir",
    dataDir,
    "--hostname",
    "relay.bench.test",
    "--smtp-listen",
    `127.0.0.1:${smtpPort}`,
    "--odmr-listen",
    `127.0.0.1:${odmrPort}`,
    "--odmrs-listen",
    "off",
    "--http-listen",
    `127.0.0.1:${httpPort}`,
    "--smtp-min-free-space",
    "0",
    "--log-level",
    "error",
    ...extraFlags,
  ], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Uint8Array) => {
    if (stderr.length < 10_000) stderr += new TextDecoder().decode(d);
  });
  const deadline = started + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the relay exited (${child.exitCode}): ${stderr}`);
    if (await greets(smtpPort, 1000)) break;
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the relay did not accept within 120 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const startupMs = performance.now() - started;
  // The HTTP listener comes up after the SMTP ones: wait for it too (not part of the start-up time).
  for (let i = 0; i < 1000; i++) {
    const ok = await fetch(`http://127.0.0.1:${httpPort}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    child,
    smtpPort,
    odmrPort,
    httpPort,
    startupMs,
    rssBytes: () => rssOf(child.pid!),
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
