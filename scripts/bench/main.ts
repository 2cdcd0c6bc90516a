/**
 * `npm run bench`: builds the binary and measures it next to the Postfix anchor in ONE run, then prints
 * one markdown table of medians with relay/Postfix ratios (and writes it to OUT/bench.md):
 *
 * - intake msg/s, 1 KB and 100 KB at 1, 10 and 50 sessions (scripts/bench_intake.sh; Postfix with its
 *   queue file fsync, the relay with SQLite WAL + synchronous=FULL: both durable before 250);
 * - drain msg/s over one ATRN session with `pull`, against Postfix's hold-queue flush, and through
 *   fetchmail (scripts/bench_atrn.sh);
 * - the same intake (10 sessions) and `pull` drain on the PostgreSQL queue (`--database`), on a throwaway
 *   local cluster (scripts/bench/postgres_server.ts: fsync and synchronous_commit on; a fresh database per
 *   measurement), against the Postfix figures of the SQLite steps (one anchor run serves both);
 * - push latency with `pull --watch` (scripts/bench_push.ts);
 * - RSS, start-up time and scale at 10k/100k queued recipients (scripts/bench/footprint.ts).
 *
 *   npm run bench                 full run (about 20 minutes on 2 cores)
 *   npm run bench -- --quick      about two minutes: one run per cell, fewer messages
 *   npm run bench -- --out DIR    keep the raw results in DIR (default /tmp/benchwork/bench-<date>)
 *
 * Needs Postfix, fetchmail, sqlite3, python3 (the apt line of .ci/run) and root for the Postfix anchor
 * (../shared/bench/setup_postfix_anchor.sh sets it up on loopback and it is stopped afterwards). The
 * PostgreSQL rows need postgresql-15 (its server binaries and psql); without it they show "-".
 * Loopback only; every step is bounded by counts and timeouts.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { benchPostgres, postgresAvailable } from "./postgres_server.ts";

const root = new URL("../..", import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    out: { type: "string" },
  },
});
const quick = values.quick;
const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const out = values.out ?? `/tmp/benchwork/bench-${stamp}`;
mkdirSync(out, { recursive: true });
const bin = join(root, "dist/odmr-relay");
const bun = join(root, "node_modules/.bin/bun");

/** Runs a step, its output teed to OUT/<name>.log; throws when it fails. */
function step(name: string, cmd: string, args: string[], env: Record<string, string> = {}): string {
  console.error(`--- ${name}`);
  const started = performance.now();
  const r = spawnSync(cmd, args, {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 45 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  writeFileSync(join(out, `${name}.log`), `${r.stdout ?? ""}\n--- stderr\n${r.stderr ?? ""}`);
  if (r.status !== 0) {
    throw new Error(`${name} failed (${r.status ?? r.signal}); see ${join(out, `${name}.log`)}\n${r.stderr}`);
  }
  console.error(`    ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return r.stdout;
}

step("build", "node", ["scripts/build.mjs"]);
if (!existsSync(bin)) throw new Error(`${bin} was not built`);

// --- intake
const intakeOut = join(out, "intake");
step("intake", "bash", ["scripts/bench_intake.sh"], {
  RELAY_BIN: bin,
  OUT: intakeOut,
  RUNS: quick ? "1" : "3",
  ...(quick ? { COUNT: "500" } : {}),
});

/** Median msg/s per (size, sessions) cell of an intake CSV. */
function intakeCells(file: string): Map<string, number> {
  const cells = new Map<string, number[]>();
  if (!existsSync(file)) return new Map();
  const [header, ...rows] = readFileSync(file, "utf8").trim().split("\n");
  const cols = header!.split(",");
  for (const row of rows) {
    const v = row.split(",");
    const get = (name: string) => v[cols.indexOf(name)]!;
    const key = `${get("size")}/${get("sessions")}`;
    cells.set(key, [...(cells.get(key) ?? []), Number(get("msgs_per_s"))]);
  }
  return new Map([...cells].map(([k, xs]) => [k, median(xs)]));
}
const relayIntake = intakeCells(join(intakeOut, "relay.csv"));
const postfixIntake = intakeCells(join(intakeOut, "postfix.csv"));

// --- drain
const drainResults = join(out, "drain.txt");
step("drain", "bash", ["scripts/bench_atrn.sh", ...(quick ? ["1000", "100", "1"] : ["2000", "300", "3"])], {
  RELAY_BIN: bin,
  MODES: "auto",
  RESULTS_FILE: drainResults,
});
/** The key=value lines bench_atrn.sh writes to RESULTS_FILE. */
function drainFile(file: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(file, "utf8").trim().split("\n").map((l) => l.split("=") as [string, string]),
  );
}
const drain = drainFile(drainResults);

// --- the PostgreSQL queue: intake at 10 sessions and the `pull` drain. The scripts create a fresh
// database on the cluster for every relay they start; the Postfix anchor already ran above.
const pgIntakeOut = join(out, "intake-postgres");
const pgDrainResults = join(out, "drain-postgres.txt");
let pgIntake = new Map<string, number>();
let pgDrain: Record<string, string> = {};
if (postgresAvailable()) {
  console.error("--- postgres (throwaway cluster)");
  const cluster = await benchPostgres();
  try {
    step("intake-postgres", "bash", ["scripts/bench_intake.sh"], {
      RELAY_BIN: bin,
      OUT: pgIntakeOut,
      DATABASE: cluster.url,
      SESSIONS: "10",
      SKIP_POSTFIX: "1",
      RUNS: quick ? "1" : "3",
      ...(quick ? { COUNT: "500" } : {}),
    });
    step("drain-postgres", "bash", [
      "scripts/bench_atrn.sh",
      ...(quick ? ["1000", "0", "1"] : ["2000", "0", "3"]),
    ], {
      RELAY_BIN: bin,
      MODES: "auto",
      DATABASE: cluster.url,
      SKIP_POSTFIX: "1",
      SKIP_FETCHMAIL: "1",
      RESULTS_FILE: pgDrainResults,
    });
  } finally {
    await cluster.stop();
  }
  pgIntake = intakeCells(join(pgIntakeOut, "relay.csv"));
  pgDrain = drainFile(pgDrainResults);
} else {
  console.error("--- postgres: skipped (postgresql-15 not installed)");
}

// --- push latency
const push = step("push", bun, ["scripts/bench_push.ts", quick ? "10" : "40", "100"], { RELAY_BIN: bin });
const pushMatch = /median ([\d.]+) ms, max ([\d.]+) ms/.exec(push);

// --- footprint
const footprint = JSON.parse(
  step("footprint", bun, ["scripts/bench/footprint.ts", "--bin", bin, ...(quick ? ["--quick"] : [])]).trim()
    .split("\n").at(-1)!,
) as Record<string, number>;

// --- the table
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
const n0 = (
  x: number | undefined,
) => (x === undefined || Number.isNaN(x) ? "-" : Math.round(x).toLocaleString("en"));
const ms = (x: number | undefined) => (x === undefined ? "-" : `${x.toFixed(1)} ms`);
const mib = (x: number | undefined) => (x === undefined ? "-" : `${(x / 1048576).toFixed(0)} MiB`);
const ratio = (a: number | undefined, b: number | undefined) =>
  a && b && Number.isFinite(a) && Number.isFinite(b) ? `${(a / b).toFixed(2)}x` : "-";

const rows: [string, string, string, string, string][] = [];
for (const size of [1024, 102400]) {
  for (const sessions of [1, 10, 50]) {
    const key = `${size}/${sessions}`;
    const r = relayIntake.get(key), p = postfixIntake.get(key);
    const target = size === 1024 && sessions === 10
      ? ">= 3x"
      : size === 102400 && sessions === 10
      ? ">= 2x"
      : "";
    rows.push([
      `intake ${size / 1024} KB, ${sessions} session${sessions > 1 ? "s" : ""} (msg/s)`,
      n0(r),
      n0(p),
      ratio(r, p),
      target,
    ]);
  }
}
for (const size of [1024, 102400]) {
  const key = `${size}/10`;
  const r = pgIntake.get(key), p = postfixIntake.get(key);
  rows.push([
    `intake ${size / 1024} KB, 10 sessions, PostgreSQL${size === 1024 ? " (msg/s)" : ""}`,
    n0(r),
    n0(p),
    ratio(r, p),
    "",
  ]);
}
const pull = Number(drain["pull-auto"]),
  flush = Number(drain["postfix"]),
  fetchmail = Number(drain["fetchmail-auto"]);
rows.push([
  "drain, one ATRN session, `pull` (msg/s) vs Postfix hold-queue flush",
  n0(pull),
  n0(flush),
  ratio(pull, flush),
  ">= 2x",
]);
const pgPull = Number(pgDrain["pull-auto"]);
rows.push([
  "drain, one ATRN session, `pull`, PostgreSQL (msg/s)",
  n0(pgPull),
  n0(flush),
  ratio(pgPull, flush),
  "",
]);
rows.push(["drain, one ATRN session, fetchmail (msg/s)", n0(fetchmail), "-", "-", "its line-relay ceiling"]);
rows.push([
  "push latency, `pull --watch`, median / max",
  pushMatch ? `${pushMatch[1]} / ${pushMatch[2]} ms` : "-",
  "-",
  "-",
  "",
]);
rows.push(["RSS idle", mib(footprint.rssIdle), "-", "-", "< 48 MiB"]);
rows.push(["RSS with 1,000 idle connections", mib(footprint.rssIdle1000), "-", "-", "< 96 MiB"]);
rows.push(["RSS peak while receiving one 50 MB message", mib(footprint.rssPeak50MB), "-", "-", ""]);
rows.push([
  `RSS after ${footprint.rounds} load rounds: median of the first / second half (max)`,
  `${mib(footprint.rssRoundsFirstHalf)} / ${mib(footprint.rssRoundsSecondHalf)} (${
    mib(footprint.rssRoundsMax)
  })`,
  "-",
  "-",
  "no growth",
]);
rows.push(["start-up to first accepted connection, empty queue", ms(footprint.startupEmptyMs), "-", "-", ""]);
rows.push([
  "start-up to first accepted connection, 100,000 queued",
  ms(footprint.startup100kMs),
  "-",
  "-",
  "",
]);
rows.push([
  "ATRN answer, 10,000 / 100,000 queued over 1,000 domains",
  `${ms(footprint.atrn10kMs)} / ${ms(footprint.atrn100kMs)}`,
  "-",
  "-",
  "flat",
]);
rows.push([
  "GET /status, 10,000 / 100,000 queued over 1,000 domains",
  `${ms(footprint.status10kMs)} / ${ms(footprint.status100kMs)}`,
  "-",
  "-",
  "flat",
]);

const machine = `${cpus().length} x ${cpus()[0]?.model.trim() ?? "cpu"}, ${
  (totalmem() / 2 ** 30).toFixed(0)
} GiB`;
const table = [
  `odmr-relay benchmark, ${new Date().toISOString().slice(0, 10)}, ${machine}; \`npm run bench${
    quick ? " -- --quick" : ""
  }\`` +
  ` (relay: the compiled binary; medians of ${quick ? 1 : 3} runs; both durable before 250)`,
  "",
  "| measure | relay | Postfix | relay / Postfix | target |",
  "|---|---:|---:|---:|---|",
  ...rows.map((r) => `| ${r.join(" | ")} |`),
].join("\n");
writeFileSync(join(out, "bench.md"), table + "\n");
console.log(table);
console.error(`raw results in ${out}`);
