/**
 * SMTP reply formatting (server side) and incremental reply parsing (client side).
 *
 * @module
 */

import type { Reply } from "./reply_codes.ts";

/** Options for {@link formatReply}. */
export interface FormatReplyOptions {
  /** True once ENHANCEDSTATUSCODES was advertised on this connection (RFC 2034 3). */
  enhanced: boolean;
}

/** Anything outside SP..~ is replaced, so a reply can never carry CR, LF or NUL (RFC 5321 4.2 textstring). */
const UNSAFE_REPLY_TEXT = /[^\x20-\x7e]/g;

/**
 * Formats a reply as wire text, every line ending in CRLF.
 *
 * Multi-line replies use `NNN-text` for all but the last line and `NNN text` for the last (RFC 5321 4.2).
 * With `enhanced`, the enhanced code is repeated at the start of every line (RFC 2034 3), except on
 * 3xx replies, which never carry one.
 */
export function formatReply(reply: Reply, options: FormatReplyOptions): string {
  const lines = reply.lines.length === 0 ? [""] : reply.lines;
  // RFC 2034 3: "the enhanced status code ... is not used with 3xx replies".
  const prefix = options.enhanced && reply.enhanced !== undefined && Math.floor(reply.code / 100) !== 3
    ? `${reply.enhanced} `
    : "";
  let out = "";
  lines.forEach((line, i) => {
    const separator = i === lines.length - 1 ? " " : "-";
    out += `${reply.code}${separator}${prefix}${line.replace(UNSAFE_REPLY_TEXT, "?")}\r\n`;
  });
  return out;
}

/** Why a reply line was refused by {@link ReplyParser}. */
export type ReplyParseErrorKind =
  | "malformed-line"
  | "code-mismatch"
  | "line-too-long"
  | "too-many-lines";

/** Thrown by {@link ReplyParser} on a reply the client must treat as a protocol failure. */
export class ReplyParseError extends Error {
  /** Machine-readable reason. */
  readonly kind: ReplyParseErrorKind;

  /** Creates the error; `message` is for logs. */
  constructor(kind: ReplyParseErrorKind, message: string) {
    super(message);
    this.name = "ReplyParseError";
    this.kind = kind;
  }
}

/** A complete reply as received by the client. */
export interface ParsedReply {
  /** Reply code. */
  code: number;
  /** Enhanced status code, if the first line started with one whose class matches the code. */
  enhanced?: string;
  /** Text of each line, with the code, separator and enhanced code removed. */
  lines: string[];
}

/** Limits for {@link ReplyParser}. */
export interface ReplyParserOptions {
  /** Most lines in one reply; default 100 (docs/protocol.md#client-limits: cap hostile `250-` floods). */
  maxLines?: number;
  /** Longest line in octets including the CRLF the caller stripped; default 512 (RFC 5321 4.5.3.1.5). */
  maxLineLength?: number;
}

/** RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39; then SP, "-" or end of line. */
const REPLY_LINE = /^([2-5][0-5][0-9])(?:([ -])(.*))?$/s;
/** RFC 3463 2: class "." subject "." detail, subject and detail 1 to 3 digits. */
const ENHANCED_CODE = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/**
 * Incremental parser for server replies: feed it one line at a time (CRLF already removed); it returns
 * the reply once its final line arrives and `undefined` while a multi-line reply is still open.
 */
export class ReplyParser {
  readonly #maxLines: number;
  readonly #maxLineLength: number;
  #code: number | undefined;
  #texts: string[] = [];

  /** Creates a parser with the given caps. */
  constructor(options: ReplyParserOptions = {}) {
    this.#maxLines = options.maxLines ?? 100;
    this.#maxLineLength = options.maxLineLength ?? 512;
  }

  /** True while a multi-line reply has started but not finished. */
  get inProgress(): boolean {
    return this.#code !== undefined;
  }

  /**
   * Adds one line.
   * @throws {ReplyParseError} on a malformed line, a code change inside one reply or a broken cap; the
   *   parser is reset, but the connection should be treated as failed.
   */
  push(line: string): ParsedReply | undefined {
    try {
      return this.#push(line);
    } catch (error) {
      this.#reset();
      throw error;
    }
  }

  #push(line: string): ParsedReply | undefined {
    if (line.length + 2 > this.#maxLineLength) {
      throw new ReplyParseError("line-too-long", `Reply line longer than ${this.#maxLineLength} octets`);
    }
    // A CR or LF inside a line means the peer used a bare line ending (RFC 5321 2.3.8).
    if (/[\r\n\0]/.test(line)) {
      throw new ReplyParseError("malformed-line", "Reply line contains CR, LF or NUL");
    }
    const match = REPLY_LINE.exec(line);
    if (match === null) {
      throw new ReplyParseError("malformed-line", "Reply line does not start with a valid 3-digit code");
    }
    const code = Number(match[1]);
    if (this.#code !== undefined && this.#code !== code) {
      // RFC 5321 4.2.1: every line of a multi-line reply carries the same code.
      throw new ReplyParseError("code-mismatch", `Reply code changed from ${this.#code} to ${code}`);
    }
    if (this.#texts.length + 1 > this.#maxLines) {
      throw new ReplyParseError("too-many-lines", `Reply has more than ${this.#maxLines} lines`);
    }
    this.#code = code;
    // RFC 5321 4.2: a missing text (and missing SP) after the code must be tolerated.
    this.#texts.push(match[3] ?? "");
    if (match[2] === "-") return undefined;
    const texts = this.#texts;
    this.#reset();
    return withEnhancedCode(code, texts);
  }

  #reset(): void {
    this.#code = undefined;
    this.#texts = [];
  }
}

/** Splits the RFC 2034 enhanced code off each line when the first line carries one of matching class. */
function withEnhancedCode(code: number, texts: string[]): ParsedReply {
  const first = ENHANCED_CODE.exec(texts[0] ?? "");
  if (first === null || Number(first[1]) !== Math.floor(code / 100)) return { code, lines: texts };
  const enhanced = `${first[1]}.${first[2]}.${first[3]}`;
  const lines = texts.map((text) => {
    if (text === enhanced) return "";
    return text.startsWith(`${enhanced} `) ? text.slice(enhanced.length + 1) : text;
  });
  return { code, enhanced, lines };
}
