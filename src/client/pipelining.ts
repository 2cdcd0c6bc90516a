/**
 * The per-session PIPELINING decision (RFC 2920) for the reversed ODMR link, as a pure function.
 *
 * Why a heuristic: fetchmail, the main ODMR customer, relays the reversed session LINE BY LINE between
 * our socket and the customer's local MTA (docs/protocol.md#fetchmail). Measured through it, pipelining
 * halves the drain rate (about 22 to about 11 msg/s), and under TLS it can stall fetchmail's relay
 * outright. With a customer MTA that answers directly, pipelining multiplies the rate. So in `auto` mode
 * we pipeline only when the customer does not look like a line relay.
 *
 * The signal: a line relay copies each reply line with its own write, and with Nagle on its socket the
 * first line leaves at once while the rest wait for our ACK, so a multi-line reply (the greeting or the
 * EHLO reply, which always has several lines when it lists PIPELINING) reaches us in pieces: when its
 * first line is read, the continuation lines are NOT yet buffered. An MTA writes a whole reply with one
 * write, so all of it arrives together (a reply under 1 KB fits one TCP segment). The EHLO round-trip time
 * is measured and logged as context, but not used: a high latency is exactly where pipelining helps most.
 *
 * @module
 */

/** `atrnPipelining` config values. */
export type PipeliningMode = "auto" | "always" | "never";

/** What the client observed during the greeting and EHLO. */
export interface PipeliningEvidence {
  /** PIPELINING was listed in the EHLO reply (RFC 2920 3: never pipeline otherwise). */
  advertised: boolean;
  /** A multi-line greeting or EHLO reply arrived in pieces (continuation lines not yet buffered). */
  fragmentedReplies: boolean;
  /** EHLO round-trip time in milliseconds, for logs (`null` when unknown). */
  ehloRttMs: number | null;
}

/** The decision and a short reason for the log line. */
export interface PipeliningDecision {
  /** Whether transactions are sent as RFC 2920 batches. */
  pipelining: boolean;
  /** Why, in a few words. */
  reason: string;
}

/**
 * Decides whether to pipeline: `never` never; `always` whenever advertised; `auto` when advertised and
 * no multi-line reply arrived fragmented (no line relay detected).
 */
export function choosePipelining(mode: PipeliningMode, evidence: PipeliningEvidence): PipeliningDecision {
  // RFC 2920 3: "a client SMTP must not pipeline ... unless the server advertised PIPELINING".
  if (!evidence.advertised) return { pipelining: false, reason: "not advertised" };
  if (mode === "never") return { pipelining: false, reason: "disabled by configuration" };
  if (mode === "always") return { pipelining: true, reason: "forced by configuration" };
  if (evidence.fragmentedReplies) {
    return { pipelining: false, reason: "multi-line reply arrived line by line (line-relaying customer)" };
  }
  return { pipelining: true, reason: "customer answers whole replies at once" };
}

/**
 * The Nagle signature of a pipelined group: a prompt customer that writes each reply with its own write,
 * with Nagle's algorithm on its socket, sends the first reply at once and holds the others until our
 * delayed ACK (about 40 ms on Linux), then sends them together. So after the first reply there is ONE
 * wait of at least this long, and every later reply of the group is already buffered: about 40 ms per
 * message, where stop-and-wait costs one round trip per command. A customer that is merely slow to
 * answer (a recipient lookup) waits before EACH reply instead, and keeps pipelining.
 */
export const PACED_REPLY_GAP_MS = 20;
/** Consecutive pipelined groups with a paced reply before `auto` falls back to stop-and-wait. */
export const PACED_GROUPS_BEFORE_FALLBACK = 3;

/**
 * Watches the replies to each pipelined group (RFC 2920 3.1: MAIL, RCPTs, DATA) in `auto` mode and says
 * when to stop pipelining for the rest of the session: after {@linkcode PACED_GROUPS_BEFORE_FALLBACK}
 * groups in a row each had a reply paced by {@linkcode PACED_REPLY_GAP_MS} or more. Pure: it is told the
 * slowest gap of each group.
 */
export class PacedReplyDetector {
  #pacedInARow = 0;

  constructor(
    readonly gapMs: number = PACED_REPLY_GAP_MS,
    readonly groups: number = PACED_GROUPS_BEFORE_FALLBACK,
  ) {}

  /**
   * One pipelined group was read: `slowestGapMs` is the longest wait for a reply (after the first) that
   * was not yet buffered, `waits` how many replies had to be waited for.
   */
  observe(slowestGapMs: number, waits = 1): boolean {
    const paced = waits === 1 && slowestGapMs >= this.gapMs;
    this.#pacedInARow = paced ? this.#pacedInARow + 1 : 0;
    return this.#pacedInARow >= this.groups;
  }
}

/** The reason logged when {@linkcode PacedReplyDetector} ends pipelining. */
export const PACED_FALLBACK_REASON =
  "replies to pipelined commands arrive one write at a time (Nagle on the " +
  "customer's side): stop-and-wait is faster";
