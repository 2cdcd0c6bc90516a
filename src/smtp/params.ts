/**
 * ESMTP parameters on MAIL and RCPT (RFC 5321 4.1.2 esmtp-param) and xtext (RFC 3461 4).
 *
 * Keywords are case-insensitive and may each appear once (a duplicate is `501`, RFC 3461 4). A keyword
 * whose extension is not enabled on this connection is `555 5.5.4` (RFC 5321 4.1.1.11), so a client
 * cannot use an extension we never advertised. A bad value is `501 5.5.4`.
 *
 * @module
 */

import {
  C501BadParamSyntax,
  C501BadParamValue,
  C501DuplicateParam,
  C555UnknownParam,
  SmtpError,
} from "./reply_codes.ts";

/** One `keyword[=value]` token; keyword upper-cased, value `null` when absent. */
export interface EsmtpParam {
  keyword: string;
  value: string | null;
}

// RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
// esmtp-value = 1*(%d33-60 / %d62-126), i.e. printable ASCII without "=" and space.
const PARAM = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$/;

/**
 * Splits a raw parameter string into tokens.
 * @throws {SmtpError} `501` on a malformed token or a duplicate keyword.
 */
export function parseEsmtpParams(raw: string): EsmtpParam[] {
  const trimmed = raw.replace(/^[ \t]+|[ \t]+$/g, "");
  if (trimmed === "") return [];
  const seen = new Set<string>();
  return trimmed.split(/[ \t]+/).map((token) => {
    const match = PARAM.exec(token);
    if (match === null) throw new SmtpError(C501BadParamSyntax, { logReason: "Malformed ESMTP parameter" });
    const keyword = (match[1] ?? "").toUpperCase();
    if (seen.has(keyword)) {
      throw new SmtpError(C501DuplicateParam, { logReason: `Duplicate ${keyword} parameter` });
    }
    seen.add(keyword);
    return { keyword, value: match[2] ?? null };
  });
}

/** Which extensions are enabled (advertised) for MAIL parameters; anything false is answered 555. */
export interface MailParamOptions {
  /** SIZE (RFC 1870). */
  size?: boolean;
  /** BODY (RFC 6152). */
  eightBitMime?: boolean;
  /** SMTPUTF8 (RFC 6531). */
  smtputf8?: boolean;
  /** RET and ENVID (RFC 3461). */
  dsn?: boolean;
  /** AUTH= (RFC 4954 5). */
  auth?: boolean;
}

/** Typed MAIL parameters. */
export interface MailParams {
  /** Declared size in octets (RFC 1870); values beyond 2^53 become `Infinity`. */
  size?: number;
  /** BODY value (RFC 6152). */
  body?: "7BIT" | "8BITMIME";
  /** SMTPUTF8 was given (RFC 6531 3.4). */
  smtputf8: boolean;
  /** RET value (RFC 3461 4.3). */
  ret?: "FULL" | "HDRS";
  /** ENVID as sent (still xtext-encoded, so it can be passed on unchanged, RFC 3461 4.4). */
  envid?: string;
  /** AUTH= mailbox, xtext-decoded; `null` for `AUTH=<>` (RFC 4954 5). */
  auth?: string | null;
}

/**
 * Parses and checks MAIL parameters.
 * @throws {SmtpError} `501` for syntax, duplicates and bad values; `555` for keywords not enabled.
 */
export function parseMailParams(raw: string, options: MailParamOptions): MailParams {
  const result: MailParams = { smtputf8: false };
  for (const { keyword, value } of parseEsmtpParams(raw)) {
    switch (keyword) {
      case "SIZE":
        if (!options.size) break;
        // RFC 1870 3: size-value = 1*20DIGIT.
        if (value === null || !/^\d{1,20}$/.test(value)) throw badValue(keyword);
        result.size = toSafeNumber(value);
        continue;
      case "BODY": {
        if (!options.eightBitMime) break;
        // RFC 6152 2 (ex RFC 1652 3): BODY=7BIT / BODY=8BITMIME, case-insensitive.
        const body = value?.toUpperCase();
        if (body !== "7BIT" && body !== "8BITMIME") throw badValue(keyword);
        result.body = body;
        continue;
      }
      case "SMTPUTF8":
        if (!options.smtputf8) break;
        // RFC 6531 3.4: SMTPUTF8 takes no value.
        if (value !== null) throw badValue(keyword);
        result.smtputf8 = true;
        continue;
      case "RET": {
        if (!options.dsn) break;
        // RFC 3461 4.3: RET=FULL / RET=HDRS.
        const ret = value?.toUpperCase();
        if (ret !== "FULL" && ret !== "HDRS") throw badValue(keyword);
        result.ret = ret;
        continue;
      }
      case "ENVID":
        if (!options.dsn) break;
        // RFC 3461 4.4: ENVID=xtext, at most 100 characters.
        if (value === null || value.length > 100 || decodeClean(value) === null) throw badValue(keyword);
        result.envid = value;
        continue;
      case "AUTH":
        if (!options.auth) break;
        // RFC 4954 5: AUTH=<> or AUTH=xtext(mailbox).
        if (value === "<>") {
          result.auth = null;
          continue;
        }
        {
          const mailbox = value === null ? null : decodeClean(value);
          if (mailbox === null || mailbox === "") throw badValue(keyword);
          result.auth = mailbox;
        }
        continue;
    }
    // RFC 5321 4.1.1.11: a parameter we do not implement (or did not advertise) is 555.
    throw new SmtpError(C555UnknownParam, { logReason: `Unsupported MAIL parameter ${keyword}` });
  }
  return result;
}

/** Which extensions are enabled for RCPT parameters. */
export interface RcptParamOptions {
  /** NOTIFY and ORCPT (RFC 3461). */
  dsn?: boolean;
}

/** A NOTIFY keyword (RFC 3461 4.1). */
export type NotifyKeyword = "NEVER" | "SUCCESS" | "FAILURE" | "DELAY";

/** Typed RCPT parameters. */
export interface RcptParams {
  /** NOTIFY list: `["NEVER"]` or a non-empty subset of SUCCESS, FAILURE, DELAY (RFC 3461 4.1). */
  notify?: NotifyKeyword[];
  /** ORCPT (RFC 3461 4.2). */
  orcpt?: {
    /** Address type, e.g. `rfc822` (compared case-insensitively). */
    addrType: string;
    /** The xtext-encoded original address, as sent (passed on unchanged). */
    encoded: string;
    /** Decoded address (xtext decoding; `utf-8` addresses keep their RFC 6533 escapes). */
    address: string;
  };
}

/**
 * Parses and checks RCPT parameters.
 * @throws {SmtpError} `501` for syntax, duplicates and bad values; `555` for keywords not enabled.
 */
export function parseRcptParams(raw: string, options: RcptParamOptions): RcptParams {
  const result: RcptParams = {};
  for (const { keyword, value } of parseEsmtpParams(raw)) {
    if (keyword === "NOTIFY" && options.dsn) {
      result.notify = parseNotify(value);
      continue;
    }
    if (keyword === "ORCPT" && options.dsn) {
      result.orcpt = parseOrcpt(value);
      continue;
    }
    throw new SmtpError(C555UnknownParam, { logReason: `Unsupported RCPT parameter ${keyword}` });
  }
  return result;
}

/** RFC 3461 4.1: NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ). */
function parseNotify(value: string | null): NotifyKeyword[] {
  if (value === null) throw badValue("NOTIFY");
  const items = value.toUpperCase().split(",");
  if (items.length === 1 && items[0] === "NEVER") return ["NEVER"];
  const seen = new Set<NotifyKeyword>();
  for (const item of items) {
    if (item !== "SUCCESS" && item !== "FAILURE" && item !== "DELAY") throw badValue("NOTIFY");
    if (seen.has(item)) throw badValue("NOTIFY");
    seen.add(item);
  }
  return [...seen];
}

/** RFC 3461 4.2: ORCPT=addr-type ";" xtext, at most 500 characters. */
function parseOrcpt(value: string | null): NonNullable<RcptParams["orcpt"]> {
  if (value === null || value.length > 500) throw badValue("ORCPT");
  const semicolon = value.indexOf(";");
  if (semicolon === -1) throw badValue("ORCPT");
  const addrType = value.slice(0, semicolon);
  const encoded = value.slice(semicolon + 1);
  // addr-type is an atom (RFC 3461 4.2); in practice "rfc822" or "utf-8".
  if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(addrType) || encoded === "") throw badValue("ORCPT");
  const address = decodeClean(encoded);
  if (address === null) throw badValue("ORCPT");
  return { addrType, encoded, address };
}

/** xtext-decodes and refuses control characters: they would end up in headers, DSNs and logs. */
function decodeClean(xtext: string): string | null {
  const decoded = xtextDecode(xtext);
  // Matching control characters is the point here.
  // deno-lint-ignore no-control-regex
  return decoded === null || /[\x00-\x1f\x7f]/.test(decoded) ? null : decoded;
}

function badValue(keyword: string): SmtpError {
  return new SmtpError(C501BadParamValue(keyword), { logReason: `Bad ${keyword} parameter value` });
}

function toSafeNumber(digits: string): number {
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : Number.POSITIVE_INFINITY;
}

const utf8Encoder = new TextEncoder();
const strictUtf8Decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes text as xtext (RFC 3461 4): `!` to `~` except `+` and `=` stay, every other octet of the
 * UTF-8 encoding becomes `+HH` with upper-case hex.
 */
export function xtextEncode(text: string): string {
  let out = "";
  for (const byte of utf8Encoder.encode(text)) {
    if (byte >= 0x21 && byte <= 0x7e && byte !== 0x2b && byte !== 0x3d) {
      out += String.fromCharCode(byte);
    } else {
      out += `+${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return out;
}

/**
 * Decodes xtext (RFC 3461 4). Returns `null` for invalid input: a character outside `!`..`~`, a raw
 * `=`, a `+` not followed by two hex digits (lower-case hex is tolerated), or octets that are not UTF-8.
 */
export function xtextDecode(xtext: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < xtext.length; i++) {
    const code = xtext.charCodeAt(i);
    if (code === 0x2b) {
      const hex = xtext.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
      continue;
    }
    if (code < 0x21 || code > 0x7e || code === 0x3d) return null;
    bytes.push(code);
  }
  try {
    return strictUtf8Decoder.decode(new Uint8Array(bytes));
  } catch {
    return null;
  }
}
