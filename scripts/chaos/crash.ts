/**
 * Suite 1, crash consistency against the compiled binary: SIGKILL during intake, during an ATRN
 * collection, and while DSNs go out. Each part checks the database file of the dead process; the
 * suite's line sums the parts (kills, acknowledged, checked, losses, duplicates) and keeps each
 * part's own figures.
 */
import type { SuiteContext } from "./lib/context.ts";
import { crashAtrn } from "./crash_atrn.ts";
import { crashDsn } from "./crash_dsn.ts";
import { crashIntake } from "./crash_intake.ts";

/** Runs the crash suite. */
export async function crashSuite(ctx: SuiteContext): Promise<void> {
  const only = process.env.CHAOS_PART;
  const parts = ["intake", "atrn", "dsn"].filter((p) => !only || only === p);
  if (parts.includes("intake")) await crashIntake(ctx);
  if (parts.includes("atrn")) await crashAtrn(ctx);
  if (parts.includes("dsn")) await crashDsn(ctx);
  const sum = (k: string) => parts.reduce((n, p) => n + Number(ctx.report.figures.get(`${p}.${k}`) ?? 0), 0);
  for (const k of ["kills", "acknowledged", "checked", "losses", "duplicates"]) ctx.report.set(k, sum(k));
}
