/**
 * Polling a list of providers (RFC 2645 gives a customer no way to be told there is mail, so it
 * asks): once each, in order (one-shot), or until stopped (daemon), each provider in its own loop on
 * its own schedule (schedule.ts), so one that is down or slow never delays the others. A customer with
 * two MX hosts lists both: mail can wait on either. The daemon writes one log line per poll.
 *
 * A poll lasts as long as its session: the bridge puts no limit on a session the provider keeps
 * alive, so a session held open for push delivery fits as one long poll, due again when it ends.
 */
import type { HostPort } from "../config/fields.ts";
import { formatHostPort } from "../config/pull_fields.ts";
import { formatDuration } from "../config/units.ts";
import type { Logger } from "../log/logger.ts";
import { isSuccess, type PollResult } from "./outcome.ts";
import { nextWaitMs, type PollSchedule, sleep } from "./schedule.ts";
import type { GracefulStop } from "./stop.ts";

/** Shortest wait before a new watching session after one ended normally (up to three times it). */
export const WATCH_RECONNECT_MS = 1000;

/** Polls one provider; `stop` and `abandon` come from the {@link GracefulStop}. */
export type PollProvider = (
  provider: HostPort,
  signals: { stop: AbortSignal; abandon: AbortSignal },
) => Promise<PollResult>;

/** What both loops need. */
export interface PollLoopOptions {
  providers: readonly HostPort[];
  poll: PollProvider;
  stop: GracefulStop;
}

/** Polls each provider once, in order, until a stop; returns the results so far. */
export async function pollEachOnce(options: PollLoopOptions): Promise<PollResult[]> {
  const results: PollResult[] = [];
  for (const provider of options.providers) {
    if (options.stop.stopping.aborted) break;
    const result = await options.poll(provider, signalsOf(options.stop));
    results.push(result);
    if (result.outcome === "interrupted") break;
  }
  return results;
}

/** Options of {@link runDaemon}. */
export interface DaemonOptions extends PollLoopOptions {
  schedule: PollSchedule;
  logger: Logger;
  /** [0, 1) for the jitter (tests pass their own). */
  random?: () => number;
  /** Called after each poll, after its log line (tests watch progress here). */
  onPoll?: (result: PollResult) => void;
}

/**
 * Polls every provider on its own schedule, concurrently, until `stop`; a poll in progress ends as
 * stop.ts says. One loop per provider: a provider that hangs, or holds a session open for push
 * delivery, never delays the others.
 */
export async function runDaemon(options: DaemonOptions): Promise<void> {
  const { providers, schedule, stop, logger } = options;
  const random = options.random ?? Math.random;
  logger.info("pull daemon started", {
    providers: providers.map(formatHostPort).join(","),
    every: formatDuration(schedule.everyMs),
  });
  await Promise.all(providers.map(async (provider) => {
    let failures = 0;
    while (!stop.stopping.aborted) {
      const result = await options.poll(provider, signalsOf(stop));
      failures = isSuccess(result.outcome) ? 0 : failures + 1;
      // A watch that ended well (its time was up, or the provider restarts) reconnects at once,
      // spread over a few seconds so watchers of a restarted relay do not all come back together.
      const wait = result.watched && isSuccess(result.outcome)
        ? WATCH_RECONNECT_MS * (1 + 2 * random())
        : nextWaitMs(schedule, failures, random);
      logPoll(logger, result, result.outcome === "interrupted" ? null : wait);
      options.onPoll?.(result);
      if (result.outcome === "interrupted") break;
      await sleep(wait, stop.stopping);
    }
  }));
  logger.info("pull daemon stopped");
}

function signalsOf(stop: GracefulStop) {
  return { stop: stop.stopping, abandon: stop.abandon };
}

/** The one line per poll: outcome, messages, bytes, duration, and when the next poll is. */
export function logPoll(logger: Logger, result: PollResult, nextWaitMs: number | null): void {
  logger.log(isSuccess(result.outcome) ? "info" : "warn", "poll", {
    provider: result.provider,
    outcome: result.outcome,
    messages: result.messages,
    ...(result.refused ? { refused: result.refused } : {}),
    ...(result.counted ? {} : { counted: false }),
    bytes: result.bytesToLocal,
    bytesToProvider: result.bytesToProvider,
    durationMs: result.durationMs,
    ...(nextWaitMs === null ? {} : { nextIn: `${Math.round(nextWaitMs / 1000)}s` }),
    ...(result.outcome === "turned" ? {} : { detail: result.message }),
  });
}
