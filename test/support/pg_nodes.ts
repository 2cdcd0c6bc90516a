/**
 * Two queue nodes (two `PostgresQueue`s, as two relay processes would open them) on one fresh database
 * of a throwaway cluster, with one account owning the given domains: the setup of the store-level
 * cluster tests.
 */
import type { Clock } from "../../src/clock.ts";
import { PostgresQueue } from "../../src/queue/pg/postgres_queue.ts";
import { startPostgres, type TestPostgres } from "./postgres.ts";
import { testSecrets } from "./store.ts";

/** Options of {@linkcode twoQueueNodes}. */
export interface TwoNodesOptions {
  /** The database's name in the cluster. */
  database: string;
  /** Hosted domains of the account `cust`. */
  domains: readonly string[];
  clock?: Clock;
  /** Pool size of node a and of node b. */
  poolSizes?: readonly [number, number];
  leaseTtlMs?: number;
}

/** A running pair; `close` stops both nodes and the cluster. */
export interface TwoNodes {
  cluster: TestPostgres;
  a: PostgresQueue;
  b: PostgresQueue;
  close(): Promise<void>;
}

/** Starts a cluster and opens nodes "a" and "b" on a new database. */
export async function twoQueueNodes(options: TwoNodesOptions): Promise<TwoNodes> {
  const cluster = await startPostgres();
  const opened: PostgresQueue[] = [];
  // Closes whatever was opened, each step even when an earlier one fails, and always stops the cluster.
  const close = async () => {
    try {
      for (const queue of opened.splice(0)) await queue.close().catch(() => {});
    } finally {
      await cluster.stop();
    }
  };
  try {
    const url = await cluster.createDatabase(options.database);
    const [sizeA, sizeB] = options.poolSizes ?? [3, 3];
    const common = {
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs }),
    };
    const a = await PostgresQueue.open(url, { ...common, node: "a", poolSize: sizeA });
    opened.push(a);
    const b = await PostgresQueue.open(url, { ...common, node: "b", poolSize: sizeB });
    opened.push(b);
    await a.addAccount("cust", testSecrets("pw"));
    for (const domain of options.domains) await a.addDomain(domain, "cust");
    return { cluster, a, b, close };
  } catch (error) {
    await close();
    throw error;
  }
}
