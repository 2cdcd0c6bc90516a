/**
 * Why a delivery session over a handed connection stopped early, as one typed value.
 *
 * Every failure that ends the reversed session (connection lost, a timeout, a protocol violation by the
 * customer, a refusing greeting, our own session limit) becomes a {@linkcode DeliveryAbort}. Its `code`,
 * `enhanced` and `text` are what gets recorded on each unconfirmed recipient, which stays queued
 * (docs/design.md#delivery: at-least-once; RFC 5321 6.1: a duplicate is acceptable, a loss is not).
 *
 * @module
 */

import {
  BareLineEndingError,
  ConnectionClosedError,
  LineFloodError,
  LineTooLongError,
  ReadTimeoutError,
  WriteTimeoutError,
} from "../net/errors.ts";
import { ReplyParseError } from "../smtp/reply.ts";
import { Code451LocalError } from "../smtp/codes.ts";

/** How a session ended early. */
export type AbortKind =
  /** The customer closed the connection or it failed. */
  | "lost"
  /** A per-command timeout (RFC 5321 4.5.3.2) or the whole-session limit expired. */
  | "timeout"
  /** The customer broke the protocol (malformed or oversized reply, too many reply lines, bare LF). */
  | "protocol"
  /** The customer refused the session (554 or 421 greeting, EHLO and HELO refused, 421 at any point). */
  | "refused"
  /** The caller cancelled the session (shutdown). */
  | "cancelled"
  /** A local error (the stored body could not be read mid-DATA, or a bug). */
  | "local";

/** A reason to end the session; unconfirmed recipients are deferred with its code and text. */
export class DeliveryAbort extends Error {
  /** What happened. */
  readonly kind: AbortKind;
  /** Reply code recorded on unconfirmed recipients (the customer's own 421 or 554, else 451). */
  readonly code: number;
  /** Text recorded on unconfirmed recipients; starts with an RFC 3463 enhanced status code. */
  readonly text: string;

  /** Creates the abort; `text` should start with an enhanced status code such as `4.4.2`. */
  constructor(kind: AbortKind, text: string, options: { code?: number; cause?: unknown } = {}) {
    super(text, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DeliveryAbort";
    this.kind = kind;
    // Recipients left unconfirmed without a reply from the customer (connection lost, timeout before the
    // reply to the final dot) are deferred as 451 (docs/protocol.md#reply-mapping; RFC 5321 4.2.3).
    this.code = options.code ?? Code451LocalError;
    this.text = text;
  }
}

/** The body source failed while DATA was in progress (the connection must be dropped, never finished). */
export class BodyReadError extends Error {
  /** Wraps the store's error. */
  constructor(cause: unknown) {
    super(
      `Reading the stored message body failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      {
        cause,
      },
    );
    this.name = "BodyReadError";
  }
}

/**
 * Maps an I/O or parse error met while waiting for `what` to a {@linkcode DeliveryAbort}. Errors that are
 * not I/O outcomes (bugs) become kind `local`, so the session still ends with every unconfirmed recipient
 * queued.
 */
export function toAbort(err: unknown, what: string): DeliveryAbort {
  if (err instanceof DeliveryAbort) return err;
  if (err instanceof ReadTimeoutError) {
    // RFC 5321 4.5.3.2: the client gives up after the per-command timeout; 4.4.2 "bad connection".
    return new DeliveryAbort("timeout", `4.4.2 No reply to ${what} within ${err.timeoutMs} ms`, {
      cause: err,
    });
  }
  if (err instanceof WriteTimeoutError) {
    return new DeliveryAbort("timeout", `4.4.2 Sending ${what} timed out after ${err.timeoutMs} ms`, {
      cause: err,
    });
  }
  if (err instanceof ConnectionClosedError) {
    return new DeliveryAbort("lost", `4.4.2 Connection lost during ${what}`, { cause: err });
  }
  if (
    err instanceof ReplyParseError || err instanceof LineTooLongError || err instanceof LineFloodError ||
    err instanceof BareLineEndingError
  ) {
    // RFC 5321 4.2 and 4.5.3.1.5: a reply line is at most 512 octets; anything else is a broken peer.
    return new DeliveryAbort("protocol", `4.5.0 Invalid reply to ${what}: ${err.message}`, { cause: err });
  }
  if (err instanceof BodyReadError) {
    return new DeliveryAbort("local", `4.3.0 ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new DeliveryAbort("local", `4.3.0 Local error during ${what}: ${message}`, { cause: err });
}
