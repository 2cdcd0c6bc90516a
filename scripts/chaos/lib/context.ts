/**
 * What every suite is given: its seed and random stream, whether it runs heavy, its report, a scratch
 * directory, the binary under test, and a cleanup scope. Everything a suite starts (relay processes,
 * sinks, tmpfs mounts, sockets) is registered with `defer` the moment it exists, so a failure, a
 * timeout or Ctrl-C still kills it and unmounts what was mounted.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SuiteReport } from "./report.ts";
import { Rng, suiteSeed } from "./rng.ts";

/** Cleanup actions, run last-registered first. */
export class Scope {
  #tasks: { what: string; fn: () => unknown }[] = [];

  /** Registers `fn`; the returned function runs it now (once) and forgets it. */
  defer(what: string, fn: () => unknown): () => Promise<void> {
    const task = { what, fn };
    this.#tasks.push(task);
    return async () => {
      const i = this.#tasks.indexOf(task);
      if (i < 0) return;
      this.#tasks.splice(i, 1);
      await task.fn();
    };
  }

  /** Runs every registered action; errors are printed, never thrown (cleanup must finish). */
  async close(): Promise<void> {
    while (this.#tasks.length > 0) {
      const task = this.#tasks.pop()!;
      try {
        await task.fn();
      } catch (error) {
        console.error(`chaos: cleanup "${task.what}" failed: ${String(error)}`);
      }
    }
  }
}

/** Options shared by every suite. */
export interface RunOptions {
  seed: number;
  heavy: boolean;
  binary: string;
  /** Keep scratch directories (for inspection after a failure). */
  keep: boolean;
  /** Reported bugs whose failures are notes in this run (see SuiteReport.known). */
  knownBugs: ReadonlySet<string>;
}

/** One suite's world. */
export interface SuiteContext {
  readonly name: string;
  readonly heavy: boolean;
  readonly binary: string;
  readonly rng: Rng;
  readonly report: SuiteReport;
  readonly scope: Scope;
  /** A fresh scratch directory (removed at the end unless --keep). */
  readonly dir: string;
  /** A subdirectory of `dir`, created on first use. */
  path(...parts: string[]): string;
}

/** Makes a suite's context; `scope.close()` must be called when it ends. */
export function makeContext(name: string, options: RunOptions): SuiteContext {
  const seed = suiteSeed(options.seed, name);
  const dir = mkdtempSync(join(tmpdir(), `odmr-chaos-${name}-`));
  const scope = new Scope();
  if (!options.keep) scope.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return {
    name,
    heavy: options.heavy,
    binary: options.binary,
    rng: new Rng(seed),
    report: new SuiteReport(name, options.seed, options.knownBugs),
    scope,
    dir,
    path: (...parts) => join(dir, ...parts),
  };
}
