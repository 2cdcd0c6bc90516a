/**
 * A throwaway PostgreSQL 15 cluster for tests and benchmarks: initdb into a fresh temp directory, a server
 * on 127.0.0.1 only (and a unix socket in that directory), SCRAM-SHA-256 for a generated password, and
 * optionally TLS with a throwaway CA (the setup docs/postgres_driver.md measured the driver against).
 *
 * initdb and postgres refuse to run as root, so when we are root every server binary runs as the
 * `postgres` OS user through `runuser`, in a directory handed over to it.
 *
 * @module
 */

import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import pg from "pg";
import { makeTestCert } from "./certs.ts";

const BIN = "/usr/lib/postgresql/15/bin";
/** The bootstrap superuser initdb creates (instead of `postgres`). */
const ROLE = "relay";
/** Bounds on every child process, ms: initdb writes and fsyncs a whole cluster. */
const INITDB_TIMEOUT_MS = 120_000;
/** pg_ctl waits `-t` seconds itself; the child timeout is a little longer so pg_ctl can report first. */
const PG_CTL_WAIT_S = 60;
const PG_CTL_TIMEOUT_MS = (PG_CTL_WAIT_S + 10) * 1000;
/** Fresh ports tried when the server cannot bind the one we picked (another process took it meanwhile). */
const PORT_ATTEMPTS = 4;
/** Lines of the server log quoted in errors. */
const LOG_TAIL_LINES = 30;

/** A running throwaway cluster. */
export interface TestPostgres {
  /** Plaintext URL of the `postgres` database as the superuser `relay`. */
  url: string;
  port: number;
  /** Password of the `relay` role. */
  password: string;
  /** The temp directory holding everything (data/, the socket, the log, the TLS files). */
  dir: string;
  /** The cluster's data directory (inside `dir`). */
  dataDir: string;
  /** CA certificate (PEM) that signed the server's certificate; only with `tls`. */
  caPem: string | undefined;
  /** File of `caPem`; only with `tls`. */
  caFile: string | undefined;
  /** `url` with `sslmode=verify-full&sslrootcert=caFile`; only with `tls`. */
  tlsUrl: string | undefined;
  /** Creates an empty database and returns its plaintext URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (`pg_ctl stop -m fast`) but keeps the data: "the database went away". */
  stopServer(): Promise<void>;
  /** Starts the stopped server again on the same port. */
  startServer(): Promise<void>;
  /** Stops the server and removes the directory; safe to call more than once. */
  stop(): Promise<void>;
}

/** A cluster started with `{ tls: true }`: the TLS fields are set. */
export interface TestPostgresTls extends TestPostgres {
  caPem: string;
  caFile: string;
  tlsUrl: string;
}

/** True when the PostgreSQL 15 server binaries are installed (Debian's postgresql-15). */
export function postgresAvailable(): boolean {
  return existsSync(join(BIN, "initdb"));
}

/** Why PostgreSQL tests are skipped, or false when they can run (for `describe(..., { skip })`). */
export function postgresSkipReason(): string | false {
  return postgresAvailable()
    ? false
    : `PostgreSQL 15 not installed (${BIN}/initdb; apt-get install postgresql-15)`;
}

const asRoot = process.getuid?.() === 0;

/** The postgres OS user's ids, when we are root and must hand files over to it. */
function postgresIds(): { uid: number; gid: number } | undefined {
  if (!asRoot) return undefined;
  const id = (flag: string) =>
    Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8", timeout: 5000 }));
  return { uid: id("-u"), gid: id("-g") };
}

/** The command line of a server binary: through `runuser` to the postgres user when we are root. */
function pgCommand(binary: string, args: string[]): [string, string[]] {
  return asRoot
    ? ["runuser", ["-u", "postgres", "--", join(BIN, binary), ...args]]
    : [join(BIN, binary), args];
}

/** Runs a server binary with a bounded time; rejects with its output. */
function runPg(binary: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  const [file, argv] = pgCommand(binary, args);
  return new Promise((resolve, reject) => {
    execFile(file, argv, { cwd, timeout: timeoutMs, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      if (error) {
        const why = error.killed
          ? `timed out after ${timeoutMs} ms`
          : `failed (${error.message.split("\n")[0]})`;
        reject(new Error(`${binary} ${why}\n${stdout}${stderr}`.trimEnd()));
      } else resolve(String(stdout));
    });
  });
}

/** A port that was free on 127.0.0.1 a moment ago (the OS picks it; we close and hand it to a server). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => port ? resolve(port) : reject(new Error("no port from listen(0)")));
    });
  });
}

function logTail(logFile: string): string {
  if (!existsSync(logFile)) return "(no server log)";
  const lines = readFileSync(logFile, "utf8").trimEnd().split("\n");
  return `server log (last ${LOG_TAIL_LINES} lines of ${logFile}):\n${
    lines.slice(-LOG_TAIL_LINES).join("\n")
  }`;
}

/** pg_ctl start failed; `portTaken` when the server could not bind its port. */
class StartError extends Error {
  constructor(message: string, readonly portTaken: boolean) {
    super(message);
  }
}

function handOver(path: string, ids: { uid: number; gid: number } | undefined): void {
  if (ids) chownSync(path, ids.uid, ids.gid);
}

/**
 * Creates and starts a cluster. With `tls: true` the server also accepts TLS (`ssl = on`) with a
 * certificate for DNS:localhost and IP:127.0.0.1; plaintext connections stay allowed.
 */
export function startPostgres(options: { tls: true }): Promise<TestPostgresTls>;
export function startPostgres(options?: { tls?: boolean }): Promise<TestPostgres>;
export async function startPostgres(options: { tls?: boolean } = {}): Promise<TestPostgres> {
  if (!postgresAvailable()) throw new Error(postgresSkipReason() || "PostgreSQL unavailable");
  const ids = postgresIds();
  const dir = mkdtempSync(join(tmpdir(), "odmr-pg-"));
  // The path goes into pg_ctl's -o, which a shell splits.
  if (/[\s'"\\$`]/.test(dir)) throw new Error(`temp dir ${dir} has characters pg_ctl -o cannot take`);
  const dataDir = join(dir, "data");
  const logFile = join(dir, "postgres.log");
  const password = randomBytes(18).toString("base64url");
  let running = false;
  const exitGuard = () => {
    // The test process is ending without stop(): do not leave a server behind (synchronous, bounded).
    if (running) {
      running = false;
      try {
        execFileSync(...pgCommand("pg_ctl", ["stop", "-D", dataDir, "-m", "immediate", "-w", "-t", "10"]), {
          cwd: dir,
          stdio: "ignore",
          timeout: 15_000,
        });
      } catch { /* best effort */ }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Bun and `deno run` emit process "exit"; a Deno test module's isolate only gets "unload".
  process.on("exit", exitGuard);
  globalThis.addEventListener?.("unload", exitGuard);
  const dropGuard = () => {
    process.off("exit", exitGuard);
    globalThis.removeEventListener?.("unload", exitGuard);
  };

  try {
    handOver(dir, ids);
    const pwFile = join(dir, "pwfile");
    writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    handOver(pwFile, ids);
    await runPg(
      "initdb",
      [
        "-D",
        dataDir,
        "-U",
        ROLE,
        "--pwfile",
        pwFile,
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
      ],
      dir,
      INITDB_TIMEOUT_MS,
    );
    rmSync(pwFile);

    // TCP from loopback only, SCRAM everywhere (the socket too: tests must prove the password works).
    writeFileSync(
      join(dataDir, "pg_hba.conf"),
      "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n",
    );
    handOver(join(dataDir, "pg_hba.conf"), ids);

    let caPem: string | undefined;
    let caFile: string | undefined;
    if (options.tls) {
      const tlsDir = join(dir, "tls");
      mkdirSync(tlsDir);
      const cert = makeTestCert(tlsDir);
      // The server refuses a key that others can read, and must own it (or be in its group).
      chmodSync(cert.keyFile, 0o600);
      for (const file of [tlsDir, cert.certFile, cert.keyFile, cert.caFile]) handOver(file, ids);
      writeFileSync(
        join(dataDir, "postgresql.conf"),
        `\nssl = on\nssl_cert_file = '${cert.certFile}'\nssl_key_file = '${cert.keyFile}'\n`,
        { flag: "a" },
      );
      caPem = cert.caPem;
      caFile = cert.caFile;
    }

    // synchronous_commit and fsync on, as in production: tests see real commit durability (and cost).
    const startOn = async (port: number) => {
      const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
      const serverOptions = `-c listen_addresses=127.0.0.1 -p ${port} -k '${dir}' -c fsync=on ` +
        "-c synchronous_commit=on -c max_connections=100";
      const args = [
        "start",
        "-w",
        "-t",
        String(PG_CTL_WAIT_S),
        "-D",
        dataDir,
        "-l",
        logFile,
        "-o",
        serverOptions,
      ];
      try {
        await runPg("pg_ctl", args, dir, PG_CTL_TIMEOUT_MS);
      } catch (error) {
        // Only this attempt's log lines tell whether the port was the problem.
        const thisAttempt = existsSync(logFile) ? readFileSync(logFile).subarray(logStart).toString() : "";
        throw new StartError(
          `${(error as Error).message}\n${logTail(logFile)}`,
          /could not bind/.test(thisAttempt),
        );
      }
      running = true;
    };

    let port = 0;
    for (let attempt = 1;; attempt++) {
      port = await freePort();
      try {
        await startOn(port);
        break;
      } catch (error) {
        if (!(error instanceof StartError && error.portTaken) || attempt >= PORT_ATTEMPTS) throw error;
      }
    }

    const url = `postgresql://${ROLE}:${password}@127.0.0.1:${port}/postgres`;
    const urlOf = (database: string) => url.replace(/\/postgres$/, `/${encodeURIComponent(database)}`);
    let stopping: Promise<void> | undefined;
    const stopServer = async () => {
      const args = ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", String(PG_CTL_WAIT_S)];
      await runPg("pg_ctl", args, dir, PG_CTL_TIMEOUT_MS).catch((error: Error) => {
        throw new Error(`${error.message}\n${logTail(logFile)}`);
      });
      running = false;
    };
    return {
      url,
      port,
      password,
      dir,
      dataDir,
      caPem,
      caFile,
      tlsUrl: caFile ? `${url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}` : undefined,
      async createDatabase(name) {
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
        client.on("error", () => {}); // a server going away must not kill Deno (docs/postgres_driver.md)
        await client.connect();
        try {
          await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
        } finally {
          await client.end();
        }
        return urlOf(name);
      },
      stopServer,
      startServer: () => startOn(port),
      stop() {
        stopping ??= (async () => {
          try {
            if (running) await stopServer();
          } finally {
            // If the fast stop failed, the guard stops the server immediately before removing its files.
            exitGuard();
            dropGuard();
          }
        })();
        return stopping;
      },
    };
  } catch (error) {
    exitGuard();
    dropGuard();
    throw error;
  }
}
