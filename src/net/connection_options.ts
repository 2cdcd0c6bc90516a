/**
 * The limits and defaults of a line connection (src/net/line_connection.ts) and the options of its
 * reads and writes, apart from the socket code so that code which only passes them along need not
 * import it.
 *
 * @module
 */

/** RFC 5321 4.5.3.1.4: a command line is at most 512 octets including the CRLF. */
export const DEFAULT_MAX_LINE_LENGTH = 512;
/** Default cap on buffered input before the socket is paused (flood limit plus one long AUTH line). */
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 + 16 * 1024;
/** RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command. */
export const DEFAULT_READ_TIMEOUT_MS = 5 * 60 * 1000;
/** RFC 5321 4.5.3.2.5: 3 minutes for each data block write to complete. */
export const DEFAULT_WRITE_TIMEOUT_MS = 3 * 60 * 1000;
/** Default time between `end()` and `destroy()` in `LineConnection.close`. */
export const DEFAULT_CLOSE_GRACE_MS = 2000;

/** Limits and defaults of one `LineConnection`. All fields are optional. */
export interface LineConnectionOptions {
  /** Default `maxLength` for `LineConnection.readLine`, octets including CRLF. Default 512. */
  maxLineLength?: number;
  /** A line with no CRLF within this many octets raises `LineFloodError`. Default 64 KiB. */
  floodLimit?: number;
  /** The socket is paused while at least this many bytes are buffered. Default 80 KiB. */
  maxBufferedBytes?: number;
  /** Default read timeout in milliseconds. Default 5 minutes (RFC 5321 4.5.3.2.7). */
  readTimeoutMs?: number;
  /** Default write timeout in milliseconds. Default 3 minutes (RFC 5321 4.5.3.2.5). */
  writeTimeoutMs?: number;
  /** Time between `end()` and `destroy()` in `close()`, in milliseconds. Default 2000. */
  closeGraceMs?: number;
}

/** Options of `LineConnection.readLine`. */
export interface ReadLineOptions {
  /** Maximum line length in octets INCLUDING the CRLF, as RFC 5321 4.5.3.1 counts (512, 1000, 12288). */
  maxLength?: number;
  /** Read timeout in milliseconds (whole line); `Infinity` disables it. */
  timeoutMs?: number;
}

/** Options of `LineConnection.readChunk`. */
export interface ReadChunkOptions {
  /** Read timeout in milliseconds; `Infinity` disables it. */
  timeoutMs?: number;
  /** Return at most this many bytes (the rest stays buffered). Default: everything buffered. */
  maxBytes?: number;
}

/** Options of `LineConnection.write`. */
export interface WriteOptions {
  /** Write timeout in milliseconds; on expiry the connection is destroyed. */
  timeoutMs?: number;
}
