/**
 * Domain names, address literals and the ATRN domain list.
 *
 * @module
 */

import { canonicalDomain } from "./idna.ts";
import { C501BadAtrnSyntax, SmtpError } from "./reply_codes.ts";

/** RFC 5321 4.5.3.1.2: a domain name is at most 255 octets. */
export const MAX_DOMAIN_LENGTH = 255;
/** RFC 1035 2.3.4: a label is at most 63 octets. */
export const MAX_LABEL_LENGTH = 63;

/** Options for {@link isValidDomain}. */
export interface DomainOptions {
  /** Accept U-labels with non-ASCII characters (RFC 6531 3.3, only inside SMTPUTF8 transactions). */
  allowUtf8?: boolean;
}

// RFC 5321 4.1.2: sub-domain = Let-dig [Ldh-str]; Ldh-str ends in Let-dig. No underscore.
const LDH_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
// Same shape with any non-ASCII character counted as a letter (U-label, RFC 6531 3.3).
const UTF8_LABEL = /^[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?$/;

const encoder = new TextEncoder();

/**
 * True for a syntactically valid domain name: dot-separated LDH labels of 1 to 63 octets, at most 255
 * octets in all, no trailing dot, no underscore (RFC 5321 4.1.2 Domain, 4.5.3.1.2). A single label is
 * valid here; see {@link isValidAtrnDomain} for the stricter ATRN rule.
 */
export function isValidDomain(name: string, options: DomainOptions = {}): boolean {
  if (name.length === 0 || encoder.encode(name).length > MAX_DOMAIN_LENGTH) return false;
  const pattern = options.allowUtf8 ? UTF8_LABEL : LDH_LABEL;
  return name.split(".").every((label) =>
    pattern.test(label) && encoder.encode(label).length <= MAX_LABEL_LENGTH
  );
}

/** True for a domain acceptable in ATRN: valid and at least two labels (RFC 2645 5.2.1 ABNF). */
export function isValidAtrnDomain(name: string): boolean {
  return isValidDomain(name) && name.includes(".");
}

/** True for a dotted-quad IPv4 address with each part 0 to 255 (RFC 5321 4.1.3 IPv4-address-literal). */
export function isIpv4Address(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((part) => /^\d{1,3}$/.test(part) && Number(part) <= 255);
}

/** True for an IPv6 address in any RFC 5321 4.1.3 form (full, compressed, with embedded IPv4). */
export function isIpv6Address(text: string): boolean {
  let hexPart = text;
  let groupsWanted = 8;
  const lastColon = text.lastIndexOf(":");
  if (lastColon !== -1 && text.slice(lastColon + 1).includes(".")) {
    // IPv6v4-full / IPv6v4-comp: the last 32 bits are written as a dotted quad.
    if (!isIpv4Address(text.slice(lastColon + 1))) return false;
    hexPart = text.slice(0, lastColon + 1) + "0";
    groupsWanted = 7;
  }
  const isHexGroup = (group: string) => /^[0-9A-Fa-f]{1,4}$/.test(group);
  const doubleColon = hexPart.indexOf("::");
  if (doubleColon === -1) {
    const groups = hexPart.split(":");
    return groups.length === groupsWanted && groups.every(isHexGroup);
  }
  if (hexPart.indexOf("::", doubleColon + 1) !== -1) return false;
  const left = hexPart.slice(0, doubleColon);
  const right = hexPart.slice(doubleColon + 2);
  const leftGroups = left === "" ? [] : left.split(":");
  const rightGroups = right === "" ? [] : right.split(":");
  // RFC 5321 4.1.3 IPv6-comp: "::" stands for at least two groups of zeros.
  return leftGroups.length + rightGroups.length <= groupsWanted - 2 &&
    leftGroups.every(isHexGroup) && rightGroups.every(isHexGroup);
}

/**
 * True for an address literal: `[1.2.3.4]`, `[IPv6:...]` or a general `[tag:content]` literal
 * (RFC 5321 4.1.3).
 */
export function isAddressLiteral(text: string): boolean {
  if (text.length < 3 || !text.startsWith("[") || !text.endsWith("]")) return false;
  const inner = text.slice(1, -1);
  if (isIpv4Address(inner)) return true;
  const colon = inner.indexOf(":");
  if (colon === -1) return false;
  const tag = inner.slice(0, colon);
  const content = inner.slice(colon + 1);
  if (tag.toLowerCase() === "ipv6") return isIpv6Address(content);
  // General-address-literal = Standardized-tag ":" 1*dcontent; dcontent = %d33-90 / %d94-126.
  return /^[A-Za-z0-9-]*[A-Za-z0-9]$/.test(tag) && /^[\x21-\x5a\x5e-\x7e]+$/.test(content);
}

/** Formats an IP address as an address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 4.1.3). */
export function addressLiteralFor(ip: string): string {
  return ip.includes(":") ? `[IPv6:${ip}]` : `[${ip}]`;
}

/** Options for {@link parseAtrnDomains}. */
export interface AtrnDomainOptions {
  /** Most domains in one ATRN; default 100. */
  maxDomains?: number;
  /** Longest argument in characters; default 1000 (checked before any splitting). */
  maxLength?: number;
}

/**
 * Parses the argument of `ATRN` (RFC 2645 5.2.1): a comma-separated list of domains of at least two
 * LDH labels. Spaces around commas are tolerated (lenient: clients do send `a.com, b.com`); empty items,
 * address literals, underscores, single-label names, too many domains and over-long arguments are
 * refused. An empty argument means "all my domains" and yields `[]`.
 *
 * @returns the domains lower-cased, duplicates removed, in first-seen order.
 * @throws {SmtpError} `501 5.5.4` with a log reason naming the problem.
 */
export function parseAtrnDomains(arg: string, options: AtrnDomainOptions = {}): string[] {
  const maxDomains = options.maxDomains ?? 100;
  const maxLength = options.maxLength ?? 1000;
  if (arg.length > maxLength) {
    throw new SmtpError(C501BadAtrnSyntax, {
      logReason: `ATRN argument longer than ${maxLength} characters`,
    });
  }
  const trimmed = arg.replace(/^[ \t]+|[ \t]+$/g, "");
  if (trimmed === "") return [];
  const items = trimmed.split(",");
  if (items.length > maxDomains) {
    throw new SmtpError(C501BadAtrnSyntax, { logReason: `ATRN lists more than ${maxDomains} domains` });
  }
  const domains = new Set<string>();
  for (const item of items) {
    const name = item.replace(/^[ \t]+|[ \t]+$/g, "");
    if (name === "") {
      throw new SmtpError(C501BadAtrnSyntax, { logReason: "ATRN domain list has an empty item" });
    }
    // A-labels compare in their canonical form (RFC 5890 2.3.2.1); bad Punycode is refused.
    const key = isValidAtrnDomain(name) ? canonicalDomain(name) : null;
    if (key === null) {
      throw new SmtpError(C501BadAtrnSyntax, { logReason: "ATRN domain list has an invalid domain" });
    }
    domains.add(key);
  }
  return [...domains];
}
