/**
 * What a provider's EHLO reply offers the customer, and, when it does not offer what `pull` needs,
 * a sentence saying why. `pull` reads this before it sends AUTH, so a provider that offers AUTH only
 * under TLS (Exim 4.99's default) is reported as such, not as a bad secret after a `503`.
 */
import { WATCH_KEYWORD } from "../smtp/ehlo.ts";

/** The mechanism `pull` authenticates with: RFC 2645 5.1.1 makes CRAM-MD5 (RFC 2195) mandatory. */
export const WANTED_MECHANISM = "CRAM-MD5";

/** The keywords of one EHLO reply that matter to the customer. */
export interface EhloOffer {
  /** RFC 2645 5.1.1: the provider MUST list ATRN. */
  atrn: boolean;
  /** RFC 3207 4. */
  starttls: boolean;
  /** The provider offers push delivery (XWATCH, src/smtp/ehlo.ts). */
  watch: boolean;
  /** RFC 4954 3: the mechanisms after `AUTH` (upper case); null when AUTH is not listed at all. */
  authMechanisms: string[] | null;
}

/**
 * Reads the keyword lines of an EHLO reply (the first line is the greeting name). The obsolete
 * `AUTH=` form some servers still send is read as well.
 */
export function readEhloOffer(lines: readonly string[]): EhloOffer {
  let atrn = false;
  let starttls = false;
  let watch = false;
  let authMechanisms: string[] | null = null;
  for (const line of lines.slice(1)) {
    const [keyword = "", ...params] = line.trim().split(/[\s=]+/);
    switch (keyword.toUpperCase()) {
      case "ATRN":
        atrn = true;
        break;
      case "STARTTLS":
        starttls = true;
        break;
      case WATCH_KEYWORD:
        watch = true;
        break;
      case "AUTH":
        authMechanisms = [...new Set([...(authMechanisms ?? []), ...params.map((p) => p.toUpperCase())])];
        break;
    }
  }
  return { atrn, starttls, watch, authMechanisms };
}

/**
 * Null when the offer lets `pull` send ATRN after `AUTH CRAM-MD5`, else why not, in words a user can
 * act on. `tlsActive` is whether this EHLO came over TLS.
 */
export function offerProblem(offer: EhloOffer, tlsActive: boolean): string | null {
  if (!offer.atrn) return "the provider does not offer ATRN (RFC 2645 5.1.1): is this its ODMR port?";
  const mechanisms = offer.authMechanisms;
  if (mechanisms?.includes(WANTED_MECHANISM)) return null;
  // RFC 3207 4.2: a server may offer more once TLS is up; Exim, for one, lists AUTH only then.
  const tlsMayHelp = !tlsActive && offer.starttls;
  if (mechanisms === null) {
    return tlsMayHelp
      ? "the provider offers AUTH only under TLS: collect with --tls starttls (the default), not --tls none"
      : "the provider does not offer AUTH";
  }
  const offered = `it offers ${mechanisms.join(" ") || "none"}`;
  return tlsMayHelp
    ? `the provider does not offer ${WANTED_MECHANISM} before TLS (${offered}): try --tls starttls (the default)`
    : `the provider does not offer ${WANTED_MECHANISM}, the mechanism pull uses (${offered})`;
}
