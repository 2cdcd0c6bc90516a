/**
 * Suite 2, faults: disk full, database locked by another process, database unwritable, the
 * customer vanishing after the turn, SIGTERM under load. Each fault is its own module with its own
 * relay; the suite's line has each one's figures.
 */
import type { SuiteContext } from "./lib/context.ts";
import { diskFault } from "./faults_disk.ts";
import { lockFault } from "./faults_lock.ts";
import { readOnlyFault } from "./faults_readonly.ts";
import { sigtermFault } from "./faults_sigterm.ts";
import { vanishFault } from "./faults_vanish.ts";

const FAULTS: Record<string, (ctx: SuiteContext) => Promise<void>> = {
  disk: diskFault,
  lock: lockFault,
  readonly: readOnlyFault,
  vanish: vanishFault,
  sigterm: sigtermFault,
};

/** Runs the fault suite (CHAOS_PART=name runs one fault). */
export async function faultSuite(ctx: SuiteContext): Promise<void> {
  const only = process.env.CHAOS_PART;
  for (const [name, run] of Object.entries(FAULTS)) {
    if (only && only !== name) continue;
    try {
      await run(ctx);
    } catch (error) {
      // One fault that cannot go on must not hide the others.
      ctx.report.fail(`${name}: aborted: ${(error as Error).stack ?? String(error)}`);
    }
  }
}
