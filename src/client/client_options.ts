/**
 * The limits and options of the SMTP client (src/client/smtp_client.ts), with their defaults.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { PipeliningMode } from "./pipelining.ts";
import type { ClientTimeouts } from "./transaction.ts";

/** RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
export const DEFAULT_MAX_REPLY_LINE_LENGTH = 512;
/** Cap a reply at 100 lines: an endless `250-` flood aborts the session (docs/protocol.md#client-limits). */
export const DEFAULT_MAX_REPLY_LINES = 100;
/** RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients per transaction. */
export const DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION = 100;

/** Options of {@linkcode SmtpClient}. */
export interface SmtpClientOptions {
  /** Client timeouts. */
  timeouts: ClientTimeouts;
  /** PIPELINING policy (config `atrnPipelining`). Default `"auto"`. */
  pipelining?: PipeliningMode;
  /** Most lines in one reply. Default 100. */
  maxReplyLines?: number;
  /** Longest reply line in octets including CRLF. Default 512. */
  maxReplyLineLength?: number;
  /** Most RCPTs per MAIL transaction. Default 100. */
  maxRecipientsPerTransaction?: number;
  /** Logger; commands and replies are traced at level `trace` (never the content). */
  logger?: Logger;
  /** Clock for round-trip measurements. Default `performance.now`. */
  monotonicNow?: () => number;
}
