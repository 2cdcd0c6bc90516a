/**
 * Typed errors raised by the networking layer. Each one tells the session loop what to put on the
 * wire (if anything) and whether the connection can continue; none of them carries peer-visible text.
 *
 * @module
 */

/** Base class of every error raised by `src/net/`, so callers can tell I/O outcomes from bugs. */
export class NetError extends Error {
  /** Creates a networking error with a message and an optional cause. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NetError";
  }
}

/**
 * A bare LF or bare CR was received where only CRLF may end a line (RFC 5321 2.3.8, 4.1.1.4).
 * The connection is still usable, but the project's policy (docs/protocol.md#bare-line-endings) is
 * to answer `500 5.5.2 Error: bare <LF> received` and close. The bytes up to and including the offending
 * character have been consumed.
 */
export class BareLineEndingError extends NetError {
  /** Which character was found alone: `"LF"` or `"CR"`. */
  readonly character: "LF" | "CR";
  /** Creates the error for a bare `LF` or `CR`. */
  constructor(character: "LF" | "CR") {
    super(`Bare ${character} received in a line; only CRLF ends a line`);
    this.name = "BareLineEndingError";
    this.character = character;
  }
}

/**
 * A line exceeded `maxLength` (RFC 5321 4.5.3.1.4: 512 octets for a command line, 4.5.3.1.6: 1000 for a
 * text line, RFC 4954 4: 12288 during AUTH). The whole line up to and including its CRLF has been
 * discarded, so the session can answer `500 5.5.2 Line too long` and continue reading commands.
 */
export class LineTooLongError extends NetError {
  /** Length in octets of the discarded line, including its CRLF. */
  readonly length: number;
  /** The limit that was exceeded, in octets including CRLF. */
  readonly maxLength: number;
  /** Creates the error for a discarded line of `length` octets. */
  constructor(length: number, maxLength: number) {
    super(`Line of ${length} octets exceeds the limit of ${maxLength} octets`);
    this.name = "LineTooLongError";
    this.length = length;
    this.maxLength = maxLength;
  }
}

/**
 * No CRLF arrived within the hard flood limit (docs/protocol.md#line-limits: a flood of bytes with no CRLF).
 * The bytes were discarded, never buffered; the caller should send `421` and close.
 */
export class LineFloodError extends NetError {
  /** The flood limit in octets. */
  readonly limit: number;
  /** Creates the error for a flood limit of `limit` octets. */
  constructor(limit: number) {
    super(`No line ending received within ${limit} octets`);
    this.name = "LineFloodError";
    this.limit = limit;
  }
}

/**
 * A read did not complete within its timeout (RFC 5321 4.5.3.2). The connection is still open; the
 * server answers `421 4.4.2 ... Error: timeout exceeded` and closes (RFC 5321 3.8), a client treats it as
 * a lost connection (451 semantics).
 */
export class ReadTimeoutError extends NetError {
  /** The timeout that expired, in milliseconds. */
  readonly timeoutMs: number;
  /** Creates the error for a timeout of `timeoutMs` milliseconds. */
  constructor(timeoutMs: number) {
    super(`Read timed out after ${timeoutMs} ms`);
    this.name = "ReadTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A write was not accepted by the kernel within its timeout (RFC 5321 4.5.3.2: 3 minutes per data block).
 * The connection has been destroyed.
 */
export class WriteTimeoutError extends NetError {
  /** The timeout that expired, in milliseconds. */
  readonly timeoutMs: number;
  /** Creates the error for a timeout of `timeoutMs` milliseconds. */
  constructor(timeoutMs: number) {
    super(`Write timed out after ${timeoutMs} ms`);
    this.name = "WriteTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The peer closed the connection (or it failed) before the read or write could complete. Any partial line
 * is lost. `cause` holds the socket error when there was one. Nothing can be written any more.
 */
export class ConnectionClosedError extends NetError {
  /** Creates the error; `cause` is the underlying socket error, if any. */
  constructor(message = "Connection closed by peer", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }
}

/** The TLS handshake failed or timed out. The connection has been destroyed. */
export class TlsHandshakeError extends NetError {
  /** Creates the error; `cause` is the TLS library's error, if any. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TlsHandshakeError";
  }
}
