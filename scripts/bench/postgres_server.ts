/**
 * A throwaway PostgreSQL 15 cluster for the benchmarks (test/support/postgres.ts: loopback only, SCRAM,
 * fsync and synchronous_commit on as in production; as root the server runs as the `postgres` user).
 *
 *   bun scripts/bench/postgres_server.ts [--max-seconds 3600] >url.txt &
 *
 * prints the superuser URL of the cluster's `postgres` database as one line, then keeps the cluster until
 * SIGTERM or SIGINT (or --max-seconds, so a forgotten one does not outlive the bench), stops it and
 * removes its files. scripts/bench_intake.sh and scripts/bench_atrn.sh take that URL as DATABASE and
 * create a fresh database on it for every relay they start. scripts/bench/main.ts imports
 * `benchPostgres` instead.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { postgresAvailable, startPostgres, type TestPostgres } from "../../test/support/postgres.ts";

export { postgresAvailable };

/** Starts the cluster; the caller must `stop()` it (a process exit stops it too). */
export function benchPostgres(): Promise<TestPostgres> {
  return startPostgres();
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { "max-seconds": { type: "string", default: "3600" } } });
  const maxSeconds = Number(values["max-seconds"]);
  if (!(maxSeconds > 0)) {
    throw new Error(`--max-seconds must be a positive number, not ${values["max-seconds"]}`);
  }
  const cluster = await benchPostgres();
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    clearTimeout(lifetime);
    console.error(`postgres_server: ${why}; stopping the cluster`);
    await cluster.stop();
    process.exit(0);
  };
  const lifetime = setTimeout(() => void stop(`${maxSeconds} s elapsed`), maxSeconds * 1000);
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  console.log(cluster.url);
}
