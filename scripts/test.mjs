#!/usr/bin/env node
// Runs the whole test suite on Deno AND Bun (the same node:test files), then prints one line
// `N passed, N failed` totalled over both runtimes. Neither runner prints that line itself.
//
//   npm test                      every test on both runtimes
//   npm test -- test/smtp         only some paths
//   TEST_RUNTIMES=bun npm test    one runtime
//   TEST_SEQUENTIAL=1 npm test    the runtimes one after the other (default: side by side)
//
// Counting: both runners write JUnit XML; we count LEAF test cases (Deno also lists each
// describe() block as a case, Bun does not), so the two runtimes' numbers are comparable.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const bin = (name) => join(root, "node_modules", ".bin", name);
// `bun test` matches its arguments as path substrings ("test/cli" would also pick test/client/),
// so directories get a trailing slash; Deno accepts both forms.
const paths = (process.argv.slice(2).length ? process.argv.slice(2) : ["test/"]).map((p) =>
  existsSync(p) && statSync(p).isDirectory() && !p.endsWith("/") ? `${p}/` : p
);
const runtimes = (process.env.TEST_RUNTIMES ?? "deno,bun").split(",").map((s) => s.trim()).filter(Boolean);
const outDir = join(root, "test-artifacts");
mkdirSync(outDir, { recursive: true });

const commands = {
  deno: (xml) => [bin("deno"), ["test", "-A", "--reporter=dot", `--junit-path=${xml}`, ...paths]],
  bun: (
    xml,
  ) => [bin("bun"), [
    "test",
    "--timeout",
    "300000",
    "--reporter=junit",
    `--reporter-outfile=${xml}`,
    ...paths,
  ]],
};

function decode(s) {
  return s.replace(/&gt;/g, ">").replace(/&lt;/g, "<").replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
}

/** Leaf test cases and which of them failed, from a JUnit file. */
function countJunit(xml) {
  const cases = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m; (m = re.exec(xml));) {
    const name = decode(/\bname="([^"]*)"/.exec(m[1])?.[1] ?? "");
    const body = m[3] ?? "";
    const failed = /<(failure|error)\b/.test(body);
    const skipped = /<skipped\b/.test(body);
    cases.push({ name, failed, skipped });
  }
  const names = cases.map((c) => c.name);
  const leaves = cases.filter((c) => !names.some((n) => n.startsWith(c.name + " > ")));
  return {
    passed: leaves.filter((c) => !c.failed && !c.skipped).length,
    failed: leaves.filter((c) => c.failed).length,
    skipped: leaves.filter((c) => c.skipped).length,
  };
}

/** Runs one runtime's suite; its output goes to test-artifacts/<runtime>.log and, at the end, here. */
function run(runtime) {
  const make = commands[runtime];
  if (!make) {
    console.error(`unknown runtime ${runtime}`);
    process.exit(2);
  }
  const xml = join(outDir, `junit-${runtime}.xml`);
  rmSync(xml, { force: true });
  const [cmd, args] = make(xml);
  const header = `\n=== ${runtime}: ${[cmd.replace(root, ""), ...args].join(" ")}`;
  const log = join(outDir, `${runtime}.log`);
  const out = openSync(log, "w");
  const child = spawn(cmd, args, {
    cwd: root,
    stdio: ["ignore", out, out],
    env: { ...process.env, NO_COLOR: "1" },
  });
  return new Promise((resolve) => {
    child.on("close", (status) => {
      closeSync(out);
      console.log(header);
      process.stdout.write(readFileSync(log, "utf8"));
      let counts = { passed: 0, failed: 0, skipped: 0 };
      if (existsSync(xml)) counts = countJunit(readFileSync(xml, "utf8"));
      // A runner that exits non-zero without a failing case (type error, crash) is one failure.
      if (status !== 0 && counts.failed === 0) counts.failed = 1;
      resolve({ runtime, ...counts });
    });
  });
}

// The runtimes run side by side (each suite waits mostly on sockets and timers, so two fit on two
// cores); TEST_SEQUENTIAL=1 runs them one after the other.
const results = process.env.TEST_SEQUENTIAL === "1"
  ? await runtimes.reduce(async (done, r) => [...(await done), await run(r)], Promise.resolve([]))
  : await Promise.all(runtimes.map(run));
let passed = 0;
let failed = 0;
let skipped = 0;
const summary = [];
for (const counts of results) {
  passed += counts.passed;
  failed += counts.failed;
  skipped += counts.skipped;
  summary.push(
    `${counts.runtime}: ${counts.passed} passed, ${counts.failed} failed${
      counts.skipped ? `, ${counts.skipped} skipped` : ""
    }`,
  );
}
console.log("\n" + summary.join("\n"));
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 ? 1 : 0);
