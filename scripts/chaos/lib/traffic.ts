/**
 * Concurrent intake clients: `workers` loops, each opening a connection from its own loopback
 * address and sending one to `perSession` messages in it, until stopped. Every transaction's result
 * goes to `onResult`, so the suite decides what counts as acknowledged, what is retried and what is a
 * failure. Used by the crash, fault and load suites.
 */
import type { Rng } from "./rng.ts";
import type { Made } from "./messages.ts";
import { type SendResult, SmtpSession, sourceAddress, type Target } from "./smtp.ts";
import { sleep } from "./relay.ts";

/** Pause after a lost connection before trying again (the relay may be restarting). */
const BACKOFF_MS = 30;

/** Options of a traffic run. */
export interface TrafficOptions {
  port: number;
  workers: number;
  /** Messages per connection, at most (at least one). */
  perSession: number;
  /** The next message to send, or null when there is nothing (the worker waits a little). */
  next: () => Made | null;
  onResult: (made: Made, result: SendResult) => void;
  rng: Rng;
  /** Source address of worker `w` (default: one 127.0.x.y address per worker). */
  source?: (w: number) => string;
  timeoutMs?: number;
}

/** A running set of intake clients. */
export class Traffic {
  readonly #o: TrafficOptions;
  #stopped = false;
  #loops: Promise<void>[] = [];
  sessions = 0;

  constructor(options: TrafficOptions) {
    this.#o = options;
  }

  start(): this {
    for (let w = 0; w < this.#o.workers; w++) this.#loops.push(this.#loop(w));
    return this;
  }

  /** Stops after each worker's current transaction (or its failure) and waits for all. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }

  async #loop(w: number): Promise<void> {
    const o = this.#o;
    const target: Target = { port: o.port, localAddress: (o.source ?? sourceAddress)(w) };
    while (!this.#stopped) {
      const session = await SmtpSession.open(target, `w${w}.chaos.test`, o.timeoutMs ?? 30_000);
      if (!(session instanceof SmtpSession)) {
        await sleep(BACKOFF_MS);
        continue;
      }
      this.sessions++;
      const count = o.rng.int(1, o.perSession);
      let alive = true;
      for (let i = 0; i < count && alive && !this.#stopped; i++) {
        const made = o.next();
        if (!made) {
          await sleep(BACKOFF_MS);
          break;
        }
        const result = await session.send(made);
        o.onResult(made, result);
        alive = result.outcome !== "lost" && !(result.code === 421);
      }
      if (alive) await session.quit();
      else await sleep(BACKOFF_MS);
    }
  }
}

/** What `fill` did. */
export interface Filled {
  /** Queue id -> message, for every 250. */
  acked: Map<number, import("./messages.ts").Sent>;
  /** Transactions that ended otherwise, with what the relay said. */
  refused: { made: Made; result: SendResult }[];
}

/**
 * Sends `count` messages made by `make(i)` over `workers` connections and waits until each has an
 * answer (a lost connection is retried; the relay is expected to stay up). Bounded by `limitMs`.
 */
export async function fill(options: {
  port: number;
  rng: Rng;
  count: number;
  make: (i: number) => Made;
  workers?: number;
  limitMs?: number;
}): Promise<Filled> {
  const filled: Filled = { acked: new Map(), refused: [] };
  const todo: Made[] = [];
  let made = 0;
  let answered = 0;
  const traffic = new Traffic({
    port: options.port,
    workers: options.workers ?? 16,
    perSession: 8,
    rng: options.rng,
    next: () => todo.shift() ?? (made < options.count ? options.make(made++) : null),
    onResult: (m, r) => {
      if (r.outcome === "accepted" && r.queueId !== null) {
        filled.acked.set(r.queueId, m.record);
        answered++;
      } else if (r.outcome === "lost") todo.push(m);
      else {
        filled.refused.push({ made: m, result: r });
        answered++;
      }
    },
  }).start();
  const deadline = Date.now() + (options.limitMs ?? 120_000);
  while (answered < options.count && Date.now() < deadline) await sleep(20);
  await traffic.stop();
  if (answered < options.count) {
    throw new Error(`fill: ${answered} of ${options.count} messages answered in time`);
  }
  return filled;
}

/**
 * `fill`, then every recipient of every acknowledged message goes into the set `bucket` picks for it
 * (as `"<Message-ID> <address>"`); a refused message fails the report. Returns how many were
 * acknowledged.
 */
export async function fillRecipients(
  options: Parameters<typeof fill>[0],
  report: { fail(what: string): void; add(key: string, n?: number): void },
  bucket: (rcpt: string) => Set<string>,
): Promise<number> {
  const filled = await fill(options);
  for (const f of filled.refused) {
    report.fail(`intake refused ${f.made.record.messageId}: ${f.result.code} ${f.result.text}`);
  }
  for (const sent of filled.acked.values()) {
    for (const r of sent.rcpts) bucket(r).add(`${sent.messageId} ${r}`);
  }
  report.add("acknowledged", filled.acked.size);
  return filled.acked.size;
}
