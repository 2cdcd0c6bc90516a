/**
 * Customer accounts: who may AUTH on the ODMR port. Drizzle's query builder throughout: these run on
 * operator commands and once per AUTH, never per message, so the builder's re-prepare costs nothing
 * that matters and the typed rows are worth more.
 *
 * @module
 */
import { asc, count, eq, sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import type { QueueDb } from "./db.ts";
import { accounts, domains } from "./schema.ts";
import { StoreError } from "./store_error.ts";

/** An account as the rest of the program sees it. */
export interface Account {
  id: number;
  username: string;
  cramMd5Secret: string;
  passwordHash: string;
  disabled: boolean;
  createdAt: number;
}

/** The derived CRAM-MD5 context and scrypt hash of an account's secret. */
export interface AccountSecrets {
  cramMd5Secret: string;
  passwordHash: string;
}

/** The accounts table. */
export class AccountsStore {
  readonly #db: QueueDb;
  readonly #clock: Clock;

  constructor(db: QueueDb, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Creates an account; `secrets` are the derived CRAM-MD5 context and scrypt hash. */
  addAccount(username: string, secrets: AccountSecrets): Account {
    if (!/^[\x21-\x7e]{1,64}$/.test(username)) {
      throw new StoreError("Username must be 1-64 printable ASCII characters without spaces");
    }
    if (this.findAccount(username)) throw new StoreError(`Account ${username} already exists`, "conflict");
    // Usernames are matched exactly everywhere (AUTH, throttle, CLI); two that differ only in case
    // would be one typo away from each other, so they are refused.
    const similar = this.#db.select({ username: accounts.username }).from(accounts)
      .where(sql`lower(${accounts.username}) = lower(${username})`).get();
    if (similar) {
      throw new StoreError(
        `Account ${similar.username} already exists (names differ only in case)`,
        "conflict",
      );
    }
    return this.#db.insert(accounts).values({ username, ...secrets, createdAt: this.#clock.now() })
      .returning().get();
  }

  /** The account named `username`, or null. */
  findAccount(username: string): Account | null {
    return this.#db.select().from(accounts).where(eq(accounts.username, username)).get() ?? null;
  }

  /** Every account, by name. */
  listAccounts(): (Account & { domains: number })[] {
    const rows = this.#db.select({
      account: accounts,
      domains: sql<number>`(SELECT COUNT(*) FROM domains WHERE domains.account_id = ${accounts.id})`,
    }).from(accounts).orderBy(asc(accounts.username)).all();
    return rows.map((r) => ({ ...r.account, domains: r.domains }));
  }

  /** Replaces an account's secrets. */
  setAccountSecrets(username: string, secrets: AccountSecrets): void {
    const result = this.#db.update(accounts).set(secrets).where(eq(accounts.username, username)).run();
    if (Number(result.changes) === 0) throw new StoreError(`No account ${username}`, "not-found");
  }

  /** Disables or enables an account (a disabled account cannot AUTH). */
  setAccountDisabled(username: string, disabled: boolean): void {
    const result = this.#db.update(accounts).set({ disabled }).where(eq(accounts.username, username)).run();
    if (Number(result.changes) === 0) throw new StoreError(`No account ${username}`, "not-found");
  }

  /** Removes an account that owns no domains. */
  removeAccount(username: string): void {
    const account = this.findAccount(username);
    if (!account) throw new StoreError(`No account ${username}`, "not-found");
    const owned =
      this.#db.select({ n: count() }).from(domains).where(eq(domains.accountId, account.id)).get()!.n;
    if (owned > 0) {
      throw new StoreError(
        `Account ${username} still owns ${owned} domain(s): remove them first`,
        "conflict",
      );
    }
    this.#db.delete(accounts).where(eq(accounts.id, account.id)).run();
  }
}
