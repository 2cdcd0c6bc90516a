/**
 * How a poll of one provider ends, and the exit codes of a one-shot `pull` (documented in the
 * README's customer section).
 *
 * Our codes are not fetchmail's. fetchmail 6.4 exits 0 when the provider answers 453 ("no mail",
 * RFC 2645 5.2.1: it maps that to success), 128 when the secret is rejected and 4 on a protocol error
 * such as a refused ATRN; `pull` tells "no mail" (1) apart from a session that ran (0) and gives
 * each failure its own small number.
 */

/** How one poll of one provider ended. */
export type PollOutcome =
  | "turned"
  | "no-mail"
  | "auth-failed"
  | "refused"
  | "local-unreachable"
  | "connect-failed"
  | "interrupted";

/** Exit code of a one-shot poll per outcome (2 is taken by bad arguments, as for every command). */
export const EXIT_CODES: Readonly<Record<PollOutcome, number>> = {
  /** The connection turned and the session with the local mail server ran to its end. */
  turned: 0,
  /** RFC 2645 5.2.1: 453, no mail waiting. */
  "no-mail": 1,
  /** RFC 4954 6: 535 to the CRAM-MD5 response (or 530 to ATRN). */
  "auth-failed": 3,
  /** The provider refused or cannot do what we need: ATRN 450/451, no ATRN, no CRAM-MD5, ... */
  refused: 4,
  /** The local mail server could not be reached after the turn; the provider kept every message. */
  "local-unreachable": 5,
  /** TCP, TLS (certificate) or the connection failed or timed out. */
  "connect-failed": 6,
  /** SIGTERM/SIGINT stopped the poll; unconfirmed mail stays queued at the provider. */
  interrupted: 7,
};

/** What one poll of one provider did, for its log line and the exit code. */
export interface PollResult {
  /** The provider, `host:port`. */
  provider: string;
  outcome: PollOutcome;
  /** One line for people: what happened, with the provider's reply where there is one. */
  message: string;
  /** Messages the local mail server accepted (2xx to the end of their data). */
  messages: number;
  /** Messages the local mail server refused (4xx/5xx to the end of their data). */
  refused: number;
  /** False when the counting lost track of the session (the byte counts stay exact). */
  counted: boolean;
  /** Bytes from the provider to the local mail server, and back. */
  bytesToLocal: number;
  bytesToProvider: number;
  durationMs: number;
  /** The session was held open for push delivery (XWATCH); the next one can start at once. */
  watched?: boolean;
}

/** A poll that did its job: mail collected, or none waiting. */
export function isSuccess(outcome: PollOutcome): boolean {
  return outcome === "turned" || outcome === "no-mail";
}

/**
 * The exit code of a one-shot run over several providers: the first failure's code in provider
 * order, else 0 when any session ran, else 1 (no mail anywhere).
 */
export function oneShotExitCode(results: readonly PollResult[]): number {
  const failed = results.find((r) => !isSuccess(r.outcome));
  if (failed) return EXIT_CODES[failed.outcome];
  return results.some((r) => r.outcome === "turned") ? EXIT_CODES.turned : EXIT_CODES["no-mail"];
}
