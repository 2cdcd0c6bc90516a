/**
 * Splitting an SMTP command line into verb and argument, and spotting bytes a command may not contain.
 *
 * The line handed in has already had its CRLF removed by the connection layer, which is also the
 * place that refuses bare CR / bare LF line endings (RFC 5321 2.3.8).
 *
 * @module
 */

/** A command line split into its verb and argument. */
export interface Command {
  /** The verb in upper case (verbs are case-insensitive, RFC 5321 2.4). */
  verb: string;
  /** Everything after the verb, without surrounding spaces or tabs; "" when absent. */
  arg: string;
}

/**
 * Splits `line` at the first space.
 *
 * Trailing whitespace is dropped (RFC 5321 4.1.1 asks receivers to tolerate it) and so is extra
 * whitespace between verb and argument (lenient; RFC 5321 4.1.1 has a single SP).
 */
export function parseCommand(line: string): Command {
  const trimmed = line.replace(/^[ \t]+|[ \t]+$/g, "");
  const space = trimmed.search(/[ \t]/);
  if (space === -1) return { verb: asciiUpper(trimmed), arg: "" };
  return {
    verb: asciiUpper(trimmed.slice(0, space)),
    arg: trimmed.slice(space + 1).replace(/^[ \t]+/, ""),
  };
}

/** Upper-cases ASCII letters only, so a hostile verb cannot turn into a known one via Unicode case rules. */
function asciiUpper(text: string): string {
  return text.replace(/[a-z]+/g, (letters) => letters.toUpperCase());
}

/** Kind of invalid character found by {@link findInvalidCommandChar}. */
export type InvalidCommandChar = "nul" | "cr" | "lf" | "control" | "non-ascii";

/** Options for {@link findInvalidCommandChar}. */
export interface InvalidCommandCharOptions {
  /** Accept non-ASCII characters (only for MAIL/RCPT arguments once SMTPUTF8 is in use, RFC 6531 3.3). */
  allowNonAscii?: boolean;
}

/**
 * Returns the first kind of character a command must not contain, or `null` when the line is clean.
 *
 * Commands are printable US-ASCII plus SP and HT (RFC 5321 2.3.8, 4.1.2). The caller answers
 * `500 5.5.2` for CR/LF (bare line endings) and `501 5.5.2` for the rest (RFC 5321 4.1.2: invalid
 * characters with no other reason to refuse get 501). Whether non-ASCII text is well-formed UTF-8 is
 * the decoder's business, not this function's.
 */
export function findInvalidCommandChar(
  line: string,
  options: InvalidCommandCharOptions = {},
): InvalidCommandChar | null {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) continue;
    if (c === 0x09) continue;
    if (c === 0x00) return "nul";
    if (c === 0x0d) return "cr";
    if (c === 0x0a) return "lf";
    if (c < 0x20 || c === 0x7f) return "control";
    if (!options.allowNonAscii) return "non-ascii";
  }
  return null;
}
