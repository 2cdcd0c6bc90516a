/**
 * PLAIN (RFC 4616) message parsing and LOGIN (draft-murchison-sasl-login) helpers.
 *
 * Both send the password in the clear, so the server offers them only under TLS unless configured
 * otherwise (see mechanisms.ts). No SASLprep (RFC 4013) is applied: strings are compared as the exact
 * UTF-8 the client sent, which is stricter than SASLprep and never matches more than it would.
 *
 * @module
 */

import { decodeBase64Strict } from "./base64.ts";

/** `334 ` text of the LOGIN username prompt: base64 of `Username:`. */
export const LOGIN_USERNAME_PROMPT = "VXNlcm5hbWU6";

/** `334 ` text of the LOGIN password prompt: base64 of `Password:`. */
export const LOGIN_PASSWORD_PROMPT = "UGFzc3dvcmQ6";

/** Why a PLAIN or LOGIN response was refused. */
export type SaslFailureReason =
  /** Not strict base64: answer `501 5.5.2` (RFC 4954 4). */
  | "bad-base64"
  /** Wrong shape, invalid UTF-8, empty field, or stray NUL: answer `535 5.7.8`. */
  | "malformed"
  /** Authorisation identity differs from the authentication identity; proxy authorisation is not offered. */
  | "authzid-mismatch";

/** Result of {@link parsePlainMessage} / {@link parsePlainResponse}. */
export type PlainCredentials =
  | { readonly ok: true; readonly authcid: string; readonly password: string }
  | { readonly ok: false; readonly reason: SaslFailureReason };

/** Result of {@link parseLoginResponse}. */
export type LoginField =
  | { readonly ok: true; readonly value: string }
  | { readonly ok: false; readonly reason: Exclude<SaslFailureReason, "authzid-mismatch"> };

const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// Identities end up in logs, Received headers and the status API; forbid C0 controls and DEL there.
// Passwords may contain them (RFC 4616 UTF8-SAFE excludes only NUL).
// deno-lint-ignore no-control-regex
const IDENTITY_CONTROL_RE = /[\u0000-\u001f\u007f]/;

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Parse a decoded PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 2).
 *
 * - exactly two NULs (a third would have to be inside a field, which RFC 4616 forbids);
 * - each field valid UTF-8; authcid and passwd non-empty; no length cap here beyond what the caller's
 *   line limit imposes, so the RFC 4616 minimum of 255 octets per field is met;
 * - an authzid, when present, must equal authcid: we do not support acting on behalf of someone else.
 */
export function parsePlainMessage(message: Uint8Array): PlainCredentials {
  const first = message.indexOf(0);
  const second = first < 0 ? -1 : message.indexOf(0, first + 1);
  if (first < 0 || second < 0 || message.indexOf(0, second + 1) >= 0) {
    return { ok: false, reason: "malformed" };
  }
  const authzid = decodeUtf8(message.subarray(0, first));
  const authcid = decodeUtf8(message.subarray(first + 1, second));
  const password = decodeUtf8(message.subarray(second + 1));
  if (authzid === null || authcid === null || password === null) return { ok: false, reason: "malformed" };
  if (authcid.length === 0 || password.length === 0) return { ok: false, reason: "malformed" };
  if (IDENTITY_CONTROL_RE.test(authcid) || IDENTITY_CONTROL_RE.test(authzid)) {
    return { ok: false, reason: "malformed" };
  }
  // RFC 4616 2: an empty authzid means "derive it from authcid"; a different one is proxy authorisation.
  if (authzid.length > 0 && authzid !== authcid) return { ok: false, reason: "authzid-mismatch" };
  return { ok: true, authcid, password };
}

/** Decode a base64 PLAIN response line (strict base64, RFC 4954 4) and parse it. */
export function parsePlainResponse(base64Line: string): PlainCredentials {
  const bytes = decodeBase64Strict(base64Line);
  if (bytes === null) return { ok: false, reason: "bad-base64" };
  return parsePlainMessage(bytes);
}

/**
 * Decode one LOGIN answer (username or password): strict base64 of non-empty UTF-8 without NUL. For the
 * username, control characters are also refused (pass `kind: "username"`).
 */
export function parseLoginResponse(base64Line: string, kind: "username" | "password"): LoginField {
  const bytes = decodeBase64Strict(base64Line);
  if (bytes === null) return { ok: false, reason: "bad-base64" };
  if (bytes.length === 0 || bytes.indexOf(0) >= 0) return { ok: false, reason: "malformed" };
  const value = decodeUtf8(bytes);
  if (value === null) return { ok: false, reason: "malformed" };
  if (kind === "username" && IDENTITY_CONTROL_RE.test(value)) return { ok: false, reason: "malformed" };
  return { ok: true, value };
}
