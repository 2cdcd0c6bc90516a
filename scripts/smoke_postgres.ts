/**
 * The binary's smoke test on the shared PostgreSQL queue: starts a throwaway cluster with TLS on loopback
 * (test/support/postgres.ts), runs scripts/smoke_binary.mjs with `--database` set to a verify-full TLS URL of
 * a fresh database, and stops the cluster. Exits with the smoke's status.
 *
 *   bun scripts/smoke_postgres.ts [--binary dist/odmr-relay]
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import process from "node:process";
import { postgresSkipReason, startPostgres } from "../test/support/postgres.ts";

const skip = postgresSkipReason();
if (skip) {
  console.error(`smoke_postgres: ${skip}`);
  process.exit(1);
}
const root = new URL("..", import.meta.url).pathname;
const server = await startPostgres({ tls: true });
let status = 1;
try {
  await server.createDatabase("smoke");
  const url = server.tlsUrl.replace(/\/postgres\?/, "/smoke?");
  const smoke = spawnSync(
    "node",
    [`${root}scripts/smoke_binary.mjs`, ...process.argv.slice(2), "--database", url],
    { stdio: "inherit", timeout: 120_000 },
  );
  status = smoke.status ?? 1;
} finally {
  await server.stop();
}
process.exit(status);
