/**
 * Customer accounts on the shared PostgreSQL queue: the same rules, messages and return shapes as the
 * SQLite module (src/queue/accounts_store.ts). What changes is that two nodes may run an operator
 * command at once, so the checks that SQLite makes by reading before writing are made race-free here:
 *
 * - Creating an account takes one advisory transaction lock, so two nodes cannot both create names
 *   that differ only in case (no unique index can say "unique ignoring case" for the old schema).
 * - Removing an account locks its row `FOR UPDATE`: a concurrent `addDomain` (whose foreign key, and
 *   whose own `FOR KEY SHARE`, conflict with that lock) either commits first, and is counted, or waits
 *   and then finds no account.
 *
 * @module
 */
import type { Clock } from "../../clock.ts";
import type { Account, AccountSecrets } from "../accounts_store.ts";
import { StoreError } from "../store_error.ts";
import { type PostgresDatabase, runNamed } from "./database.ts";

/** SQLSTATE of a unique violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * The advisory lock (two-int form) that serialises account creation: "odmr", "acct". Creation is an
 * operator command, so one lock for all names costs nothing.
 */
const CREATE_ACCOUNT_LOCK = [0x6f646d72, 0x61636374] as const;

/** The columns of an `Account`, in its field names. */
const ACCOUNT_COLUMNS = 'id, username, cram_md5_secret AS "cramMd5Secret", ' +
  'password_hash AS "passwordHash", disabled, created_at AS "createdAt"';

const STATEMENTS = {
  find: {
    name: "accounts_find",
    text: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE username = $1`,
  },
  lockCreate: {
    name: "accounts_lock_create",
    text: "SELECT pg_advisory_xact_lock($1::int, $2::int)",
  },
  sameIgnoringCase: {
    name: "accounts_same_ignoring_case",
    // Usernames are printable ASCII, for which lower() is the same in every collation and in SQLite.
    // The exact match first, so its message wins over the "differ only in case" one.
    text: "SELECT username FROM accounts WHERE lower(username) = lower($1) " +
      "ORDER BY (username = $1) DESC LIMIT 1",
  },
  insert: {
    name: "accounts_insert",
    text: "INSERT INTO accounts (username, cram_md5_secret, password_hash, created_at) " +
      `VALUES ($1, $2, $3, $4) RETURNING ${ACCOUNT_COLUMNS}`,
  },
  list: {
    name: "accounts_list",
    // COLLATE "C": byte order, as SQLite's BINARY collation sorts, whatever the database's locale.
    text: `SELECT ${ACCOUNT_COLUMNS}, ` +
      "(SELECT COUNT(*) FROM domains WHERE domains.account_id = accounts.id) AS domains " +
      'FROM accounts ORDER BY username COLLATE "C"',
  },
  setSecrets: {
    name: "accounts_set_secrets",
    text: "UPDATE accounts SET cram_md5_secret = $2, password_hash = $3 WHERE username = $1",
  },
  setDisabled: {
    name: "accounts_set_disabled",
    text: "UPDATE accounts SET disabled = $2 WHERE username = $1",
  },
  lockAccount: {
    name: "accounts_lock",
    text: "SELECT id FROM accounts WHERE username = $1 FOR UPDATE",
  },
  countDomains: {
    name: "accounts_count_domains",
    text: "SELECT COUNT(*) AS n FROM domains WHERE account_id = $1",
  },
  delete: {
    name: "accounts_delete",
    text: "DELETE FROM accounts WHERE id = $1",
  },
} as const;

/** The accounts table on PostgreSQL. */
export class PgAccounts {
  readonly #db: PostgresDatabase;
  readonly #clock: Clock;

  constructor(db: PostgresDatabase, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Creates an account; `secrets` are the derived CRAM-MD5 context and scrypt hash. */
  async addAccount(username: string, secrets: AccountSecrets): Promise<Account> {
    if (!/^[\x21-\x7e]{1,64}$/.test(username)) {
      throw new StoreError("Username must be 1-64 printable ASCII characters without spaces");
    }
    try {
      return await this.#db.transaction(async (client) => {
        await runNamed(client, STATEMENTS.lockCreate, [...CREATE_ACCOUNT_LOCK]);
        const same = (await runNamed<{ username: string }>(client, STATEMENTS.sameIgnoringCase, [username]))
          .rows[0];
        if (same?.username === username) {
          throw new StoreError(`Account ${username} already exists`, "conflict");
        }
        // Usernames are matched exactly everywhere (AUTH, throttle, CLI); two that differ only in case
        // would be one typo away from each other, so they are refused.
        if (same) {
          throw new StoreError(
            `Account ${same.username} already exists (names differ only in case)`,
            "conflict",
          );
        }
        const values = [username, secrets.cramMd5Secret, secrets.passwordHash, this.#clock.now()];
        return (await runNamed<Account>(client, STATEMENTS.insert, values)).rows[0]!;
      });
    } catch (error) {
      // Only reachable when something inserted without taking the lock; the same answer either way.
      if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
        throw new StoreError(`Account ${username} already exists`, "conflict");
      }
      throw error;
    }
  }

  /** The account named `username`, or null. */
  async findAccount(username: string): Promise<Account | null> {
    return (await runNamed<Account>(this.#db.pool, STATEMENTS.find, [username])).rows[0] ?? null;
  }

  /** Every account, by name. */
  async listAccounts(): Promise<(Account & { domains: number })[]> {
    return (await runNamed<Account & { domains: number }>(this.#db.pool, STATEMENTS.list, [])).rows;
  }

  /** Replaces an account's secrets. */
  async setAccountSecrets(username: string, secrets: AccountSecrets): Promise<void> {
    const values = [username, secrets.cramMd5Secret, secrets.passwordHash];
    const result = await runNamed(this.#db.pool, STATEMENTS.setSecrets, values);
    if (result.rowCount === 0) throw new StoreError(`No account ${username}`, "not-found");
  }

  /** Disables or enables an account (a disabled account cannot AUTH). */
  async setAccountDisabled(username: string, disabled: boolean): Promise<void> {
    const result = await runNamed(this.#db.pool, STATEMENTS.setDisabled, [username, disabled]);
    if (result.rowCount === 0) throw new StoreError(`No account ${username}`, "not-found");
  }

  /** Removes an account that owns no domains. */
  async removeAccount(username: string): Promise<void> {
    await this.#db.transaction(async (client) => {
      const account = (await runNamed<{ id: number }>(client, STATEMENTS.lockAccount, [username])).rows[0];
      if (!account) throw new StoreError(`No account ${username}`, "not-found");
      const owned = (await runNamed<{ n: number }>(client, STATEMENTS.countDomains, [account.id])).rows[0]!.n;
      if (owned > 0) {
        throw new StoreError(
          `Account ${username} still owns ${owned} domain(s): remove them first`,
          "conflict",
        );
      }
      await runNamed(client, STATEMENTS.delete, [account.id]);
    });
  }
}
