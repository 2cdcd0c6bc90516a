/**
 * One poll of one provider (`odmr-relay pull`, customer mode): the session up to the turn
 * (provider_session.ts), then the bridge into the local mail server (bridge.ts), summed up as a
 * {@link PollResult}. Exit codes per outcome are in outcome.ts.
 *
 * Nothing here can lose mail: before the turn nothing is delivered, and after it the provider only
 * hears what the local server answered, so whatever was not confirmed stays queued at the provider
 * (RFC 2645 4; the relay's side: docs/design.md#delivery). That is also why stopping is safe at any moment.
 */
import type { Logger } from "../log/logger.ts";
import { bridge } from "./bridge.ts";
import type { PollResult } from "./outcome.ts";
import { openTurnedSession, type ProviderOptions } from "./provider_session.ts";

/** Options of one poll. */
export interface PullOptions extends ProviderOptions {
  /** The local SMTP server that receives the mail. */
  localHost: string;
  localPort: number;
  logger: Logger;
  /** Give up before the turn (at once) ... */
  stop?: AbortSignal;
  /** ... and cut a session that is already delivering (stop.ts: the grace between the two). */
  abandon?: AbortSignal;
}

/** Runs one poll of one provider. Never throws; the result says how it ended. */
export async function pull(options: PullOptions): Promise<PollResult> {
  const started = performance.now();
  const provider = `${options.host}:${options.port}`;
  const result = (fields: Partial<PollResult> & Pick<PollResult, "outcome" | "message">): PollResult => ({
    provider,
    messages: 0,
    refused: 0,
    counted: true,
    bytesToLocal: 0,
    bytesToProvider: 0,
    durationMs: Math.round(performance.now() - started),
    ...fields,
  });
  const session = await openTurnedSession(options, options.stop);
  if (session.kind === "ended") return result({ outcome: session.outcome, message: session.message });
  if (options.stop?.aborted) {
    // Stopped as the 250 arrived: nothing has been delivered yet, so this is the cheap moment to go.
    session.conn.destroy();
    return result({ outcome: "interrupted", message: "stopped at the turn; the provider keeps the mail" });
  }
  const local = `${options.localHost}:${options.localPort}`;
  options.logger.debug("turned; bridging to the local mail server", { provider, local });
  const bridged = await bridge(session.conn, {
    localHost: options.localHost,
    localPort: options.localPort,
    connectTimeoutMs: options.connectTimeoutMs,
    timeoutMs: options.timeoutMs,
    ...(options.abandon ? { abandon: options.abandon } : {}),
    advertiseWatch: session.watching,
  });
  const { tally } = bridged;
  if (!bridged.reached) {
    return result({
      outcome: bridged.abandoned ? "interrupted" : "local-unreachable",
      message: `cannot reach the local mail server ${local}: ${bridged.error}; the provider keeps the mail`,
    });
  }
  if (tally.lostTrack) {
    options.logger.debug("message count incomplete", { provider, reason: tally.lostTrack });
  }
  // The provider ends a complete session with QUIT (RFC 5321 4.1.1.10); without it the collection was
  // cut off (the provider died, the network failed) and more mail may be waiting: not a success.
  const cut = !bridged.abandoned && !tally.quitSeen;
  return result({
    outcome: bridged.abandoned ? "interrupted" : cut ? "connect-failed" : "turned",
    message: bridged.abandoned
      ? "session cut by a stop; the provider keeps what the local server did not confirm"
      : cut
      ? "the session was cut off before the provider's QUIT; what the local server confirmed is " +
        "delivered, the rest stays queued at the provider"
      : "session ended",
    messages: tally.accepted,
    refused: tally.refused,
    counted: tally.counted,
    bytesToLocal: bridged.bytesToLocal,
    bytesToProvider: bridged.bytesToProvider,
    // Watched only if the relay really kept the session open: it sends a NOOP as soon as it watches.
    watched: session.watching && tally.noops > 0,
  });
}
