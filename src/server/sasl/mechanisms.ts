/**
 * Which SASL mechanisms to advertise and accept, as a function of TLS state and configuration.
 *
 * - CRAM-MD5 is mandatory to implement on the ODMR port (RFC 2645 4) and is the only mechanism fetchmail's
 *   ODMR client speaks, without STARTTLS, so it is offered with or without TLS
 *   (docs/protocol.md#cram-md5-without-tls).
 * - PLAIN and LOGIN reveal the password; RFC 4954 4/15 require that a server can be configured to offer no
 *   plaintext mechanism without TLS. That is the default here.
 *
 * @module
 */

import { C504EncryptionRequired, C504UnknownMechanism, type Reply } from "../../smtp/reply_codes.ts";

/** SASL mechanisms this server implements, in advertising order (strongest first). */
export const SUPPORTED_MECHANISMS = ["CRAM-MD5", "PLAIN", "LOGIN"] as const;

/** A mechanism this server implements. */
export type SaslMechanism = typeof SUPPORTED_MECHANISMS[number];

/** Per-mechanism facts the AUTH handler needs. */
export interface MechanismInfo {
  /** Sends the password in the clear, so normally offered only under TLS. */
  readonly plaintext: boolean;
  /**
   * Server speaks first (CRAM-MD5 sends the challenge), so an initial response on the AUTH line is a
   * protocol error: `501 5.7.0` (docs/protocol.md#auth-replies).
   */
  readonly serverFirst: boolean;
}

/** Facts per mechanism. */
export const MECHANISM_INFO: Readonly<Record<SaslMechanism, MechanismInfo>> = {
  "CRAM-MD5": { plaintext: false, serverFirst: true },
  PLAIN: { plaintext: true, serverFirst: false },
  // LOGIN is client-first in practice: clients may send the username as an initial response.
  LOGIN: { plaintext: true, serverFirst: false },
};

/** Inputs of the mechanism policy. */
export interface MechanismPolicy {
  /** TLS is active on this connection (implicit TLS or after STARTTLS). */
  readonly tlsActive: boolean;
  /** Offer PLAIN and LOGIN on unencrypted connections too (default false; RFC 4954 4). */
  readonly allowPlainWithoutTls?: boolean;
  /** Offer CRAM-MD5 (default true; RFC 2645 4 lets a site turn it off if it uses stronger methods). */
  readonly cramMd5Enabled?: boolean;
  /** Offer PLAIN and LOGIN at all (default true; turn off when no scrypt hashes are stored). */
  readonly plainEnabled?: boolean;
}

/** Verdict of {@link checkMechanism}; a failure carries the reply the AUTH handler should send. */
export type MechanismVerdict =
  | { readonly ok: true; readonly mechanism: SaslMechanism; readonly info: MechanismInfo }
  | {
    readonly ok: false;
    /** `unknown-mechanism`: not implemented or turned off. `encryption-required`: needs TLS first. */
    readonly reason: "unknown-mechanism" | "encryption-required";
    /**
     * The reply to send, {@linkcode C504UnknownMechanism} or {@linkcode C504EncryptionRequired}
     * (RFC 4954 4: both cases are `504 5.5.4`; `538 5.7.11` is historical), as code, enhanced code
     * and text.
     */
    readonly code: number;
    /** Its enhanced status code. */
    readonly enhanced: string;
    /** Its text. */
    readonly text: string;
  };

/** A refusal verdict carrying `reply` (a one-line reply with an enhanced code). */
function refusal(
  reason: "unknown-mechanism" | "encryption-required",
  reply: Reply,
): MechanismVerdict {
  return { ok: false, reason, code: reply.code, enhanced: reply.enhanced ?? "", text: reply.lines.join(" ") };
}

function isOffered(mechanism: SaslMechanism, policy: MechanismPolicy): boolean {
  if (mechanism === "CRAM-MD5") return policy.cramMd5Enabled ?? true;
  return policy.plainEnabled ?? true;
}

function needsTls(mechanism: SaslMechanism, policy: MechanismPolicy): boolean {
  return MECHANISM_INFO[mechanism].plaintext && !policy.tlsActive && !(policy.allowPlainWithoutTls ?? false);
}

/** Mechanisms to list after `AUTH` in the EHLO reply for this connection's state (may be empty). */
export function advertisedMechanisms(policy: MechanismPolicy): SaslMechanism[] {
  // RFC 4954 4: mechanisms that would be refused for lack of encryption SHOULD NOT be advertised.
  return SUPPORTED_MECHANISMS.filter((m) => isOffered(m, policy) && !needsTls(m, policy));
}

/** The EHLO keyword line (`AUTH CRAM-MD5 PLAIN LOGIN`), or `null` when nothing is offered. */
export function authEhloKeyword(policy: MechanismPolicy): string | null {
  const mechs = advertisedMechanisms(policy);
  return mechs.length === 0 ? null : `AUTH ${mechs.join(" ")}`;
}

/**
 * Decide whether `AUTH <name>` may proceed. Mechanism names are matched case-insensitively (SMTP
 * keywords are; RFC 4422 3.1 registers them in upper case). A mechanism that exists but is turned off is
 * reported as unknown, so the answer does not reveal configuration.
 */
export function checkMechanism(name: string, policy: MechanismPolicy): MechanismVerdict {
  const upper = name.toUpperCase();
  const mechanism = SUPPORTED_MECHANISMS.find((m) => m === upper);
  if (mechanism === undefined || !isOffered(mechanism, policy)) {
    return refusal("unknown-mechanism", C504UnknownMechanism);
  }
  if (needsTls(mechanism, policy)) {
    return refusal("encryption-required", C504EncryptionRequired);
  }
  return { ok: true, mechanism, info: MECHANISM_INFO[mechanism] };
}
