/**
 * Internationalized domain names: one canonical form for comparing and storing domains.
 *
 * RFC 6531 3.2 lets an SMTPUTF8 client write a domain with U-labels (`böb.test`) where another writes
 * A-labels (`xn--bb-fka.test`); both name the same domain (RFC 5890 2.3.2.1). The relay compares,
 * stores and selects by the lower-case A-label form, computed with the runtimes' `node:url`
 * `domainToASCII` (UTS #46 processing; the same answers on Deno, Bun and Node).
 *
 * UTS #46 also MAPS look-alikes (the Kelvin sign U+212A to `k`, fullwidth letters to ASCII). Such a
 * spelling is not a U-label (RFC 5891 5.4: a U-label is what ToUnicode gives back for its A-label),
 * and folding it silently would queue mail under a domain the sender did not write. So every label
 * must already be in one of the two forms, up to ASCII case: its A-label, or the U-label that the
 * A-label decodes to. Anything else is refused.
 *
 * @module
 */

import { domainToASCII, domainToUnicode } from "node:url";

/** ASCII-only lower-casing: `toLowerCase` would fold U+212A (Kelvin) into `k` (RFC 5890 2.3.2.1). */
export function asciiLowerCase(text: string): string {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

/**
 * The canonical key of a domain name: lower-case A-labels (`xn--bb-fka.test` for `böb.test` and
 * `XN--BB-FKA.TEST`), or `null` when some label is neither a valid A-label nor a valid U-label
 * (invalid Punycode, disallowed code points, look-alikes that UTS #46 would map). Syntax (LDH
 * labels, lengths) is checked separately by `isValidDomain`.
 */
export function canonicalDomain(name: string): string | null {
  if (name === "") return null;
  const ascii = domainToASCII(name);
  if (ascii === "") return null;
  const given = asciiLowerCase(name).split(".");
  const aLabels = ascii.split(".");
  if (given.length !== aLabels.length) return null;
  for (let i = 0; i < aLabels.length; i++) {
    const aLabel = aLabels[i]!;
    const label = given[i]!;
    if (label === aLabel) continue;
    // A U-label must be exactly what its A-label decodes to (RFC 5891 5.4).
    if (label !== domainToUnicode(aLabel)) return null;
  }
  return ascii;
}

/** The domain for display: U-labels where the A-labels decode (`böb.test`), else as given. */
export function displayDomain(canonical: string): string {
  return domainToUnicode(canonical) || canonical;
}
