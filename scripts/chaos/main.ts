/**
 * The chaos suites of issue 11 (crash, faults, fuzz, load) against the compiled binary, on
 * loopback only. Runs the CI variants by default, the heavy ones with --heavy; every run has a seed
 * (printed) that replays it.
 *
 *   bun scripts/chaos/main.ts [--heavy] [--seed N] [--suite crash,faults,fuzz,load]
 *                             [--binary dist/odmr-relay] [--keep] [--known-bug ID ...]
 *
 * Exit 0 when every suite passed, 1 when one failed, 2 on bad arguments. Each suite ends with one
 * `chaos NAME: OK|FAILED seed=... figures... in N s` line. Why TypeScript on Bun: the suites read the
 * relay's SQLite file with node:sqlite, which this machine's Node (20) lacks and Bun has; Bun comes
 * with `npm ci`, and `deno check`/`lint`/`fmt` cover the scripts like the rest of the code.
 *
 * While working on one part: CHAOS_PART=intake|atrn|dsn (crash) or disk|lock|readonly|vanish|sigterm
 * (faults) runs that part alone; CHAOS_FUZZ_SESSIONS=N changes the fuzz count; CHAOS_FUZZ_SESSION=N
 * replays fuzz session N of the given --seed against a fresh relay and prints its bytes and replies.
 * Needs root for the tmpfs and read-only mounts (without it those parts are skipped with a note).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { makeContext, type RunOptions, type SuiteContext } from "./lib/context.ts";
import { crashSuite } from "./crash.ts";
import { faultSuite } from "./faults.ts";
import { fuzzSuite } from "./fuzz.ts";
import { loadSuite } from "./load.ts";

/** Bounded time per suite (CI, heavy): past it the suite fails and its cleanup runs. */
const SUITES: Record<string, { run: (ctx: SuiteContext) => Promise<void>; ciMs: number; heavyMs: number }> = {
  crash: { run: crashSuite, ciMs: 120_000, heavyMs: 900_000 },
  faults: { run: faultSuite, ciMs: 120_000, heavyMs: 300_000 },
  fuzz: { run: fuzzSuite, ciMs: 150_000, heavyMs: 1_500_000 },
  load: { run: loadSuite, ciMs: 90_000, heavyMs: 300_000 },
};

/**
 * Bugs the suites found that are reported and not fixed yet (repro under /tmp/chaos-bugs/ when they
 * were found). `--known-bug ID` turns their failures into notes; remove an entry once it is fixed.
 */
// readonly-start (serve started on a database it could not write) was fixed: src/relay.ts assertWritable.
const KNOWN_BUGS: Record<string, string> = {};

const root = new URL("../..", import.meta.url).pathname;
let parsed;
try {
  parsed = parseArgs({
    options: {
      heavy: { type: "boolean", default: false },
      seed: { type: "string" },
      suite: { type: "string" },
      binary: { type: "string" },
      keep: { type: "boolean", default: false },
      "known-bug": { type: "string", multiple: true },
    },
  });
} catch (error) {
  console.error(`chaos: ${(error as Error).message}`);
  process.exit(2);
}
const v = parsed.values;
const seed = v.seed === undefined ? (Date.now() % 1_000_000_007) >>> 0 : Number(v.seed);
if (!Number.isInteger(seed) || seed < 0) {
  console.error("chaos: --seed must be a non-negative integer");
  process.exit(2);
}
const names = v.suite ? v.suite.split(",").map((s) => s.trim()).filter(Boolean) : Object.keys(SUITES);
for (const n of names) {
  if (!SUITES[n]) {
    console.error(`chaos: unknown suite ${n} (${Object.keys(SUITES).join(", ")})`);
    process.exit(2);
  }
}
const binary = resolve(v.binary ?? `${root}/dist/odmr-relay`);
if (!existsSync(binary)) {
  console.error(`chaos: no binary at ${binary}: run \`npm run build\` first, or pass --binary`);
  process.exit(2);
}
const knownBugs = new Set(v["known-bug"] ?? []);
for (const id of knownBugs) {
  if (!(id in KNOWN_BUGS)) {
    console.error(`chaos: unknown --known-bug ${id} (${Object.keys(KNOWN_BUGS).join(", ") || "none"})`);
    process.exit(2);
  }
}
const options: RunOptions = { seed, heavy: v.heavy, binary, keep: v.keep, knownBugs };
console.log(`chaos: seed=${seed} ${v.heavy ? "heavy" : "ci"} suites=${names.join(",")} binary=${binary}`);

const lines: string[] = [];
let failed = false;
let current: SuiteContext | null = null;
// Ctrl-C or a SIGTERM from CI still kills the relays and unmounts the tmpfs of the running suite.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, async () => {
    console.error(`chaos: ${signal}: cleaning up`);
    await current?.scope.close();
    process.exit(1);
  });
}
process.on("unhandledRejection", (reason) => {
  console.error(`chaos: unhandled rejection in the harness: ${String(reason)}`);
  current?.report.fail(`harness: unhandled rejection ${String(reason)}`);
});

for (const name of names) {
  const suite = SUITES[name]!;
  const ctx = makeContext(name, options);
  current = ctx;
  const limitMs = v.heavy ? suite.heavyMs : suite.ciMs;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      suite.run(ctx),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`time bound of ${limitMs / 1000} s exceeded`)), limitMs);
      }),
    ]);
  } catch (error) {
    ctx.report.fail(`aborted: ${(error as Error).stack ?? String(error)}`);
  } finally {
    clearTimeout(timer);
    await ctx.scope.close();
  }
  const line = ctx.report.line();
  console.log(line);
  lines.push(line);
  if (!ctx.report.ok) {
    failed = true;
    console.log(
      `chaos ${name}: replay with: bun scripts/chaos/main.ts --suite ${name} --seed ${seed}${
        v.heavy ? " --heavy" : ""
      }`,
    );
  }
}
current = null;
console.log("chaos: summary");
for (const l of lines) console.log(`  ${l}`);
process.exit(failed ? 1 : 0);
