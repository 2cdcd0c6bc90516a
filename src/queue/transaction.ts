/**
 * Transaction control for the queue's one SQLite connection. node:sqlite is synchronous, so a
 * transaction run through here cannot interleave with anything else on the event loop.
 *
 * @module
 */
import type { DatabaseSync } from "node:sqlite";

/**
 * Runs `fn` in one IMMEDIATE transaction (commit = fsync with synchronous=FULL): the write lock is
 * taken at BEGIN, so a concurrent writer (the CLI) waits at the start rather than failing halfway.
 * Rolls back and rethrows when `fn` throws. Not re-entrant: a transaction inside another fails at
 * BEGIN (use `savepoint` inside one).
 */
export function immediateTransaction<T>(raw: DatabaseSync, fn: () => T): T {
  raw.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    raw.exec("COMMIT");
    return result;
  } catch (error) {
    if (raw.isTransaction) raw.exec("ROLLBACK");
    throw error;
  }
}

/**
 * Runs `fn` inside a SAVEPOINT of the caller's transaction: when it throws, what it wrote is rolled
 * back alone and the error is rethrown; the caller's transaction goes on.
 */
export function savepoint<T>(raw: DatabaseSync, name: string, fn: () => T): T {
  raw.exec(`SAVEPOINT ${name}`);
  try {
    const result = fn();
    raw.exec(`RELEASE ${name}`);
    return result;
  } catch (error) {
    raw.exec(`ROLLBACK TO ${name}`);
    raw.exec(`RELEASE ${name}`);
    throw error;
  }
}
