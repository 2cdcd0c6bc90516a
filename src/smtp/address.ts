/**
 * Reverse-path and forward-path parsing for MAIL and RCPT (RFC 5321 4.1.2).
 *
 * Policies chosen here (docs/protocol.md#addresses):
 * - A space between the colon and the path is accepted (`MAIL FROM: <a@b>`, as in the RFC 2645
 *   example); spaces before the colon are not.
 * - Angle brackets are required: `MAIL FROM:a@b` gets `501 5.5.4` (strict, like Postfix with
 *   `strict_rfc821_envelopes`), because guessing where a bare address ends invites ambiguity with
 *   parameters.
 * - Source routes are accepted and dropped (RFC 5321 4.1.2, Appendix C): `<@a,@b:u@d>` is `u@d`.
 * - Quoted local parts are decoded and re-emitted in least-quoted form (RFC 5321 4.1.2: quoted and
 *   unquoted spellings are equal); the case of the local part is kept (RFC 5321 2.4).
 * - Non-ASCII only when SMTPUTF8 is in force, otherwise 550/553 5.6.7 (RFC 6531 3.5).
 *
 * All failures throw {@link SmtpError} with the reply to send.
 *
 * @module
 */

import { findInvalidCommandChar } from "./command.ts";
import { isAddressLiteral, isValidDomain, MAX_DOMAIN_LENGTH } from "./domain.ts";
import { asciiLowerCase, canonicalDomain } from "./idna.ts";
import {
  C501BadRecipientSyntax,
  C501BadSenderSyntax,
  C501InvalidCharacters,
  C501MailSyntax,
  C501MissingAngleBrackets,
  C501NullRecipient,
  C501PathTooLong,
  C501RcptSyntax,
  C550UnicodeSenderNotAllowed,
  C553UnicodeRecipientNotAllowed,
  type Reply,
  SmtpError,
} from "./reply_codes.ts";

/** RFC 5321 4.5.3.1.1: local part at most 64 octets. */
export const MAX_LOCAL_PART_LENGTH = 64;
/** RFC 5321 4.5.3.1.3: path at most 256 octets including punctuation. */
export const MAX_PATH_LENGTH = 256;

/** A parsed mailbox. */
export interface Mailbox {
  /** Local part in least-quoted form, case preserved: `alice`, `"Joe,Smith"`. */
  localPart: string;
  /**
   * Domain or address literal as the client spelled it. Empty only for the bare `<Postmaster>`
   * recipient (RFC 5321 4.1.1.3).
   */
  domain: string;
  /**
   * `domain` in canonical form, for comparisons and the queue: lower-case A-labels (domains are
   * case-insensitive, RFC 5321 2.4; a U-label and its A-label are one domain, RFC 5890 2.3.2.1), or the
   * lower-cased address literal.
   */
  domainKey: string;
  /** `localPart@domain`, or just `localPart` for `<Postmaster>`; without angle brackets. */
  address: string;
}

/** Result of parsing a MAIL or RCPT argument. */
export interface ParsedPath {
  /** The mailbox, or `null` for the null reverse-path `<>` (MAIL only). */
  path: Mailbox | null;
  /** Raw ESMTP parameters after the path (see params.ts), "" when none. */
  params: string;
}

/** Options for {@link parseMailFrom} and {@link parseRcptTo}. */
export interface AddressOptions {
  /**
   * For MAIL: SMTPUTF8 is advertised on this connection (a non-ASCII path then also needs the SMTPUTF8
   * parameter on the same MAIL, which is checked here). For RCPT: the transaction's MAIL declared
   * SMTPUTF8 (RFC 6531 3.4).
   */
  smtputf8Allowed: boolean;
}

interface Role {
  prefix: string;
  usage: Reply;
  badSyntax: Reply;
  unicodeRefused: Reply;
  isRcpt: boolean;
}

const MAIL_ROLE: Role = {
  prefix: "FROM:",
  usage: C501MailSyntax,
  badSyntax: C501BadSenderSyntax,
  unicodeRefused: C550UnicodeSenderNotAllowed, // RFC 6531 3.5: 550 on MAIL
  isRcpt: false,
};

const RCPT_ROLE: Role = {
  prefix: "TO:",
  usage: C501RcptSyntax,
  badSyntax: C501BadRecipientSyntax,
  unicodeRefused: C553UnicodeRecipientNotAllowed, // RFC 6531 3.5: 553 on RCPT
  isRcpt: true,
};

/**
 * Parses the argument of MAIL (everything after the verb): `FROM:<reverse-path> [params]`.
 * @throws {SmtpError} 501 on syntax, 501 path too long, 550 5.6.7 on undeclared non-ASCII.
 */
export function parseMailFrom(arg: string, options: AddressOptions): ParsedPath {
  const parsed = parsePathArgument(arg, MAIL_ROLE, options);
  if (parsed.path !== null && hasNonAscii(parsed.path.address) && !declaresSmtputf8(parsed.params)) {
    // RFC 6531 3.4: a non-ASCII reverse-path needs the SMTPUTF8 parameter on this MAIL.
    throw new SmtpError(MAIL_ROLE.unicodeRefused, {
      logReason: "Non-ASCII sender without SMTPUTF8 parameter",
    });
  }
  return parsed;
}

/**
 * Parses the argument of RCPT (everything after the verb): `TO:<forward-path> [params]`.
 * Accepts `<Postmaster>` without a domain, case-insensitively (RFC 5321 4.1.1.3).
 * @throws {SmtpError} 501 on syntax or `<>`, 501 path too long, 553 5.6.7 on undeclared non-ASCII.
 */
export function parseRcptTo(arg: string, options: AddressOptions): ParsedPath {
  return parsePathArgument(arg, RCPT_ROLE, options);
}

/** True when the raw parameter string contains the SMTPUTF8 keyword (RFC 6531 3.4). */
function declaresSmtputf8(params: string): boolean {
  return params.split(/[ \t]+/).some((token) => token.toUpperCase() === "SMTPUTF8");
}

function hasNonAscii(text: string): boolean {
  return /[\u0080-\uffff]/.test(text);
}

const encoder = new TextEncoder();
const octets = (text: string): number => encoder.encode(text).length;

function parsePathArgument(arg: string, role: Role, options: AddressOptions): ParsedPath {
  // RFC 5321 2.4: "FROM:" / "TO:" are case-insensitive.
  if (arg.slice(0, role.prefix.length).toUpperCase() !== role.prefix) {
    throw new SmtpError(role.usage, { logReason: `Argument does not start with ${role.prefix}` });
  }
  // Lenient: RFC 5321 4.1.2 allows no space here, but RFC 2645's own example sends one.
  const rest = arg.slice(role.prefix.length).replace(/^[ \t]+/, "");

  const invalid = findInvalidCommandChar(rest, { allowNonAscii: true });
  if (invalid !== null) {
    throw new SmtpError(C501InvalidCharacters, { logReason: `Address contains ${invalid} character` });
  }
  if (!options.smtputf8Allowed && hasNonAscii(rest)) {
    // RFC 6531 3.5: non-ASCII without SMTPUTF8 is refused with X.6.7.
    throw new SmtpError(role.unicodeRefused, { logReason: "Non-ASCII address without SMTPUTF8" });
  }
  if (!rest.startsWith("<")) {
    throw new SmtpError(C501MissingAngleBrackets, { logReason: "Path without angle brackets" });
  }

  const scanner = new PathScanner(rest, options.smtputf8Allowed, role.isRcpt);
  let scanned: { mailbox: Mailbox | null; end: number };
  try {
    scanned = scanner.scan();
  } catch (error) {
    if (error instanceof PathSyntaxError) {
      throw new SmtpError(error.tooLong ? C501PathTooLong : role.badSyntax, { logReason: error.message });
    }
    throw error;
  }

  if (octets(rest.slice(0, scanned.end + 1)) > MAX_PATH_LENGTH) {
    throw new SmtpError(C501PathTooLong, { logReason: `Path longer than ${MAX_PATH_LENGTH} octets` });
  }
  const after = rest.slice(scanned.end + 1);
  if (after !== "" && !/^[ \t]/.test(after)) {
    throw new SmtpError(role.badSyntax, { logReason: "No space between path and parameters" });
  }
  const params = after.replace(/^[ \t]+|[ \t]+$/g, "");

  const mailbox = scanned.mailbox;
  if (mailbox === null) {
    // RFC 5321 4.1.1.3: "<>" is a reverse-path only.
    if (role.isRcpt) throw new SmtpError(C501NullRecipient, { logReason: "RCPT TO:<>" });
    return { path: null, params };
  }
  if (octets(mailbox.localPart) > MAX_LOCAL_PART_LENGTH) {
    throw new SmtpError(C501PathTooLong, {
      logReason: `Local part longer than ${MAX_LOCAL_PART_LENGTH} octets`,
    });
  }
  return { path: mailbox, params };
}

class PathSyntaxError extends Error {
  override name = "PathSyntaxError";
  /** Set when the problem is a length cap rather than the grammar. */
  readonly tooLong: boolean;
  constructor(message: string, tooLong = false) {
    super(message);
    this.tooLong = tooLong;
  }
}

// RFC 5322 3.2.3 atext, as used by RFC 5321 4.1.2 Atom.
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;

function isAtext(char: string, utf8: boolean): boolean {
  return ATEXT.test(char) || (utf8 && char.charCodeAt(0) >= 0x80);
}

function isDotString(text: string, utf8: boolean): boolean {
  return text.split(".").every((atom) => atom.length > 0 && [...atom].every((c) => isAtext(c, utf8)));
}

/**
 * Writes a local part in least-quoted form: unquoted when it is a valid Dot-string, else quoted with
 * only `"` and `\` escaped (RFC 5321 4.1.2: senders should not quote needlessly).
 */
export function formatLocalPart(value: string, options: { utf8?: boolean } = {}): string {
  if (isDotString(value, options.utf8 ?? true)) return value;
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** Formats a mailbox (or the null path) as a path for the client side: `<a@b>` or `<>`. */
export function formatPath(mailbox: Mailbox | null): string {
  return mailbox === null ? "<>" : `<${mailbox.address}>`;
}

/** A small cursor over the path text; every method throws PathSyntaxError on bad input. */
class PathScanner {
  #text: string;
  #pos = 1; // just after "<"
  #utf8: boolean;
  #isRcpt: boolean;

  constructor(text: string, utf8: boolean, isRcpt: boolean) {
    this.#text = text;
    this.#utf8 = utf8;
    this.#isRcpt = isRcpt;
  }

  scan(): { mailbox: Mailbox | null; end: number } {
    if (this.#peek() === ">") return { mailbox: null, end: this.#pos };
    if (this.#peek() === "@") this.#skipSourceRoute();
    const localPart = this.#peek() === '"' ? this.#quotedString() : this.#dotString();
    const normalized = formatLocalPart(localPart, { utf8: this.#utf8 });

    if (this.#peek() === ">" && this.#isRcpt && localPart.toLowerCase() === "postmaster") {
      // RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted, case-insensitively.
      return {
        mailbox: { localPart: normalized, domain: "", domainKey: "", address: normalized },
        end: this.#pos,
      };
    }
    this.#expect("@");
    const domain = this.#peek() === "[" ? this.#addressLiteral() : this.#domain(/[>]/);
    const end = this.#pos;
    this.#expect(">");
    return {
      mailbox: {
        localPart: normalized,
        domain,
        // #domain() has checked that a name has a canonical form.
        domainKey: domain.startsWith("[") ? asciiLowerCase(domain) : canonicalDomain(domain)!,
        address: `${normalized}@${domain}`,
      },
      end,
    };
  }

  #peek(): string | undefined {
    return this.#text[this.#pos];
  }

  #expect(char: string): void {
    if (this.#text[this.#pos] !== char) throw new PathSyntaxError(`Expected "${char}" in path`);
    this.#pos++;
  }

  /** RFC 5321 4.1.2: A-d-l = At-domain *( "," At-domain ) ":"; accepted and ignored (Appendix C). */
  #skipSourceRoute(): void {
    for (;;) {
      this.#expect("@");
      this.#domain(/[,:>]/);
      const next = this.#peek();
      if (next === ":") {
        this.#pos++;
        return;
      }
      this.#expect(",");
    }
  }

  /** Reads a domain up to (not including) a stop character and validates it. */
  #domain(stop: RegExp): string {
    const start = this.#pos;
    while (this.#pos < this.#text.length && !stop.test(this.#text[this.#pos] ?? "")) this.#pos++;
    const domain = this.#text.slice(start, this.#pos);
    if (octets(domain) > MAX_DOMAIN_LENGTH) {
      throw new PathSyntaxError(`Domain longer than ${MAX_DOMAIN_LENGTH} octets`, true);
    }
    if (!isValidDomain(domain, { allowUtf8: this.#utf8 })) {
      throw new PathSyntaxError("Invalid domain in path");
    }
    // RFC 5891 5.4: every label must be a valid A-label or U-label (no look-alikes folded silently).
    if (canonicalDomain(domain) === null) throw new PathSyntaxError("Domain is not a valid IDNA name");
    return domain;
  }

  /** RFC 5321 4.1.3: "[" ... "]", validated by isAddressLiteral. */
  #addressLiteral(): string {
    const close = this.#text.indexOf("]", this.#pos);
    if (close === -1) throw new PathSyntaxError("Unterminated address literal");
    const literal = this.#text.slice(this.#pos, close + 1);
    if (!isAddressLiteral(literal)) throw new PathSyntaxError("Invalid address literal");
    this.#pos = close + 1;
    return literal;
  }

  /** RFC 5321 4.1.2 Dot-string = Atom *("." Atom). */
  #dotString(): string {
    const start = this.#pos;
    while (this.#pos < this.#text.length) {
      const char = this.#text[this.#pos] ?? "";
      if (char !== "." && !isAtext(char, this.#utf8)) break;
      this.#pos++;
    }
    const value = this.#text.slice(start, this.#pos);
    if (!isDotString(value, this.#utf8)) throw new PathSyntaxError("Invalid local part");
    return value;
  }

  /**
   * RFC 5321 4.1.2 Quoted-string: qtextSMTP is printable ASCII except `"` and `\`; quoted-pairSMTP is
   * `\` followed by any printable ASCII or space. Returns the decoded value.
   */
  #quotedString(): string {
    this.#pos++; // opening quote
    let value = "";
    for (;;) {
      const char = this.#text[this.#pos];
      if (char === undefined) throw new PathSyntaxError("Unterminated quoted local part");
      this.#pos++;
      if (char === '"') return value;
      if (char === "\\") {
        const escaped = this.#text[this.#pos];
        if (escaped === undefined || !this.#isQuotable(escaped, true)) {
          throw new PathSyntaxError("Invalid quoted pair in local part");
        }
        value += escaped;
        this.#pos++;
        continue;
      }
      if (!this.#isQuotable(char, false)) throw new PathSyntaxError("Invalid character in quoted local part");
      value += char;
    }
  }

  #isQuotable(char: string, escaped: boolean): boolean {
    const code = char.charCodeAt(0);
    if (code >= 0x80) return this.#utf8; // RFC 6531 3.3: UTF8-non-ascii in qtextSMTP
    if (code < 0x20 || code > 0x7e) return false;
    return escaped || (char !== '"' && char !== "\\");
  }
}
