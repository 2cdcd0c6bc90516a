/**
 * The relay under test as a separate process: the compiled binary (`serve`) with its own data
 * directory, loopback ports that stay the same across restarts (clients keep their target), and its
 * log appended to one file per instance. Also reads the process from outside (/proc: open file
 * descriptors, VmRSS, CPU time) and its HTTP API, because a chaos suite must judge the relay the
 * way an operator would, not from inside its event loop.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  appendFileSync,
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Scope } from "./context.ts";

/** Longest wait for /healthz after a start (a loaded 2-core machine can be slow). */
const START_TIMEOUT_MS = 20_000;
/** Longest wait for a killed or stopped process to be reaped. */
const EXIT_TIMEOUT_MS = 60_000;

/** An ODMR account and the domains it owns. */
export interface Account {
  user: string;
  secret: string;
  domains: string[];
}

/** A free loopback TCP port (bound and released; the relay binds it next). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      const port = typeof address === "object" && address ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** The environment for the binary: without the caller's ODMR_RELAY_* settings. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("ODMR_RELAY_") && v !== undefined) env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs an admin command of the binary synchronously; throws with its stderr when it fails. */
export function admin(binary: string, args: string[], input?: string): string {
  const r = spawnSync(binary, args, { input, encoding: "utf8", env: cleanEnv(), timeout: 30_000 });
  if (r.status !== 0) {
    throw new Error(`odmr-relay ${args.join(" ")} exited ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Creates accounts and domains in a fresh data directory (the CLI opens the database directly). */
export function provision(binary: string, dataDir: string, accounts: Account[]): void {
  for (const a of accounts) {
    admin(binary, ["user", "add", a.user, "--password-stdin", "--data-dir", dataDir], `${a.secret}\n`);
    for (const d of a.domains) admin(binary, ["domain", "add", d, "--user", a.user, "--data-dir", dataDir]);
  }
}

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: string | null;
}

/** Options of a relay instance. */
export interface RelayOptions {
  binary: string;
  dataDir: string;
  /** Where the instance keeps its config file and log. */
  workDir: string;
  /** Settings beyond the listeners and the data directory (config file keys). */
  settings?: Record<string, string | number | boolean>;
}

/** One relay instance: start, SIGKILL, SIGTERM, restart on the same ports and data. */
export class RelayProcess {
  readonly options: RelayOptions;
  readonly logPath: string;
  ports = { smtp: 0, odmr: 0, http: 0 };
  #proc: ChildProcess | null = null;
  #exit: Promise<Exit> | null = null;
  #exited: Exit | null = null;
  #starts = 0;
  /** Every unexpected exit (not caused by kill/stop), for the suites to fail on. */
  readonly crashes: string[] = [];
  #expectingExit = false;

  constructor(options: RelayOptions, scope: Scope) {
    this.options = options;
    this.logPath = join(options.workDir, "relay.log");
    scope.defer("kill relay", () => this.kill());
  }

  get pid(): number {
    return this.#proc?.pid ?? 0;
  }

  get running(): boolean {
    return this.#proc !== null && this.#exited === null;
  }

  get starts(): number {
    return this.#starts;
  }

  /** Writes the config file: the given settings over quiet, loopback-only defaults. */
  #writeConfig(): string {
    const path = join(this.options.workDir, "relay.json");
    const config = {
      hostname: "relay.chaos.test",
      dataDir: this.options.dataDir,
      smtpListen: `127.0.0.1:${this.ports.smtp}`,
      odmrListen: `127.0.0.1:${this.ports.odmr}`,
      odmrsListen: "off",
      httpListen: `127.0.0.1:${this.ports.http}`,
      logLevel: "warn",
      // tmpfs data directories are small; the free-space floor is tested on purpose only.
      smtpMinFreeSpace: "0",
      // Loopback only: an MX lookup (a DSN to a sender without a smarthost) goes to a dead local port.
      dnsServers: "127.0.0.1:9",
      ...this.options.settings,
    };
    writeFileSync(path, JSON.stringify(config, null, 2));
    return path;
  }

  /** Starts the process and waits for /healthz; throws when it exits or never answers. */
  async start(): Promise<void> {
    if (this.running) throw new Error("relay already running");
    if (this.ports.smtp === 0) {
      this.ports = { smtp: await freePort(), odmr: await freePort(), http: await freePort() };
    }
    const spawned = this.spawn();
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (this.#exited) {
        throw new Error(`relay exited at start (${describe(this.#exited)}): ${this.logTail(5)}`);
      }
      if (Date.now() > deadline) throw new Error(`relay /healthz did not answer in ${START_TIMEOUT_MS} ms`);
      const ok = await fetch(`http://127.0.0.1:${this.ports.http}/healthz`, {
        signal: AbortSignal.timeout(2000),
      })
        .then((r) => r.status === 200).catch(() => false);
      if (ok) return void spawned;
      await sleep(20);
    }
  }

  /** Spawns `serve` without waiting for it (a start expected to fail uses this directly). */
  spawn(): Promise<Exit> {
    const config = this.#writeConfig();
    this.#starts++;
    appendFileSync(this.logPath, `=== chaos: start ${this.#starts} at ${new Date().toISOString()}\n`);
    const fd = openSync(this.logPath, "a");
    const proc = spawn(this.options.binary, ["serve", "--config", config], {
      stdio: ["ignore", fd, fd],
      env: cleanEnv(),
    });
    closeSync(fd);
    this.#proc = proc;
    this.#exited = null;
    this.#expectingExit = false;
    this.#exit = new Promise<Exit>((resolve) => {
      proc.on("exit", (code, signal) => {
        const exit = { code, signal };
        this.#exited = exit;
        if (!this.#expectingExit) this.crashes.push(`relay exited unexpectedly (${describe(exit)})`);
        resolve(exit);
      });
    });
    return this.#exit;
  }

  /** SIGKILL now and wait for the process to be gone. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.#expectingExit = true;
    this.#proc!.kill("SIGKILL");
    await this.#waitExit();
  }

  /** SIGTERM and wait; returns how it exited and how long it took. */
  async stop(): Promise<Exit & { ms: number }> {
    if (!this.running) throw new Error("relay not running");
    this.#expectingExit = true;
    const t0 = performance.now();
    this.#proc!.kill("SIGTERM");
    const exit = await this.#waitExit();
    return { ...exit, ms: performance.now() - t0 };
  }

  /** Waits for a process that is expected to exit by itself (a start that must fail). */
  async expectExit(timeoutMs: number): Promise<Exit | null> {
    this.#expectingExit = true;
    const exit = await Promise.race([this.#exit!, sleep(timeoutMs).then(() => null)]);
    return exit;
  }

  async #waitExit(): Promise<Exit> {
    const exit = await Promise.race([this.#exit!, sleep(EXIT_TIMEOUT_MS).then(() => null)]);
    if (!exit) {
      this.#proc!.kill("SIGKILL");
      return await this.#exit!;
    }
    return exit;
  }

  /** GET a JSON endpoint of the HTTP API. */
  async json<T = Record<string, unknown>>(path: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.ports.http}${path}`, {
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}`);
    return await res.json() as T;
  }

  /** GET /status. */
  status(): Promise<Status> {
    return this.json<Status>("/status");
  }

  /** Open file descriptors of the process (sockets, database, log). */
  fds(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  /** Resident memory in bytes (VmRSS). */
  rss(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  }

  /** User + system CPU time in clock ticks (to see a relay that spins when it should idle). */
  cpuTicks(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  }

  /** The whole log so far. */
  log(): string {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  /** The last `n` log lines, for error messages. */
  logTail(n: number): string {
    return this.log().trimEnd().split("\n").slice(-n).join(" | ");
  }

  /** Log lines that mean a bug (a session that failed with an internal error, an unhandled error). */
  bugLines(): string[] {
    return this.log().split("\n").filter((l) => BUG_LINE.test(l));
  }
}

/** Log lines no chaos input may cause: the session loop's internal-error path and unhandled errors. */
export const BUG_LINE = /session failed|internal error|unhandled|uncaught|4\.3\.0 .*internal/i;

/** The part of GET /status the suites read. */
export interface Status {
  sessions: { smtp: number; odmr: number };
  queue: { messages: number; recipients: number; bytes: number };
  failed: { recipients: number; messages: number };
  dsnsPending: { total: number };
  shuttingDown: boolean;
}

function describe(exit: Exit): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A relay instance over a freshly provisioned data directory (default `<suite dir>/<name>-data`), with
 * its own config file and log in `<suite dir>/<name>` (a suite may run several relays, one at a time).
 */
export function newRelay(
  ctx: { binary: string; scope: Scope; dir: string },
  name: string,
  accounts: Account[],
  settings: RelayOptions["settings"] = {},
  dataDir = join(ctx.dir, `${name}-data`),
): { relay: RelayProcess; dataDir: string } {
  provision(ctx.binary, dataDir, accounts);
  const workDir = join(ctx.dir, name);
  mkdirSync(workDir, { recursive: true });
  const relay = new RelayProcess({ binary: ctx.binary, dataDir, workDir, settings }, ctx.scope);
  return { relay, dataDir };
}
