/**
 * Relay nodes as separate PROCESSES for the shared-queue tests: `src/main.ts serve` run by the runtime
 * that runs the test (Deno or Bun), every listener on a loopback port of its own, a data directory of
 * its own, the queue in a PostgreSQL database given by URL. Plus what those tests drive the nodes
 * with: the CLI (in-process, on the same database), one SMTP message over a real socket with the
 * reply it got, an authenticated ODMR session over a real socket, and a pg client to count rows.
 *
 * Every wait is bounded and every process is killed by `kill()`/`stop()` (the tests call them in
 * `finally`/`after`); a node also dies with the test process (SIGKILL from an exit hook).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import pg from "pg";
import { runCli } from "../../src/cli/run.ts";
import type { PollResult } from "../../src/customer/outcome.ts";
import { pull, type PullOptions } from "../../src/customer/pull.ts";
import { Logger } from "../../src/log/logger.ts";
import { freePort } from "./postgres.ts";
import { cramAuth } from "../server/odmr_helpers.ts";
import { TranscriptPeer } from "./transcript.ts";
import { tempDir } from "./temp.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** Longest wait for a node's /readyz after spawning it (a cold `deno run` on a busy 2-core machine). */
const READY_TIMEOUT_MS = 30_000;
/** Longest wait for a node to exit after SIGTERM before it gets SIGKILL. */
const STOP_TIMEOUT_MS = 15_000;
/** Output kept per node for error messages (the tail). */
const OUTPUT_KEEP_CHARS = 64 * 1024;
/** Spawns with fresh ports when a node could not bind the ones picked (another process took one). */
const SPAWN_ATTEMPTS = 3;

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` every 25 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * One poll by `username` of `domain` from `node`'s ODMR port into the local SMTP server on `localPort`,
 * with the project's own customer (`pull`), plaintext, bounded.
 */
export function pollNode(
  node: { odmrPort: number },
  credentials: { username: string; secret: string },
  domain: string,
  localPort: number,
  extra: Partial<PullOptions> = {},
): Promise<PollResult> {
  return pull({
    host: "127.0.0.1",
    port: node.odmrPort,
    tls: "none",
    username: credentials.username,
    secret: credentials.secret,
    domains: [domain],
    helo: "customer.test",
    localHost: "127.0.0.1",
    localPort,
    connectTimeoutMs: 5000,
    timeoutMs: 15_000,
    logger: new Logger({ level: "error", sink: () => {} }),
    ...extra,
  });
}

/** Options of {@linkcode spawnNode}. */
export interface NodeOptions {
  /** postgres:// URL of the shared queue. */
  database: string;
  nodeName: string;
  /** Further settings as flags without the dashes, e.g. `{ "cluster-lease-ttl": "3s" }`. */
  flags?: Record<string, string>;
}

/** A running relay node process. */
export interface RelayNode {
  readonly name: string;
  readonly smtpPort: number;
  readonly odmrPort: number;
  readonly httpPort: number;
  readonly dataDir: string;
  readonly pid: number;
  /** Whether the process has exited (by itself or killed). */
  readonly exited: boolean;
  /** Its stdout and stderr so far (the tail), for error messages. */
  output(): string;
  /** GET `path` on its HTTP API: the status code (0 when nothing answered) and the JSON body. */
  get(path: string): Promise<{ status: number; body: unknown }>;
  /** SIGKILL now and wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (a clean stop) and wait, bounded; SIGKILL when it takes too long. */
  stop(): Promise<void>;
}

/** Every node spawned and not yet reaped: killed when the test process ends without `kill()`. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const child of live) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
  };
  // Bun and `deno run` emit process "exit"; a Deno test module's isolate only gets "unload".
  process.on("exit", killAll);
  globalThis.addEventListener?.("unload", killAll);
}

/**
 * Spawns `serve` for the shared queue and waits (bounded) until its /readyz answers 200. Throws with
 * the node's output when it exits first or never gets ready.
 */
export async function spawnNode(options: NodeOptions): Promise<RelayNode> {
  for (let attempt = 1;; attempt++) {
    const node = await spawnOnce(options);
    try {
      await waitReady(node);
      return node;
    } catch (error) {
      await node.kill();
      const portTaken = /EADDRINUSE|address already in use/i.test(node.output());
      if (!portTaken || attempt >= SPAWN_ATTEMPTS) throw error;
    }
  }
}

async function waitReady(node: RelayNode): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (node.exited) throw new Error(`node ${node.name} exited before it was ready:\n${node.output()}`);
    if ((await node.get("/readyz")).status === 200) return;
    if (Date.now() > deadline) {
      throw new Error(`node ${node.name} /readyz not 200 within ${READY_TIMEOUT_MS} ms:\n${node.output()}`);
    }
    await sleep(50);
  }
}

async function spawnOnce(options: NodeOptions): Promise<RelayNode> {
  installExitHook();
  const [smtpPort, odmrPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = tempDir(`odmr-node-${options.nodeName}-`);
  const settings: Record<string, string> = {
    "data-dir": dataDir,
    database: options.database,
    "node-name": options.nodeName,
    hostname: "mx.relay.test",
    "smtp-listen": `127.0.0.1:${smtpPort}`,
    "odmr-listen": `127.0.0.1:${odmrPort}`,
    "odmrs-listen": "off",
    "http-listen": `127.0.0.1:${httpPort}`,
    "smtp-min-free-space": "0",
    // DSNs never leave the machine: a loopback port where nothing listens.
    smarthost: "127.0.0.1:1",
    "smarthost-tls": "opportunistic",
    "log-level": "info",
    ...options.flags,
  };
  const args = Object.entries(settings).flatMap(([k, v]) => [`--${k}`, v]);
  // `deno run` needs its permissions; `bun` runs a .ts file as it is.
  const runtimeArgs = process.versions.bun ? [] : ["run", "-A"];
  // The test's own ODMR_RELAY_* settings must not leak into the node.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("ODMR_RELAY_") && v !== undefined) env[k] = v;
  }
  const child = spawn(process.execPath, [...runtimeArgs, `${ROOT}src/main.ts`, "serve", ...args], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let output = "";
  const keep = (chunk: Uint8Array) => {
    output += new TextDecoder().decode(chunk);
    if (output.length > OUTPUT_KEEP_CHARS) output = output.slice(-OUTPUT_KEEP_CHARS);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      live.delete(child);
      resolve();
    });
  });
  const waitExit = async (ms: number) => {
    await Promise.race([exit, sleep(ms)]);
    return exited;
  };
  const kill = async () => {
    if (exited) return;
    child.kill("SIGKILL");
    // SIGKILL cannot be ignored; the bound only guards against a runtime that never reports the exit.
    await waitExit(STOP_TIMEOUT_MS);
  };
  return {
    name: options.nodeName,
    smtpPort,
    odmrPort,
    httpPort,
    dataDir,
    pid: child.pid ?? 0,
    get exited() {
      return exited;
    },
    output: () => output,
    async get(path) {
      try {
        const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, { signal: AbortSignal.timeout(5000) });
        const text = await res.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch { /* not JSON */ }
        return { status: res.status, body };
      } catch {
        return { status: 0, body: null };
      }
    },
    kill,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      if (!(await waitExit(STOP_TIMEOUT_MS))) await kill();
    },
  };
}

/** Runs the CLI in-process (as `odmr-relay ARGS`); throws with its output unless it exits 0. */
export async function cli(args: string[], stdin = ""): Promise<string> {
  const out: string[] = [];
  const code = await runCli(args, {
    out: (t) => out.push(t),
    err: (t) => out.push(t),
    readStdin: () => Promise.resolve(stdin),
    env: {},
  });
  if (code !== 0) throw new Error(`odmr-relay ${args[0]} ${args[1] ?? ""} exited ${code}: ${out.join("\n")}`);
  return out.join("\n");
}

/** Creates the schema, an account and its domains on the shared queue with the admin CLI. */
export async function provision(
  database: string,
  account: { user: string; secret: string; domains: string[] },
): Promise<void> {
  await cli(["migrate", "--database", database]);
  await cli(["user", "add", account.user, "--password-stdin", "--database", database], `${account.secret}\n`);
  for (const domain of account.domains) {
    await cli(["domain", "add", domain, "--user", account.user, "--database", database]);
  }
}

/** How one SMTP submission ended: the reply to the end of data, or where it stopped. */
export interface Submission {
  /** The reply code that ended the attempt (the end-of-data reply when it got that far); 0: no reply. */
  code: number;
  /** The last reply line, or the error when the connection failed. */
  line: string;
  /** True only when the end-of-data got a 2xx: the relay took responsibility (RFC 5321 4.1.1.4). */
  accepted: boolean;
}

/**
 * Submits one message to `rcpt` over a real socket to an intake (EHLO, MAIL, RCPT, DATA, QUIT). Never
 * throws: a refused connection, a closed one or a timeout is `code: 0`.
 */
export async function submit(port: number, rcpt: string, subject: string): Promise<Submission> {
  let peer: TranscriptPeer | undefined;
  let last = "";
  const step = async (line: string | null, want: string): Promise<number | null> => {
    if (line !== null) await peer!.sendLine(line);
    const reply = await peer!.readReply(10_000);
    last = reply.at(-1) ?? "";
    const code = Number(last.slice(0, 3));
    return last.startsWith(want) ? null : code;
  };
  try {
    peer = await TranscriptPeer.connect(port, { timeoutMs: 10_000 });
    const stopped = (await step(null, "220")) ?? (await step("EHLO sender.test", "250")) ??
      (await step("MAIL FROM:<sender@remote.test>", "250")) ?? (await step(`RCPT TO:<${rcpt}>`, "250")) ??
      (await step("DATA", "354"));
    if (stopped !== null) return { code: stopped, line: last, accepted: false };
    await peer.send(
      `Subject: ${subject}\r\nMessage-ID: <${subject}@remote.test>\r\n\r\nbody of ${subject}\r\n.\r\n`,
    );
    const reply = await peer.readReply(20_000);
    last = reply.at(-1) ?? "";
    const code = Number(last.slice(0, 3));
    await peer.sendLine("QUIT").catch(() => {});
    return { code, line: last, accepted: code >= 200 && code < 300 };
  } catch (error) {
    return { code: 0, line: last || String(error), accepted: false };
  } finally {
    peer?.close();
  }
}

/** An ODMR session over a real socket, authenticated: greeting, EHLO, AUTH CRAM-MD5 (RFC 2645 4). */
export async function odmrLogin(port: number, user: string, secret: string): Promise<TranscriptPeer> {
  const peer = await TranscriptPeer.connect(port, { timeoutMs: 10_000 });
  try {
    await peer.expect("220 *");
    await peer.sendLine("EHLO customer.test");
    await peer.readReply();
    const auth = await cramAuth(peer, user, secret);
    if (!auth.startsWith("235")) throw peer.fail(`AUTH failed: ${auth}`);
    return peer;
  } catch (error) {
    peer.close();
    throw error;
  }
}

/** One query on a fresh connection to `database`, closed afterwards. */
export async function query<T extends pg.QueryResultRow>(database: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: database, connectionTimeoutMillis: 5000 });
  client.on("error", () => {}); // a server going away must not kill Deno (docs/postgres_driver.md)
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Queued recipients and stored messages in the shared queue. */
export async function queueCounts(database: string): Promise<{ queued: number; messages: number }> {
  const [row] = await query<{ queued: number; messages: number }>(
    database,
    "SELECT (SELECT count(*)::int FROM recipients WHERE status = 'queued') AS queued, " +
      "(SELECT count(*)::int FROM messages) AS messages",
  );
  return row!;
}
