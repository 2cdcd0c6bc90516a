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
