/**
 * Who may call the HTTP API (docs/security.md#http-api). The rules:
 *
 * - `/healthz` is always open (a liveness probe carries no secret).
 * - Read-only endpoints (`/`, `/status`, `/metrics`, `/readyz`): when `httpToken` is configured,
 *   the token is required. When none is configured they are open, but only on a loopback
 *   listener: the config refuses a public `httpListen` without a token, and we refuse again here
 *   so a mistake elsewhere cannot expose the queue's domain list.
 * - Administration (queue list/show/delete/bounce, domain hold/release) ALWAYS requires the token.
 *   With none configured it answers 403 and says to configure `httpToken`: no credential could
 *   make such a request succeed, so 401 would invite retrying.
 *
 * The token travels as `Authorization: Bearer <token>`. Read-only GETs also accept HTTP Basic
 * with the token as the password, so a browser can open the status page (it prompts on the 401).
 * Administration takes Bearer only: browsers replay cached Basic credentials on cross-site
 * requests, which would let any web page POST a bounce (CSRF); they never add a Bearer header.
 *
 * With no token configured, a request whose Host is not a loopback name is refused: otherwise a
 * web page could read the open loopback API through DNS rebinding.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { isLoopback } from "../net/loopback.ts";
import { errorResponse } from "./errors.ts";

/** What the auth checks need to know about the app. */
export interface AuthConfig {
  /** The configured bearer token, or null. */
  token: string | null;
  /** True when the HTTP listener is bound to a loopback address. */
  listenerIsLoopback: boolean;
}

/**
 * Compares two secrets in time independent of where they differ. Hashing first makes both inputs
 * the same length, so the comparison does not leak the token's length either.
 */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}

/** The credential in an Authorization header: Bearer always, Basic's password when `allowBasic`. */
export function credentialOf(header: string | undefined, allowBasic: boolean): string | null {
  if (!header) return null;
  const bearer = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1]!;
  if (!allowBasic) return null;
  const basic = /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) return null;
  let decoded: string;
  try {
    decoded = new TextDecoder().decode(Uint8Array.from(atob(basic[1]!), (ch) => ch.charCodeAt(0)));
  } catch {
    return null; // malformed base64: no credential
  }
  const colon = decoded.indexOf(":");
  return colon < 0 ? null : decoded.slice(colon + 1);
}

/**
 * True when a Host header (`name`, `name:port`, `[v6]` or `[v6]:port`) names this machine's loopback
 * (the rule is src/net/loopback.ts).
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d+$/, "");
  // An IPv6 literal without brackets is not a Host header (RFC 9110 7.2, RFC 3986 3.2.2).
  return (name.startsWith("[") || !name.includes(":")) && isLoopback(name);
}

function unauthorized(c: Context, basic: boolean): Response {
  // RFC 6750 3: a Bearer challenge; the Basic one makes browsers prompt for the status page.
  c.header(
    "WWW-Authenticate",
    basic ? 'Basic realm="odmr-relay", charset="UTF-8"' : 'Bearer realm="odmr-relay"',
  );
  return errorResponse(c, 401, "Missing or wrong bearer token (Authorization: Bearer <httpToken>)");
}

/** Middleware for read-only endpoints. */
export function requireReader(config: AuthConfig): MiddlewareHandler {
  return async (c, next) => {
    if (config.token === null) {
      if (!config.listenerIsLoopback) {
        return errorResponse(c, 403, "Configure httpToken: the HTTP API is not on loopback");
      }
      if (!isLoopbackHost(c.req.header("host") ?? new URL(c.req.url).host)) {
        return errorResponse(c, 403, "Host is not a loopback name; configure httpToken for remote access");
      }
      return await next();
    }
    const given = credentialOf(c.req.header("authorization"), true);
    if (given === null || !tokensEqual(given, config.token)) return unauthorized(c, true);
    return await next();
  };
}

/** Middleware for administration: the token is always required. */
export function requireAdmin(config: AuthConfig): MiddlewareHandler {
  return async (c, next) => {
    if (config.token === null) {
      return errorResponse(
        c,
        403,
        "Queue administration needs a token: set httpToken in the relay's configuration",
      );
    }
    const given = credentialOf(c.req.header("authorization"), false);
    if (given === null || !tokensEqual(given, config.token)) return unauthorized(c, false);
    return await next();
  };
}
