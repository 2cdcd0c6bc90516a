/**
 * New mail across nodes: every enqueue transaction on the shared PostgreSQL queue sends
 * `pg_notify(NEW_MAIL_CHANNEL, <domains>)` (src/queue/pg/pg_enqueue.ts), which PostgreSQL delivers to
 * every listening session only when that transaction commits, and never for one rolled back. Each node
 * LISTENs on one dedicated connection and wakes its watching sessions (`pull --watch`) for those
 * domains, so mail accepted on node A is pushed by a session held open on node B without polling.
 *
 * A NOTIFY is only a wake-up hint; the queue is the truth. Notifications sent while a listener is
 * disconnected are lost (docs/postgres_driver.md: the `pg` LISTEN connection dies with a server
 * restart and must be reconnected by us), so after every reconnect the listener reports "all": every
 * watcher re-checks the queue once.
 *
 * - The listener is a `pg.Client` of its own, not a pooled one: LISTEN belongs to one session, and a
 *   pooled connection would be handed to other queries and recycled.
 * - It has an 'error' listener from the start: a client held outside the pool without one kills the
 *   Deno process when the server goes away (docs/postgres_driver.md).
 * - Reconnects back off from `minBackoffMs` doubling to `maxBackoffMs`, and start again from the
 *   minimum after a connection that reached LISTEN. `close()` stops the loop, also mid-wait.
 * - TCP keepalive is on, so a peer that vanished without closing the connection is noticed eventually.
 *
 * Payloads: `{"node": <sender>, "domains": [...]}` with domain keys (A-labels, "" for the relay's
 * postmaster mailbox), each at most `MAX_PAYLOAD_BYTES`; more domains than fit go into several
 * notifications. A bare JSON array (no sender named) is read too. `"*"` (or anything this module
 * cannot read) means every domain. A node ignores its own notifications: it woke its watchers when it
 * committed (src/relay.ts), and hearing them again would make each watcher look at the queue twice.
 *
 * @module
 */
import pg from "pg";
import { clearTimeout, setTimeout } from "node:timers";

/** The channel every node notifies and listens on (an SQL identifier: lower case, no quoting needed). */
export const NEW_MAIL_CHANNEL = "odmr_new_mail";

/** The payload that wakes every domain. */
export const WAKE_ALL_PAYLOAD = "*";

/**
 * Most bytes of one payload: PostgreSQL refuses 8000 and more ("payload string too long"); some room is
 * left below that.
 */
export const MAX_PAYLOAD_BYTES = 7900;

const encoder = new TextEncoder();

/** Room a node name may take in a payload; a longer one is left out (its node then hears itself). */
const MAX_NODE_BYTES = 512;

/**
 * The payloads that announce `domains` (duplicates removed) from `node`, each within
 * `MAX_PAYLOAD_BYTES`. A single domain that would not fit on its own (impossible for a DNS name,
 * 253 octets) turns the whole announcement into one wake-all.
 */
export function newMailPayloads(domains: Iterable<string>, node = ""): string[] {
  const sender = node !== "" && encoder.encode(JSON.stringify(node)).length <= MAX_NODE_BYTES ? node : "";
  const wrap = (batch: string[]) =>
    sender === "" ? JSON.stringify(batch) : JSON.stringify({ node: sender, domains: batch });
  const empty = encoder.encode(wrap([])).length;
  const payloads: string[] = [];
  let batch: string[] = [];
  let bytes = empty;
  for (const domain of new Set(domains)) {
    const size = encoder.encode(JSON.stringify(domain)).length;
    if (size + empty > MAX_PAYLOAD_BYTES) return [WAKE_ALL_PAYLOAD];
    const added = size + (batch.length > 0 ? 1 : 0); // the comma
    if (bytes + added > MAX_PAYLOAD_BYTES) {
      payloads.push(wrap(batch));
      batch = [];
      bytes = empty;
    }
    bytes += size + (batch.length > 0 ? 1 : 0);
    batch.push(domain);
  }
  if (batch.length > 0) payloads.push(wrap(batch));
  return payloads;
}

/** One notification read: who sent it (null when not named) and its domains, or "all". */
export interface NewMailNotice {
  node: string | null;
  domains: string[] | "all";
}

const isDomainList = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((d) => typeof d === "string");

/** Reads one payload; the wake-all payload and anything unreadable mean every domain. */
export function parseNewMailPayload(payload: string | undefined): NewMailNotice {
  const all: NewMailNotice = { node: null, domains: "all" };
  if (payload === undefined || payload === WAKE_ALL_PAYLOAD) return all;
  try {
    const value: unknown = JSON.parse(payload);
    if (isDomainList(value)) return { node: null, domains: value };
    if (typeof value === "object" && value !== null) {
      const { node, domains } = value as Record<string, unknown>;
      if (typeof node === "string" && isDomainList(domains)) return { node, domains };
    }
  } catch {
    // Another version's format: waking everyone is always safe.
  }
  return all;
}

/** What the listener tells its owner. */
export type NewMailCallback = (domains: string[] | "all") => void;

/** Options of {@linkcode PgNewMailListener}. */
export interface PgNewMailListenerOptions {
  /** The database URL (the same as the pool's). */
  url: string;
  /** PEM CA for verify-full TLS, as the pool gets it (src/queue/pg/database.ts). */
  ca?: string | undefined;
  /** How long one connection attempt may take, ms. */
  connectTimeoutMs?: number;
  /** First wait before a reconnect, ms (default 100). */
  minBackoffMs?: number;
  /** Longest wait between reconnects, ms (default 5000). */
  maxBackoffMs?: number;
  /** Told when the connection is lost or an attempt fails (the loop carries on). */
  onError?: (error: Error) => void;
  /** Told each time LISTEN is in place (after the first connect and after every reconnect). */
  onListening?: () => void;
  /** This node's name: its own notifications are not passed on (it woke its watchers itself). */
  node?: string;
}

/** One dedicated LISTEN connection, reconnected until `close()`. */
export class PgNewMailListener {
  readonly #options: PgNewMailListenerOptions;
  readonly #onMail: NewMailCallback;
  #closed = false;
  #client: pg.Client | undefined;
  #listening = false;
  /** Ends the backoff wait early (close). */
  #wakeSleep: (() => void) | undefined;
  readonly #loop: Promise<void>;

  /** Starts connecting at once; `onMail` gets the domains of every notification. */
  constructor(options: PgNewMailListenerOptions, onMail: NewMailCallback) {
    this.#options = options;
    this.#onMail = onMail;
    this.#loop = this.#run();
  }

  /** True while LISTEN is in place on a live connection. */
  get listening(): boolean {
    return this.#listening;
  }

  /** Stops listening and reconnecting; resolves once the connection is closed. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#wakeSleep?.();
    const client = this.#client;
    if (client) await client.end().catch(() => {});
    await this.#loop;
  }

  #deliver(domains: string[] | "all"): void {
    if (this.#closed) return;
    try {
      this.#onMail(domains);
    } catch (error) {
      // The callback's fault must not break the client's event handling.
      this.#options.onError?.(error as Error);
    }
  }

  async #run(): Promise<void> {
    const min = this.#options.minBackoffMs ?? 100;
    const max = this.#options.maxBackoffMs ?? 5000;
    let delay = min;
    let attempts = 0;
    while (!this.#closed) {
      attempts++;
      const client = new pg.Client({
        connectionString: this.#options.url,
        connectionTimeoutMillis: this.#options.connectTimeoutMs ?? 5000,
        keepAlive: true,
        keepAliveInitialDelayMillis: 30_000,
        ...(this.#options.ca ? { ssl: { ca: this.#options.ca, rejectUnauthorized: true } } : {}),
      });
      // Settles at the first 'error' or 'end'; the 'error' listener stays for any later error.
      const lost = new Promise<Error | undefined>((resolve) => {
        client.on("error", (error) => resolve(error));
        client.on("end", () => resolve(undefined));
      });
      client.on("notification", (message) => {
        if (message.channel !== NEW_MAIL_CHANNEL) return;
        const notice = parseNewMailPayload(message.payload);
        if (notice.node === null || notice.node !== this.#options.node) this.#deliver(notice.domains);
      });
      this.#client = client;
      try {
        await client.connect();
        await client.query(`LISTEN ${NEW_MAIL_CHANNEL}`);
        if (!this.#closed) {
          this.#listening = true;
          delay = min;
          this.#options.onListening?.();
          // Anything committed before this LISTEN was not heard (only a first attempt that
          // succeeded at once has no gap: nobody could be watching through this node yet).
          if (attempts > 1) this.#deliver("all");
          const error = await lost;
          this.#listening = false;
          if (!this.#closed) {
            this.#options.onError?.(error ?? new Error("new-mail listener connection ended"));
          }
        }
      } catch (error) {
        if (!this.#closed) this.#options.onError?.(error as Error);
      } finally {
        this.#listening = false;
        this.#client = undefined;
        await client.end().catch(() => {});
      }
      if (this.#closed) break;
      await this.#sleep(delay);
      delay = Math.min(delay * 2, max);
    }
  }

  /** Waits `ms`, or less when `close()` is called meanwhile. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      this.#wakeSleep = done;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    }).finally(() => {
      this.#wakeSleep = undefined;
    });
  }
}
