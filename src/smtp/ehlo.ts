/**
 * EHLO replies: building ours (server side) and reading the peer's keywords (client side).
 *
 * @module
 */

import { Code250Ok } from "./codes.ts";
import type { Reply } from "./reply_codes.ts";

/**
 * Builds the 250 reply to EHLO (RFC 5321 4.1.1.1): first line `<domain> <greeting>`, then one
 * keyword (with its parameters) per line. EHLO replies carry no enhanced status code (RFC 2034 3).
 */
export function buildEhloReply(domain: string, greeting: string, keywords: readonly string[]): Reply {
  const first = greeting === "" ? domain : `${domain} ${greeting}`;
  return { code: Code250Ok, lines: [first, ...keywords] };
}

/** A keyword map whose lookups ignore case (RFC 5321 2.4: EHLO keywords are case-insensitive). */
export class Capabilities extends Map<string, string[]> {
  /** Looks a keyword up in any case. */
  override get(keyword: string): string[] | undefined {
    return super.get(keyword.toUpperCase());
  }

  /** Tests a keyword in any case. */
  override has(keyword: string): boolean {
    return super.has(keyword.toUpperCase());
  }

  /** Stores a keyword under its upper-case spelling. */
  override set(keyword: string, params: string[]): this {
    return super.set(keyword.toUpperCase(), params);
  }

  /** Removes a keyword in any case. */
  override delete(keyword: string): boolean {
    return super.delete(keyword.toUpperCase());
  }
}

// RFC 5321 4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
// ehlo-param = 1*(%d33-126).
const PARAM = /^[\x21-\x7e]+$/;

/**
 * Reads the text lines of an EHLO reply (as returned by ReplyParser) into keywords and parameters.
 * The first line (domain and greeting) is skipped. Lines that are not `keyword *(SP param)` are
 * ignored, as are the old `AUTH=...` lines; a repeated keyword adds its parameters to the first.
 */
export function parseEhloReply(lines: readonly string[]): Capabilities {
  const capabilities = new Capabilities();
  for (const line of lines.slice(1)) {
    const [keyword, ...params] = line.trim().split(/[ \t]+/);
    if (keyword === undefined || !KEYWORD.test(keyword) || !params.every((p) => PARAM.test(p))) continue;
    const known = capabilities.get(keyword);
    if (known === undefined) {
      capabilities.set(keyword, params);
    } else {
      for (const param of params) if (!known.includes(param)) known.push(param);
    }
  }
  return capabilities;
}

/**
 * The peer's SIZE limit (RFC 1870 4): a positive number, `0` for "no fixed limit" (also for a bare
 * `SIZE`), or `undefined` when SIZE is not advertised or its parameter is not a number.
 */
export function sizeLimitOf(capabilities: Capabilities): number | undefined {
  const params = capabilities.get("SIZE");
  if (params === undefined) return undefined;
  if (params.length === 0) return 0;
  const value = params[0] ?? "";
  return /^\d{1,20}$/.test(value) ? Number(value) : undefined;
}

/**
 * Push delivery (`pull --watch`), a local extension (RFC 5321 2.2.2: X-keywords and X-verbs are for
 * local use). Before the turn the relay lists `XWATCH` in its ODMR EHLO reply; a customer that wants
 * push sends the verb `XWATCH` before ATRN, and the ATRN then turns even when no mail waits. After the
 * turn the customer's side lists `XWATCH` in ITS EHLO reply, and only then does the relay keep the
 * session open after draining the queue. fetchmail does neither (and relays its local MTA's EHLO
 * reply), so fetchmail sessions behave as before.
 */
export const WATCH_KEYWORD = "XWATCH";
