/**
 * The ODMR provider protocol (port 366, RFC 2645): EHLO, STARTTLS, AUTH, ATRN, QUIT. After a
 * successful ATRN the connection turns: the customer greets with 220 and this relay becomes the
 * SMTP client on the SAME socket and the SAME buffered reader (src/client/), with TLS kept.
 *
 * Decisions (docs/protocol.md#odmr-port-366 and #fetchmail):
 * - CRAM-MD5 (RFC 2195) is always offered: it is mandatory in RFC 2645 and the only mechanism
 *   fetchmail speaks. PLAIN and LOGIN are offered only under TLS unless configured otherwise.
 * - Unknown user, disabled account and wrong secret all get the same `535 5.7.8` after the same
 *   work (a dummy CRAM-MD5 check / dummy scrypt hash), after a delay that grows with the recent failures
 *   of the address and of the name (src/server/sasl/auth_throttle.ts, docs/security.md).
 * - ATRN for a domain the account does not own (or that does not exist) refuses the WHOLE request
 *   with the same `450 4.7.1 ATRN request refused` whatever the reason (no enumeration).
 * - A domain already being delivered in another session: `451 4.3.0 Unable to process ATRN request
 *   now`. fetchmail maps 451 to "temporary, skip this time" (PS_EXCLUDE), while 450 would be
 *   reported as a protocol error; the RFC's 450 rate-limit clause would fit too, but 451 is kinder to
 *   the client most customers run.
 * - Held domains (administration) keep their mail: ATRN treats them as having none, so a request
 *   touching only held domains gets `453 You have no mail` (fetchmail: success, nothing to do).
 * - Every ATRN reply is a single line (fetchmail reads one line).
 * - Bytes pipelined after ATRN: the session loop refuses with 554 5.5.0 and closes
 *   (docs/protocol.md#synchronization).
 */
import { type Clock, systemClock } from "../clock.ts";
import type { Config } from "../config/fields.ts";
import type { Logger } from "../log/logger.ts";
import type { Connection } from "../net/connection.ts";
import type { Account, DomainLeaseTable, Queue } from "../queue/queue.ts";
import type { RelayState } from "../relay_state.ts";
import { buildEhloReply, WATCH_KEYWORD } from "../smtp/ehlo.ts";
import { parseAtrnDomains } from "../smtp/domain.ts";
import {
  C214Help,
  C220ReadyToStartTls,
  C221Bye,
  C250AtrnReversing,
  C250Ok,
  C250WatchAccepted,
  C450AtrnRateLimited,
  C450AtrnRefused,
  C451AtrnUnavailable,
  C452TooManyWatching,
  C453NoMail,
  C500SyntaxError,
  C501NoArguments,
  C501SyntaxError,
  C502NotImplemented,
  C503AlreadyAuthenticated,
  C503NeedHelo,
  C530AuthRequired,
  C554TlsAlreadyActive,
  type Reply,
  SmtpError,
} from "../smtp/reply_codes.ts";
import type { SlidingWindowLimit } from "./rate_limit.ts";
import { OdmrAuthentication } from "./odmr_auth.ts";
import type { AuthThrottle } from "./sasl/auth_throttle.ts";
import { authEhloKeyword, type MechanismPolicy } from "./sasl/mechanisms.ts";
import type { Handler, HandlerResult, Protocol } from "./session.ts";

/** What a delivery over the turned connection reports (for the ATRN session record). */
export interface DeliveryReport {
  delivered: number;
  deferred: number;
  failed: number;
  /** "turned": the customer greeted and the session ran; "error": it failed before or during. */
  outcome: "turned" | "error";
  detail: string | null;
}

/** How an ATRN ended, as recorded in the session history. */
type AtrnOutcome = "turned" | "error" | "no-mail" | "refused" | "busy";

/** Delivers the queued mail of `domains` over `conn`, which is now the customer's SMTP server. */
export type Deliver = (
  conn: Connection,
  domains: string[],
  logger: Logger,
  session: TurnedSession,
) => Promise<DeliveryReport>;

/** What the delivery knows about the session it runs in. */
export interface TurnedSession {
  /** Connection id (logs, the list of watching sessions). */
  cid: string;
  username: string;
  /** Extends the lease on the session's domains; false when another session holds them now. */
  renewLease(): Promise<boolean>;
  /** The granted domains deliverable now (holds read again); null when the account may no longer collect. */
  currentDomains(): Promise<string[] | null>;
  /** Marks the session as waiting with nothing in flight (a watch), or delivering again. */
  setIdle(waiting: boolean): Promise<void>;
}

/** What an ODMR session needs from the relay. */
export interface OdmrDeps {
  config: Config;
  store: Queue;
  state: RelayState;
  logger: Logger;
  leases: DomainLeaseTable;
  throttle: AuthThrottle;
  /** ATRN commands per account (config `atrnMaxPerMinute`). */
  atrnRateLimit: SlidingWindowLimit;
  /** Push delivery: whether a session may ask for it now (XWATCH); absent: not offered. */
  watchAccepting?: () => boolean;
  tlsAvailable: boolean;
  /** A CRAM-MD5 secret and a scrypt hash that match nothing, for unknown users (equal work). */
  dummyCramSecret: string;
  dummyPasswordHash: string;
  deliver: Deliver;
  sleep?: (ms: number) => Promise<void>;
  /** The clock of session records and polls (default: the system clock). */
  clock?: Clock;
}

/** One ODMR session's protocol state and handler table. */
export class OdmrProtocol implements Protocol {
  readonly handlers: Record<string, Handler>;
  readonly unknownCommand = C500SyntaxError;
  readonly #deps: OdmrDeps;
  readonly #conn: Connection;
  readonly #cid: string;
  #ehlo = false;
  #account: Account | null = null;
  readonly #authentication: OdmrAuthentication;
  /** The customer asked for push delivery (XWATCH): ATRN turns even with no mail waiting. */
  #watchRequested = false;

  constructor(deps: OdmrDeps, conn: Connection, cid: string) {
    this.#deps = deps;
    this.#conn = conn;
    this.#cid = cid;
    this.#authentication = new OdmrAuthentication(deps, conn, (account) => {
      this.#account = account;
    });
    const notHere = () => ({ reply: C502NotImplemented });
    this.handlers = {
      EHLO: (arg) => this.#hello(arg),
      // RFC 2645 5.1.1: AUTH and ATRN are extensions, so the customer must use EHLO.
      HELO: notHere,
      AUTH: (arg) => this.#auth(arg),
      ATRN: (arg) => this.#atrnOr451(arg),
      [WATCH_KEYWORD]: (arg) => this.#watch(arg),
      STARTTLS: (arg) => this.#startTls(arg),
      NOOP: () => ({ reply: C250Ok }),
      RSET: (arg) => ({ reply: arg ? C501NoArguments("RSET") : C250Ok }),
      HELP: () => ({ reply: C214Help }),
      QUIT: () => ({ reply: C221Bye, effect: { kind: "close" } }),
      // RFC 2645 5.4: anything but EHLO, AUTH, ATRN and QUIT MAY be refused with 502.
      MAIL: notHere,
      RCPT: notHere,
      DATA: notHere,
      VRFY: notHere,
      EXPN: notHere,
      ETRN: notHere,
      TURN: notHere,
      BDAT: notHere,
    };
  }

  mustEndBatch(): boolean {
    return true;
  }

  pipeliningAllowed(): boolean {
    // PIPELINING is not offered on the ODMR port (docs/protocol.md#ehlo-keywords).
    return false;
  }

  isJunk(verb: string): boolean {
    return verb === "NOOP" || verb === "RSET" || verb === "HELP" || verb === WATCH_KEYWORD;
  }

  authenticated(): boolean {
    return this.#account !== null;
  }

  protectedFromEviction(): boolean {
    // Only a customer who proved the secret keeps its slot when the listener is full.
    return this.#account !== null;
  }

  redact(verb: string): boolean {
    return verb === "AUTH";
  }

  afterTls(): void {
    // RFC 3207 4.2: forget the EHLO; a successful AUTH cannot have happened before (STARTTLS
    // after AUTH is refused below), so there is no identity to forget.
    this.#ehlo = false;
    // A request made before TLS may have been injected by someone on the path.
    this.#watchRequested = false;
  }

  #policy(): MechanismPolicy {
    const c = this.#deps.config;
    return {
      tlsActive: this.#conn.isTls,
      allowPlainWithoutTls: c.odmrAllowPlainWithoutTls,
      cramMd5Enabled: this.#conn.isTls || c.odmrAllowCramMd5WithoutTls,
    };
  }

  #hello(arg: string): HandlerResult {
    if (arg.trim() === "" || /\s/.test(arg.trim())) return { reply: C501SyntaxError };
    this.#ehlo = true;
    // RFC 2645 5.1.1: the EHLO reply MUST list AUTH and ATRN.
    const keywords: string[] = [];
    const auth = authEhloKeyword(this.#policy());
    if (auth) keywords.push(auth);
    if (this.#deps.tlsAvailable && !this.#conn.isTls) keywords.push("STARTTLS");
    keywords.push("ATRN", "ENHANCEDSTATUSCODES");
    if (this.#deps.watchAccepting?.()) keywords.push(WATCH_KEYWORD);
    return { reply: buildEhloReply(this.#deps.config.hostname, "ODMR service ready", keywords) };
  }

  #startTls(arg: string): HandlerResult {
    if (!this.#deps.tlsAvailable) return { reply: C502NotImplemented };
    if (this.#conn.isTls) return { reply: C554TlsAlreadyActive };
    if (arg) return { reply: C501NoArguments("STARTTLS") };
    // RFC 3207 4.2 would make us forget the identity; simpler to refuse STARTTLS after AUTH.
    if (this.#account) return { reply: C503AlreadyAuthenticated };
    return { reply: C220ReadyToStartTls, effect: { kind: "startTls" } };
  }

  /** XWATCH (a local extension, src/smtp/ehlo.ts): the next ATRN turns even when no mail waits. */
  #watch(arg: string): HandlerResult {
    if (!this.#ehlo) return { reply: C503NeedHelo };
    // Only a customer that proved its secret may ask for a session that holds its domains open.
    if (!this.#account) return { reply: C530AuthRequired };
    if (arg) return { reply: C501NoArguments(WATCH_KEYWORD) };
    if (!this.#deps.watchAccepting) return { reply: C502NotImplemented };
    if (!this.#deps.watchAccepting()) return { reply: C452TooManyWatching };
    this.#watchRequested = true;
    return { reply: C250WatchAccepted };
  }

  // ------------------------------------------------------------------- AUTH

  #auth(arg: string): HandlerResult | Promise<HandlerResult> {
    if (!this.#ehlo) return { reply: C503NeedHelo };
    if (this.#account) return { reply: C503AlreadyAuthenticated }; // RFC 4954 4
    return this.#authentication.begin(arg, this.#policy());
  }

  // ------------------------------------------------------------------- ATRN

  /** RFC 2645 5.2.1: when access cannot be checked now (database busy or failing), 451. */
  async #atrnOr451(arg: string): Promise<HandlerResult> {
    try {
      return await this.#atrn(arg);
    } catch (error) {
      if (error instanceof SmtpError) throw error;
      this.#deps.logger.error("ATRN failed", { error: String(error) });
      return { reply: C451AtrnUnavailable };
    }
  }

  async #atrn(arg: string): Promise<HandlerResult> {
    const { store, leases, config, logger, state } = this.#deps;
    // RFC 2645 5.2.1 / 7: ATRN before AUTH MUST be refused with 530.
    const account = this.#account;
    if (!account) return { reply: C530AuthRequired };
    if (!this.#deps.atrnRateLimit.tryTake(String(account.id))) {
      // Over the per-account rate: answered without touching the database (docs/security.md).
      state.atrnSessions.inc("rate-limited");
      logger.info("atrn", { user: account.username, outcome: "rate-limited" });
      return { reply: C450AtrnRateLimited };
    }
    const startedAt = this.#now();
    // RFC 2645 5.2.1: comma-separated domains; none means every domain of the account.
    const requested = parseAtrnDomains(arg, { maxDomains: config.atrnMaxDomains });
    const owned = new Map((await store.domainsOfAccount(account.id)).map((d) => [d.name, d]));
    const domains = requested.length > 0 ? requested : [...owned.keys()];
    // Every ATRN, refused or turned, goes into the session history (for /status and metrics).
    const save = async (report: Omit<DeliveryReport, "outcome"> & { outcome: AtrnOutcome }) => {
      state.atrnSessions.inc(report.outcome);
      await store.recordAtrnSession({
        accountId: account.id,
        username: account.username,
        domains,
        peer: this.#conn.remoteAddress,
        tls: this.#conn.isTls,
        startedAt,
        endedAt: this.#now(),
        ...report,
      });
    };
    const record = async (outcome: "no-mail" | "refused" | "busy", reply: Reply, detail: string) => {
      // Only sessions that turned become history rows: a poll that found no mail is remembered as the
      // domains' last poll, and refused or busy polls only in the log and the metrics, so a customer
      // polling hard cannot grow the database (docs/security.md).
      state.atrnSessions.inc(outcome);
      if (outcome === "no-mail") {
        await store.recordPoll(account.id, domains, this.#conn.remoteAddress, this.#now());
      }
      logger.info("atrn", {
        user: account.username,
        domains: domains.slice(0, 10).join(",") + (domains.length > 10 ? ",..." : ""),
        outcome,
        code: reply.code,
        detail,
      });
      return { reply };
    };
    // RFC 2645 5.2.1: one domain the identity may not access refuses the WHOLE request, and the
    // text is the same whether the domain is someone else's or unknown (no enumeration).
    if (domains.length === 0 || domains.some((d) => !owned.has(d))) {
      return await record("refused", C450AtrnRefused, "domain not owned or unknown");
    }
    const deliverable = domains.filter((d) => !owned.get(d)!.hold);
    // An index probe per domain: the answer comes in milliseconds (fetchmail gives up at 300 s).
    // A customer that asked to watch gets the turn even with nothing queued: it waits for new mail.
    if (!this.#watchRequested && !(await store.hasQueuedMail(deliverable))) {
      return await record("no-mail", C453NoMail, "no queued mail");
    }
    const owner = this.#cid;
    // After the turn nothing can be answered any more: a queue that fails now is only logged (a lease
    // that cannot be released expires by itself).
    const bestEffort = async (work: Promise<unknown>, what: string) => {
      try {
        await work;
      } catch (error) {
        logger.error(`${what} failed`, { error: String(error) });
      }
    };
    if (!(await leases.tryAcquire(domains, owner, config.atrnSessionTimeout + 60_000))) {
      return await record("busy", C451AtrnUnavailable, "domain busy in another session");
    }
    const run = async () => {
      const sessionLogger = logger.child({ atrn: domains.join(",") });
      let report: DeliveryReport;
      try {
        report = await this.#deps.deliver(this.#conn, deliverable, sessionLogger, {
          cid: owner,
          username: account.username,
          renewLease: () => leases.tryAcquire(domains, owner, config.atrnSessionTimeout + 60_000),
          currentDomains: async () => {
            const now = await store.findAccount(account.username);
            if (!now || now.disabled || now.id !== account.id) return null;
            const open = new Set(
              (await store.domainsOfAccount(account.id)).filter((d) => !d.hold).map((d) => d.name),
            );
            return domains.filter((d) => open.has(d));
          },
          setIdle: (waiting) => leases.setIdle(owner, waiting),
        });
      } catch (error) {
        sessionLogger.error("delivery failed", { error: String(error) });
        report = { delivered: 0, deferred: 0, failed: 0, outcome: "error", detail: "internal error" };
      } finally {
        await bestEffort(leases.release(owner), "releasing the domain lease");
      }
      state.recipients.inc("delivered", report.delivered);
      state.recipients.inc("deferred", report.deferred);
      state.recipients.inc("failed", report.failed);
      await bestEffort(save(report), "recording the ATRN session");
      sessionLogger.info("atrn session ended", { ...report, user: account.username });
      await this.#conn.close();
    };
    // The 250 could not be written (the customer is gone): free the domains at once and record it.
    const abandon = () => {
      void bestEffort(leases.release(owner), "releasing the domain lease");
      void bestEffort(
        save({
          delivered: 0,
          deferred: 0,
          failed: 0,
          outcome: "error",
          detail: "connection lost before the turn",
        }),
        "recording the ATRN session",
      );
    };
    return { reply: C250AtrnReversing, effect: { kind: "turn", run, abandon } };
  }

  #now(): number {
    return (this.#deps.clock ?? systemClock).now();
  }
}
