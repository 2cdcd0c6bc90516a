/**
 * What a suite hands back: named figures for its one report line, and the failures it found.
 * A failure never throws by itself: a suite records every broken promise it sees and goes on, so one
 * run shows all of them (a suite throws only when it cannot go on at all).
 */

/** Failures printed and kept per suite; the rest are only counted (one bug can fail thousands of checks). */
const MAX_FAILURES_KEPT = 40;

/** The figures and failures of one suite. */
export class SuiteReport {
  readonly name: string;
  readonly seed: number;
  readonly figures = new Map<string, string | number>();
  readonly failures: string[] = [];
  /** Facts worth telling that are not failures (slow paths, odd but allowed answers). */
  readonly notes: string[] = [];
  readonly #started = performance.now();
  #failureCount = 0;

  /** Bugs reported but not fixed yet, named with --known-bug: their failures are printed as notes. */
  readonly #knownBugs: ReadonlySet<string>;

  constructor(name: string, seed: number, knownBugs: ReadonlySet<string> = new Set()) {
    this.name = name;
    this.seed = seed;
    this.#knownBugs = knownBugs;
  }

  /**
   * A failure caused by a bug already reported (KNOWN_BUGS in main.ts): a failure unless the run
   * was told `--known-bug ID`, then a loud note and a `known_bugs` figure, so CI can stay green
   * while the fix is pending without the bug going quiet.
   */
  known(id: string, what: string): void {
    if (!this.#knownBugs.has(id)) return this.fail(`${what} [bug ${id}]`);
    this.add("known_bugs");
    this.note(`KNOWN BUG ${id}: ${what}`);
  }

  /** Sets a figure. */
  set(key: string, value: string | number): void {
    this.figures.set(key, value);
  }

  /** Adds to a numeric figure (creating it at 0). */
  add(key: string, n = 1): void {
    const old = this.figures.get(key);
    this.figures.set(key, (typeof old === "number" ? old : 0) + n);
  }

  /** Records a failure unless `ok`; returns `ok`. */
  check(ok: boolean, what: string): boolean {
    if (!ok) this.fail(what);
    return ok;
  }

  /** Records a failure (printed at once too, so a long run shows it while it happens). */
  fail(what: string): void {
    this.#failureCount++;
    if (this.failures.length < MAX_FAILURES_KEPT) {
      this.failures.push(what);
      console.error(`chaos ${this.name}: FAIL: ${what}`);
    }
  }

  /** Records a note. */
  note(what: string): void {
    this.notes.push(what);
    console.log(`chaos ${this.name}: note: ${what}`);
  }

  /** A view that prefixes figure names and failures with a part's name (`intake.kills`). */
  part(prefix: string): PartReport {
    return {
      seed: this.seed,
      set: (k, v) => this.set(`${prefix}.${k}`, v),
      add: (k, n) => this.add(`${prefix}.${k}`, n),
      get: (k) => this.figures.get(`${prefix}.${k}`),
      check: (ok, what) => this.check(ok, `${prefix}: ${what}`),
      fail: (what) => this.fail(`${prefix}: ${what}`),
      known: (id, what) => this.known(id, `${prefix}: ${what}`),
      note: (what) => this.note(`${prefix}: ${what}`),
    };
  }

  get ok(): boolean {
    return this.#failureCount === 0;
  }

  get seconds(): number {
    return (performance.now() - this.#started) / 1000;
  }

  /** The suite's final line: `chaos crash: OK seed=1 kills=25 ... in 71.3 s`. */
  line(): string {
    const figures = [...this.figures].map(([k, v]) => `${k}=${v}`).join(" ");
    const verdict = this.ok ? "OK" : `FAILED (${this.#failureCount})`;
    return `chaos ${this.name}: ${verdict} seed=${this.seed} ${figures} in ${this.seconds.toFixed(1)} s`;
  }
}

/** One part of a suite's report (see `SuiteReport.part`). */
export interface PartReport {
  readonly seed: number;
  set(key: string, value: string | number): void;
  add(key: string, n?: number): void;
  get(key: string): string | number | undefined;
  check(ok: boolean, what: string): boolean;
  fail(what: string): void;
  known(id: string, what: string): void;
  note(what: string): void;
}

/** Formats bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)}MiB`;
}

/** A printable, replayable rendering of bytes: JSON string escapes for everything not plain ASCII. */
export function showBytes(bytes: Uint8Array, max = 600): string {
  const head = bytes.subarray(0, max);
  let s = "";
  for (const b of head) {
    if (b === 0x5c) s += "\\\\";
    else if (b === 0x22) s += '\\"';
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else if (b === 0x0d) s += "\\r";
    else if (b === 0x0a) s += "\\n";
    else s += `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return `"${s}"${bytes.length > max ? ` (+${bytes.length - max} bytes)` : ""}`;
}
