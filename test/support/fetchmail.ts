/**
 * Real interop peers for the ODMR tests: Debian's fetchmail as the ODMR customer (`proto ODMR`, like
 * ../shared/bench/odmr_customer.sh) and Postfix's smtp-sink as the customer's local MTA.
 *
 * fetchmail gets a 0600 rcfile in a fresh temp FETCHMAILHOME (nothing written to ~ or /var/run) and runs
 * `fetchmail --nodetach --daemon 0 --pidfile --idfile -f rc -v -v` under a hard timeout. Exit codes are
 * fetchmail's, as measured with Debian's 6.4: 0 turned and ended cleanly, and also 0 for no mail (453);
 * 128 for a rejected secret; 4 for a refused ATRN.
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import * as net from "node:net";
import { join } from "node:path";
import { tempDir } from "./temp.ts";

const SINK_PATHS = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"];

/** Path of a program on PATH (or one of `extra`), or null. */
function which(name: string, extra: string[] = []): string | null {
  for (const p of extra) if (existsSync(p)) return p;
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/** Why the interop tests cannot run here, or null when fetchmail and smtp-sink are both installed. */
export function interopMissing(): string | null {
  const missing = [];
  if (!which("fetchmail")) missing.push("fetchmail (apt-get install fetchmail)");
  if (!which("smtp-sink", SINK_PATHS)) missing.push("smtp-sink (apt-get install postfix)");
  return missing.length ? `skipped: ${missing.join(" and ")} not installed` : null;
}

/** Options of {@link runFetchmail}. */
export interface FetchmailOptions {
  port: number;
  user: string;
  password: string;
  /** fetchdomains (sent as `ATRN a,b`). */
  domains: string[];
  /** Where fetchmail relays the reversed session (host/port). */
  smtpPort: number;
  /** Extra user options for the poll entry (e.g. `ssl`, `sslcertck`, `sslcertfile "..."`). */
  extra?: string[];
  /** fetchmail's own `timeout` (default 60 s). */
  timeoutSec?: number;
  /** Hard limit for the whole run (default timeoutSec + 30 s). */
  killAfterMs?: number;
}

/** How fetchmail ended. */
export interface FetchmailResult {
  code: number | null;
  output: string;
  rc: string;
}

/** Runs fetchmail once as the ODMR customer; never throws for what fetchmail does. */
export async function runFetchmail(options: FetchmailOptions): Promise<FetchmailResult> {
  const home = tempDir("odmr-fetchmail-");
  chmodSync(home, 0o700);
  const timeout = options.timeoutSec ?? 60;
  const q = (s: string) => `"${s.replace(/["\\]/g, "\\$&")}"`;
  const rc = [
    "set no syslog",
    "set no bouncemail",
    `poll "127.0.0.1" with proto ODMR service ${options.port} timeout ${timeout}:`,
    `    user ${q(options.user)} password ${q(options.password)}`,
    `    fetchdomains ${options.domains.join(",")}`,
    `    smtphost "127.0.0.1/${options.smtpPort}"`,
    ...(options.extra ?? []).map((e) => `    ${e}`),
    "",
  ].join("\n");
  const rcPath = join(home, "fetchmailrc");
  writeFileSync(rcPath, rc, { mode: 0o600 });
  chmodSync(rcPath, 0o600);
  const args = [
    "--nodetach",
    "--daemon",
    "0",
    "--pidfile",
    join(home, "fetchmail.pid"),
    "--idfile",
    join(home, "fetchids"),
    "-f",
    rcPath,
    "-v",
    "-v",
  ];
  const child = spawn("fetchmail", args, {
    env: { ...process.env, FETCHMAILHOME: home, LC_ALL: "C" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Uint8Array) => (output += new TextDecoder().decode(d)));
  child.stderr!.on("data", (d: Uint8Array) => (output += new TextDecoder().decode(d)));
  const code = await exitOf(child, options.killAfterMs ?? (timeout + 30) * 1000);
  return { code, output, rc };
}

/** Waits for a child to exit; kills it (by its pid) after `ms`. */
function exitOf(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.once("error", () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
}

/** A free loopback TCP port (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** A running smtp-sink. */
export interface Sink {
  port: number;
  /** Messages counted so far (`-c` counter). */
  count(): number;
  stop(): Promise<void>;
}

/**
 * Starts `smtp-sink -c [-u nobody] 127.0.0.1:PORT 100` on a free port and waits (bounded) until it
 * accepts a connection. With `dumpDir`, `-d DIR/%M%S` would write messages; here only counting is used.
 */
export async function startSink(options: { port?: number } = {}): Promise<Sink> {
  const bin = which("smtp-sink", SINK_PATHS);
  if (!bin) throw new Error("smtp-sink not installed");
  const port = options.port ?? await freePort();
  const dir = tempDir("odmr-sink-");
  const out = join(dir, "sink.out");
  writeFileSync(out, "");
  const args = ["-c"];
  if (process.getuid?.() === 0) args.push("-u", "nobody");
  args.push(`127.0.0.1:${port}`, "100");
  const fd = openSync(out, "a");
  const child = spawn(bin, args, { stdio: ["ignore", fd, fd] });
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`smtp-sink exited: ${readFileSync(out, "utf8")}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("smtp-sink did not start listening within 5 s");
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // The probe connection above counted nothing (no message), but -c prints counters only per message.
  return {
    port,
    count() {
      const text = readFileSync(out, "latin1");
      const i = text.lastIndexOf("mesg=");
      return i < 0 ? 0 : Number(/^\d+/.exec(text.slice(i + 5))?.[0] ?? 0);
    },
    async stop() {
      if (child.exitCode === null) {
        const closed = new Promise((r) => child.once("close", r));
        child.kill("SIGTERM");
        await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
