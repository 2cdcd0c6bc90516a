/**
 * The AUTH exchange of the ODMR port (RFC 2645 5.1, RFC 4954): CRAM-MD5 (RFC 2195), and PLAIN and LOGIN
 * where the mechanism policy allows them; responses are verified behind the failure throttle
 * (docs/security.md), with the same work and the same `535 5.7.8` for every kind of refusal.
 *
 * @module
 */

import type { Config } from "../config/fields.ts";
import type { Logger } from "../log/logger.ts";
import type { Connection } from "../net/connection.ts";
import type { Account, Queue } from "../queue/queue.ts";
import type { RelayState } from "../relay_state.ts";
import {
  C235AuthSucceeded,
  C334Challenge,
  C421TooManyErrors,
  C454AuthTemporaryFailure,
  C500AuthLineTooLong,
  C501AuthAborted,
  C501BadBase64,
  C501InitialResponseNotAllowed,
  C535AuthFailed,
} from "../smtp/reply_codes.ts";
import type { AuthThrottle } from "./sasl/auth_throttle.ts";
import { encodeBase64 } from "./sasl/base64.ts";
import { makeChallenge, parseCramMd5Response, verifyCramMd5 } from "./sasl/cram_md5.ts";
import { checkMechanism, type MechanismPolicy } from "./sasl/mechanisms.ts";
import { verifyPassword } from "./sasl/password.ts";
import {
  LOGIN_PASSWORD_PROMPT,
  LOGIN_USERNAME_PROMPT,
  parseLoginResponse,
  parsePlainResponse,
} from "./sasl/plain.ts";
import type { Effect, HandlerResult } from "./session.ts";

/** RFC 4954 4: lines in the AUTH exchange may be up to 12288 octets (plus CRLF). */
export const AUTH_LINE_LIMIT = 12288 + 2;

const ENCODER = new TextEncoder();

/** What the AUTH exchange needs from the relay. */
export interface OdmrAuthDeps {
  config: Pick<Config, "hostname">;
  store: Pick<Queue, "findAccount">;
  state: Pick<RelayState, "authFailures">;
  logger: Logger;
  throttle: AuthThrottle;
  /** A CRAM-MD5 secret and a scrypt hash that match nothing, for unknown users (equal work). */
  dummyCramSecret: string;
  dummyPasswordHash: string;
  sleep?: (ms: number) => Promise<void>;
}

/** One session's AUTH exchanges and its failure count. */
export class OdmrAuthentication {
  readonly #deps: OdmrAuthDeps;
  readonly #conn: Connection;
  readonly #onSuccess: (account: Account) => void;
  #authFailures = 0;

  constructor(deps: OdmrAuthDeps, conn: Connection, onSuccess: (account: Account) => void) {
    this.#deps = deps;
    this.#conn = conn;
    this.#onSuccess = onSuccess;
  }

  /** `AUTH mechanism [initial-response]` (RFC 4954 4), after EHLO and before a successful AUTH. */
  begin(arg: string, policy: MechanismPolicy): HandlerResult | Promise<HandlerResult> {
    const ip = this.#conn.remoteAddress;
    if (this.#deps.throttle.isBlocked(ip)) {
      this.#deps.state.authFailures.inc("ip-blocked");
      return { reply: C454AuthTemporaryFailure };
    }
    const [name = "", initial] = arg.split(/\s+/, 2);
    const verdict = checkMechanism(name, policy);
    if (!verdict.ok) {
      return { reply: { code: verdict.code, enhanced: verdict.enhanced, lines: [verdict.text] } };
    }
    if (initial !== undefined && initial.length > AUTH_LINE_LIMIT) return { reply: C500AuthLineTooLong };
    switch (verdict.mechanism) {
      case "CRAM-MD5": {
        // RFC 2195: the server speaks first, so an initial response is a protocol error.
        if (initial !== undefined) return { reply: C501InitialResponseNotAllowed };
        const challenge = makeChallenge(this.#deps.config.hostname); // unique and used once
        return this.#challenge(encodeBase64(challenge), (line) => this.#cramResponse(challenge, line));
      }
      case "PLAIN":
        // RFC 4954 4: "=" is an empty initial response.
        if (initial !== undefined) return this.#plainResponse(initial === "=" ? "" : initial);
        return this.#challenge("", (line) => this.#plainResponse(line));
      case "LOGIN": {
        const username = (userLine: string): HandlerResult | Promise<HandlerResult> => {
          const user = parseLoginResponse(userLine, "username");
          if (!user.ok) {
            return user.reason === "bad-base64" ? { reply: C501BadBase64 } : this.#failed(null, "malformed");
          }
          return this.#challenge(LOGIN_PASSWORD_PROMPT, (passLine) => {
            const pass = parseLoginResponse(passLine, "password");
            if (!pass.ok) {
              return pass.reason === "bad-base64"
                ? { reply: C501BadBase64 }
                : this.#failed(user.value, "malformed");
            }
            return this.#checkPassword(user.value, pass.value);
          });
        };
        // Clients may send the username as an initial response (RFC 4954 4 allows one for any
        // mechanism; src/server/sasl/mechanisms.ts): then only the password is asked for.
        if (initial !== undefined) return username(initial === "=" ? "" : initial);
        return this.#challenge(LOGIN_USERNAME_PROMPT, username);
      }
    }
  }

  #challenge(base64: string, next: (line: string) => Promise<HandlerResult> | HandlerResult): HandlerResult {
    const effect: Effect = {
      kind: "continue",
      maxLength: AUTH_LINE_LIMIT,
      tooLong: C500AuthLineTooLong,
      next: (line) => (line === "*" ? { reply: C501AuthAborted } : next(line)),
    };
    return { reply: C334Challenge(base64), effect };
  }

  async #cramResponse(challenge: string, line: string): Promise<HandlerResult> {
    const response = parseCramMd5Response(line);
    if (!response.ok) {
      return response.reason === "bad-base64" ? { reply: C501BadBase64 } : this.#failed(null, "malformed");
    }
    return await this.#verify(response.username, "CRAM-MD5", (account) =>
      // Same work for unknown users: verify against a secret that matches nothing.
      verifyCramMd5(account?.cramMd5Secret ?? this.#deps.dummyCramSecret, challenge, response.digest));
  }

  #plainResponse(line: string): HandlerResult | Promise<HandlerResult> {
    const credentials = parsePlainResponse(line);
    if (!credentials.ok) {
      return credentials.reason === "bad-base64" ? { reply: C501BadBase64 } : this.#failed(null, "malformed");
    }
    return this.#checkPassword(credentials.authcid, credentials.password);
  }

  #checkPassword(username: string, password: string): Promise<HandlerResult> {
    return this.#verify(
      username,
      "PLAIN",
      (account) =>
        verifyPassword(account?.passwordHash ?? this.#deps.dummyPasswordHash, ENCODER.encode(password)),
    );
  }

  /**
   * Checks a response naming `username` (docs/security.md). In this order: an address over its budget
   * is refused before anything is checked (again here, because challenges can be fetched in parallel);
   * the delay earned by recent failures is waited BEFORE verifying, so a right and a wrong secret wait
   * alike and hanging up early gains nothing; a (name, address) pair that is locked is refused without
   * checking the secret, counted like a wrong one (no oracle). Unknown user, disabled account, wrong
   * secret and lock all get the same `535 5.7.8` after the same work.
   */
  async #verify(
    username: string,
    mechanism: string,
    check: (account: Account | null) => boolean | Promise<boolean>,
  ): Promise<HandlerResult> {
    const { throttle, state } = this.#deps;
    const ip = this.#conn.remoteAddress;
    if (throttle.isBlocked(ip)) {
      state.authFailures.inc("ip-blocked");
      return { reply: C454AuthTemporaryFailure };
    }
    const delay = throttle.delayMsFor(ip, username);
    if (delay > 0) await (this.#deps.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))))(delay);
    if (throttle.isLocked(username, ip)) return this.#failed(username, "locked", delay);
    let account: Account | null;
    try {
      account = await this.#deps.store.findAccount(username);
    } catch (error) {
      // The accounts cannot be read now (database unreachable): a temporary failure, try again later
      // (RFC 4954 6: 454 4.7.0), not a failed attempt that counts towards a lockout.
      this.#deps.logger.error("AUTH: accounts unavailable", { error: String(error) });
      return { reply: C454AuthTemporaryFailure };
    }
    const ok = await check(account);
    const refusal = !account ? "unknown-user" : !ok ? "bad-secret" : account.disabled ? "disabled" : null;
    if (refusal) return this.#failed(username, refusal, delay);
    return this.#succeeded(account!, mechanism);
  }

  #succeeded(account: Account, mechanism: string): HandlerResult {
    this.#onSuccess(account);
    this.#deps.throttle.recordSuccess(this.#conn.remoteAddress, account.username);
    this.#deps.logger.info("authenticated", { user: account.username, mechanism, tls: this.#conn.isTls });
    return { reply: C235AuthSucceeded };
  }

  /** A failed AUTH naming `username` (null: none could be read): counted, logged, `535` or `421`. */
  #failed(username: string | null, reason: string, delayedMs = 0): HandlerResult {
    const { throttle, state, logger } = this.#deps;
    throttle.recordFailure(this.#conn.remoteAddress, username ?? undefined);
    this.#authFailures++;
    state.authFailures.inc(reason);
    logger.info("authentication failed", { user: username ?? undefined, reason, delayMs: delayedMs });
    if (throttle.shouldDisconnect(this.#authFailures)) {
      return { reply: C421TooManyErrors(this.#deps.config.hostname), effect: { kind: "close" } };
    }
    return { reply: C535AuthFailed };
  }
}
