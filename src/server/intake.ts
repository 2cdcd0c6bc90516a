/**
 * The intake MX protocol (port 25, RFC 5321): accepts mail only for hosted domains and commits it
 * to the queue before answering 250. One handler per verb; the session loop (session.ts) does I/O.
 *
 * Policies chosen here (docs/protocol.md#intake-port-25, #hostile-input):
 * - Bare CR or LF: in a command, 500 and close (session.ts); in DATA, the message is read to the
 *   genuine CRLF.CRLF and refused with 550 5.6.0 (smtp/data_reader.ts). Never normalised.
 * - `MAIL FROM: <x>` with a space after the colon is accepted (RFC 2645's own example has it);
 *   a path without angle brackets is refused with 501 5.5.4.
 * - 8-bit data without BODY=8BITMIME is accepted and flagged (RFC 5321 2.4 allows either); the
 *   delivery side only sends it to customers that offer 8BITMIME.
 * - A bare `<Postmaster>` (no domain) is always accepted (RFC 5321 4.5.1): it goes to
 *   `postmasterAddress` when that is in a hosted domain, else into the relay's own postmaster mailbox
 *   (src/queue/postmaster.ts); `postmaster@` every hosted domain is always accepted too.
 * - No AUTH and no ATRN here: both answer 502 and neither is advertised (RFC 5321 4.2.4).
 */
import { type Clock, systemClock } from "../clock.ts";
import { statfsSync } from "node:fs";
import type { Config } from "../config/fields.ts";
import type { Logger } from "../log/logger.ts";
import type { Connection } from "../net/connection.ts";
import { SpoolWriter } from "../queue/spool.ts";
import {
  type BodySource,
  type IncomingMessage,
  type IncomingRecipient,
  type Queue,
  QuotaExceededError,
} from "../queue/queue.ts";
import type { RelayState } from "../relay_state.ts";
import { type Mailbox, parseMailFrom, parseRcptTo } from "../smtp/address.ts";
import { DataReader, dataRejection } from "../smtp/data_reader.ts";
import { buildEhloReply } from "../smtp/ehlo.ts";
import { POSTMASTER_MAILBOX } from "../queue/postmaster.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import { type MailParams, parseMailParams, parseRcptParams } from "../smtp/params.ts";
import { buildReceivedHeader, ReceivedHeaderCounter, receivedProtocol } from "../smtp/received.ts";
import {
  C214Help,
  C220ReadyToStartTls,
  C221Bye,
  C250Helo,
  C250Ok,
  C250Queued,
  C250RecipientOk,
  C250SenderOk,
  C252CannotVrfy,
  C354StartInput,
  C421MessageTooBig,
  C421ShuttingDown,
  C451LocalError,
  C452InsufficientStorage,
  C452QuotaExceeded,
  C452TooManyRecipients,
  C500SyntaxError,
  C501ArgumentRequired,
  C501HeloSyntax,
  C501NoArguments,
  C502NotImplemented,
  C503NeedHelo,
  C503NeedMail,
  C503NeedRcpt,
  C503NestedMail,
  C550RelayDenied,
  C550RoutingSyntax,
  C550UnknownRecipient,
  C552TooBig,
  C554NoValidRecipients,
  C554TlsAlreadyActive,
  C554TooManyHops,
  type Reply,
  SmtpError,
} from "../smtp/reply_codes.ts";
import type { Handler, HandlerResult, Protocol } from "./session.ts";

/** What an intake session needs from the relay. */
export interface IntakeDeps {
  config: Config;
  store: Queue;
  state: RelayState;
  logger: Logger;
  spoolDir: string;
  /** True when STARTTLS can be offered (a certificate is configured). */
  tlsAvailable: boolean;
  /** True once the relay is shutting down: MAIL gets 421. */
  shuttingDown(): boolean;
  /** Free bytes on the queue's file system (null when unknown). */
  freeSpace(): number | null;
  /**
   * Commits a message durably (resolves after the fsync'ed COMMIT). Default: `store.enqueue`;
   * the relay passes a GroupCommitter so concurrent sessions share fsyncs.
   */
  commit?: (message: IncomingMessage, body: BodySource) => Promise<number>;
  /** Told when a message starts and when it ends without a commit (group-commit batching). */
  dataStarted?: () => void;
  dataAbandoned?: () => void;
  /** The time of Received: headers and queue rows (default: the system clock). */
  clock?: Clock;
}

interface Transaction {
  from: Mailbox | null;
  params: MailParams;
  recipients: IncomingRecipient[];
  /** Some RCPT was refused (then DATA with none accepted is 554, not 503). */
  refusedRecipients: number;
}

const TEXT_ENCODER = new TextEncoder();
const SOFTWARE = "odmr-relay";

/** Free bytes on the file system holding `dir` (statfs), cached for a second. */
export function freeSpaceProbe(dir: string): () => number | null {
  let cached: { at: number; bytes: number | null } | null = null;
  return () => {
    const now = Date.now();
    if (cached && now - cached.at < 1000) return cached.bytes;
    let bytes: number | null;
    try {
      const s = statfsSync(dir);
      bytes = Number(s.bavail) * Number(s.bsize);
    } catch {
      bytes = null;
    }
    cached = { at: now, bytes };
    return bytes;
  };
}

/** One intake session's protocol state and handler table. */
export class IntakeProtocol implements Protocol {
  readonly handlers: Record<string, Handler>;
  readonly unknownCommand = C500SyntaxError;
  readonly #deps: IntakeDeps;
  readonly #conn: Connection;
  readonly #cid: string;
  #helo: string | null = null;
  #ehlo = false;
  #tx: Transaction | null = null;
  #txCount = 0;

  constructor(deps: IntakeDeps, conn: Connection, cid: string) {
    this.#deps = deps;
    this.#conn = conn;
    this.#cid = cid;
    this.handlers = {
      EHLO: (arg) => this.#hello(arg, true),
      HELO: (arg) => this.#hello(arg, false),
      MAIL: (arg) => this.#mail(arg),
      RCPT: (arg) => this.#rcpt(arg),
      DATA: (arg) => this.#data(arg),
      RSET: (arg) => this.#rset(arg),
      NOOP: () => ({ reply: C250Ok }),
      // RFC 5321 7.3: a server that does not verify answers 252.
      VRFY: (arg) => ({ reply: arg ? C252CannotVrfy : C501ArgumentRequired("VRFY", "<user or mailbox>") }),
      HELP: () => ({ reply: C214Help }),
      QUIT: () => ({ reply: C221Bye, effect: { kind: "close" } }),
      STARTTLS: (arg) => this.#startTls(arg),
      // Recognised but not offered here (RFC 5321 4.2.4; docs/protocol.md#ehlo-keywords).
      AUTH: () => ({ reply: C502NotImplemented }),
      ATRN: () => ({ reply: C502NotImplemented }),
      ETRN: () => ({ reply: C502NotImplemented }),
      TURN: () => ({ reply: C502NotImplemented }),
      EXPN: () => ({ reply: C502NotImplemented }),
      BDAT: () => ({ reply: C502NotImplemented }),
    };
  }

  mustEndBatch(verb: string): boolean {
    // RFC 2920 3.1: these end a pipelined group; STARTTLS especially (CVE-2011-0411).
    return ["EHLO", "HELO", "DATA", "STARTTLS", "QUIT", "NOOP", "VRFY", "EXPN", "HELP", "AUTH", "ATRN"]
      .includes(verb);
  }

  pipeliningAllowed(): boolean {
    return this.#ehlo;
  }

  isJunk(verb: string): boolean {
    return verb === "NOOP" || verb === "RSET" || verb === "VRFY" || verb === "HELP";
  }

  allowsNonAscii(verb: string): boolean {
    // RFC 6531 3.3: UTF-8 addresses in MAIL and RCPT once SMTPUTF8 is advertised (after EHLO).
    return this.#ehlo && (verb === "MAIL" || verb === "RCPT");
  }

  afterTls(): void {
    // RFC 3207 4.2: discard all knowledge from before TLS; the client must EHLO again.
    this.#helo = null;
    this.#ehlo = false;
    this.#tx = null;
  }

  #keywords(): string[] {
    const c = this.#deps.config;
    const keywords = [
      "PIPELINING",
      `SIZE ${c.smtpMaxMessageSize}`,
      "8BITMIME",
      "ENHANCEDSTATUSCODES",
      "SMTPUTF8",
      "DSN",
    ];
    // RFC 3207 4.2: never advertise STARTTLS once TLS is active.
    if (this.#deps.tlsAvailable && !this.#conn.isTls) keywords.push("STARTTLS");
    return keywords;
  }

  #hello(arg: string, ehlo: boolean): HandlerResult {
    const name = arg.trim();
    // RFC 5321 4.1.1.1: EHLO needs a domain or address literal. We accept any single token (names
    // are sanitised before they reach a header) and refuse only an empty or multi-word argument.
    if (name === "" || /\s/.test(name)) return { reply: C501HeloSyntax(ehlo ? "EHLO" : "HELO") };
    this.#helo = name;
    this.#ehlo = ehlo;
    this.#tx = null; // RFC 5321 4.1.4: EHLO resets like RSET.
    const host = this.#deps.config.hostname;
    return { reply: ehlo ? buildEhloReply(host, "Hello", this.#keywords()) : C250Helo(host) };
  }

  #mail(arg: string): HandlerResult {
    if (this.#helo === null) return { reply: C503NeedHelo };
    if (this.#tx) return { reply: C503NestedMail };
    if (this.#deps.shuttingDown()) {
      return { reply: C421ShuttingDown(this.#deps.config.hostname), effect: { kind: "close" } };
    }
    const parsed = parseMailFrom(arg, { smtputf8Allowed: this.#ehlo });
    const params = parseMailParams(parsed.params, {
      size: this.#ehlo,
      eightBitMime: this.#ehlo,
      smtputf8: this.#ehlo,
      dsn: this.#ehlo,
    });
    const max = this.#deps.config.smtpMaxMessageSize;
    // RFC 1870 6.1: a declared size over our fixed limit is a permanent 552.
    if (params.size !== undefined && params.size > max) throw this.#reject(C552TooBig, "declared-size");
    const free = this.#deps.freeSpace();
    const needed = this.#deps.config.smtpMinFreeSpace + (params.size ?? 0);
    if (free !== null && free < needed) {
      // RFC 1870 6.2 / RFC 5321 4.2.2: temporarily short of storage.
      this.#deps.logger.warn("low disk space: refusing mail", {
        freeBytes: free,
        floor: this.#deps.config.smtpMinFreeSpace,
      });
      throw this.#reject(C452InsufficientStorage, "low-disk");
    }
    this.#tx = { from: parsed.path, params, recipients: [], refusedRecipients: 0 };
    return { reply: C250SenderOk };
  }

  async #rcpt(arg: string): Promise<HandlerResult> {
    const tx = this.#tx;
    if (!tx) return { reply: C503NeedMail };
    try {
      const parsed = parseRcptTo(arg, { smtputf8Allowed: tx.params.smtputf8 });
      const params = parseRcptParams(parsed.params, { dsn: this.#ehlo });
      const path = parsed.path!;
      if (tx.recipients.length >= this.#deps.config.smtpMaxRecipients) {
        // RFC 5321 4.5.3.1.10: too many recipients is 452, and the client goes on with the rest later.
        throw this.#reject(C452TooManyRecipients, "too-many-recipients");
      }
      // RFC 5321 4.5.1: `<Postmaster>` without a domain is this server's postmaster and MUST be
      // accepted. It goes to postmasterAddress when that is in a hosted domain; otherwise it is kept in
      // the relay's own postmaster mailbox (src/queue/postmaster.ts forwards it to an outside
      // postmasterAddress).
      const target = path.domain === ""
        ? await this.#queueRead(() => this.#postmaster())
        : { address: path.address, domain: path.domainKey, localPart: path.localPart };
      // The store knows the postmaster mailbox too: always there, bounded by its quota (452 4.2.2).
      const verdict = await this.#queueRead(() =>
        this.#deps.store.recipientVerdict(target.domain, target.localPart, tx.params.size ?? 0)
      );
      if (verdict === "unknown-domain") throw this.#reject(C550RelayDenied, "relay-denied");
      if (verdict === "unknown-mailbox") throw this.#reject(C550UnknownRecipient, "unknown-mailbox");
      if (verdict === "over-quota") throw this.#reject(C452QuotaExceeded, "over-quota");
      if (verdict === "routing-syntax") throw this.#reject(C550RoutingSyntax, "routing-syntax");
      if (!tx.recipients.some((r) => r.address === target.address)) {
        tx.recipients.push({
          address: target.address,
          domain: target.domain,
          notify: params.notify ? params.notify.join(",") : null,
          orcpt: params.orcpt ? `${params.orcpt.addrType};${params.orcpt.address}` : null,
        });
      }
      return { reply: C250RecipientOk };
    } catch (error) {
      tx.refusedRecipients++;
      throw error;
    }
  }

  /** Where a bare `<Postmaster>` goes: postmasterAddress in a hosted domain, else the local mailbox. */
  async #postmaster(): Promise<{ address: string; domain: string; localPart: string }> {
    const address = this.#deps.config.postmasterAddress;
    const at = address?.lastIndexOf("@") ?? -1;
    const domain = at > 0 ? canonicalDomain(address!.slice(at + 1)) : null;
    if (address && domain !== null && await this.#deps.store.hasDomain(domain)) {
      // The A-label form: a U-label would make an ASCII message need SMTPUTF8 (RFC 6531 3.2).
      const localPart = address.slice(0, at);
      return { address: `${localPart}@${domain}`, domain, localPart };
    }
    return { address: "Postmaster", domain: POSTMASTER_MAILBOX, localPart: "Postmaster" };
  }

  /**
   * A queue read at RCPT time. When the queue cannot answer (the database is unreachable), the
   * recipient gets 451 4.3.0 and the session goes on: the sender retries later (RFC 5321 4.2.5, 4xx).
   */
  async #queueRead<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      if (error instanceof SmtpError) throw error;
      this.#deps.logger.error("queue unavailable at RCPT", { error: String(error) });
      throw this.#reject(C451LocalError, "queue-unavailable");
    }
  }

  #reject(reply: Reply, reason: string): SmtpError {
    this.#deps.state.messages.inc(`rejected-${reason}`);
    return new SmtpError(reply, { logReason: reason });
  }

  #rset(arg: string): HandlerResult {
    if (arg) return { reply: C501NoArguments("RSET") };
    this.#tx = null;
    return { reply: C250Ok };
  }

  #startTls(arg: string): HandlerResult {
    if (!this.#deps.tlsAvailable) return { reply: C502NotImplemented };
    if (this.#conn.isTls) return { reply: C554TlsAlreadyActive };
    if (arg) return { reply: C501NoArguments("STARTTLS") };
    return { reply: C220ReadyToStartTls, effect: { kind: "startTls" } };
  }

  #data(arg: string): HandlerResult {
    if (arg) return { reply: C501NoArguments("DATA") };
    const tx = this.#tx;
    if (!tx) return { reply: C503NeedMail };
    if (tx.recipients.length === 0) {
      // RFC 5321 3.3: 554 when every RCPT was refused, 503 when none was sent.
      return { reply: tx.refusedRecipients > 0 ? C554NoValidRecipients : C503NeedRcpt };
    }
    return {
      reply: C354StartInput,
      effect: { kind: "data", receive: (budget) => this.#receive(tx, budget) },
    };
  }

  /** Streams the message into the spool, checks it, commits it, and answers the final dot. */
  async #receive(tx: Transaction, budget: { remainingMs: () => number }): Promise<HandlerResult> {
    const { config, store, state, logger } = this.#deps;
    const now = new Date((this.#deps.clock ?? systemClock).now());
    const tid = `${this.#cid}.${++this.#txCount}`;
    this.#tx = null; // RFC 5321 4.1.1.4: the transaction ends with the reply to the final dot.
    const reader = new DataReader({
      maxSize: config.smtpMaxMessageSize,
      maxLineLength: config.smtpMaxDataLineLength,
    });
    const hops = new ReceivedHeaderCounter();
    const spool = new SpoolWriter(this.#deps.spoolDir);
    let submitted = false;
    this.#deps.dataStarted?.();
    try {
      // RFC 5321 4.4: our Received line goes on top; `for` only with exactly one recipient.
      spool.write(TEXT_ENCODER.encode(buildReceivedHeader({
        heloName: this.#helo ?? "unknown",
        remoteIp: this.#conn.remoteAddress,
        byHost: config.hostname,
        software: SOFTWARE,
        protocol: receivedProtocol({
          ehlo: this.#ehlo,
          tls: this.#conn.isTls,
          auth: false,
          utf8: tx.params.smtputf8,
        }),
        id: tid,
        recipients: tx.recipients.map((r) => r.address),
        date: now,
      })));
      let spoolError: unknown = null;
      for (;;) {
        // Each read waits at most smtpDataTimeout, and never past the whole-session cap: a client that
        // drips one byte at a time cannot hold the connection forever.
        const timeoutMs = Math.max(1, Math.min(config.smtpDataTimeout, budget.remainingMs()));
        const chunk = await this.#conn.readChunk({ timeoutMs });
        const result = reader.push(chunk);
        if (result.body.length > 0) {
          if (!hops.headerEnded) hops.push(result.body);
          if (!reader.stats.sizeExceeded && spoolError === null) {
            try {
              spool.write(result.body);
            } catch (error) {
              // Disk full or out of file handles: keep reading to the real end of the data so the
              // session stays in step, then refuse with a temporary error (the client retries).
              spoolError = error;
            }
          }
        }
        if (result.status === "abort") {
          state.messages.inc("rejected-size-abort");
          return { reply: C421MessageTooBig(config.hostname), effect: { kind: "close" } };
        }
        if (result.status === "done") {
          // RFC 2920: bytes after the final dot are the client's next pipelined command.
          if (result.leftover.length > 0) this.#conn.unread(result.leftover);
          break;
        }
      }
      const stats = reader.stats;
      state.bytesReceived += stats.rawBytes;
      if (spoolError !== null) {
        state.messages.inc("rejected-storage-error");
        logger.error("spool write failed", { tid, error: String(spoolError) });
        return { reply: C451LocalError };
      }
      const refusal = dataRejection(stats);
      if (refusal) {
        state.messages.inc(
          `rejected-${
            stats.bareLf || stats.bareCr ? "bare-line-ending" : stats.sizeExceeded ? "size" : "content"
          }`,
        );
        logger.info("message refused", {
          tid,
          code: refusal.code,
          size: stats.size,
          bareLf: stats.bareLf,
          bareCr: stats.bareCr,
        });
        return { reply: refusal };
      }
      if (hops.count >= config.smtpMaxReceivedHeaders) {
        // RFC 5321 6.3: too many Received lines means a mail loop.
        state.messages.inc("rejected-loop");
        return { reply: C554TooManyHops };
      }
      let id: number;
      try {
        // The commit fsyncs (WAL + synchronous=FULL); only after it may we say 250 (RFC 5321 4.1.1.4).
        const commit = this.#deps.commit ??
          ((m: IncomingMessage, b: BodySource) => store.enqueue(m, b));
        submitted = true;
        id = await commit({
          mailFrom: tx.from?.address ?? "",
          clientIp: this.#conn.remoteAddress,
          clientHelo: this.#helo ?? "",
          tls: this.#conn.isTls,
          bodyType: tx.params.body ?? null,
          smtputf8: tx.params.smtputf8,
          envid: tx.params.envid ?? null,
          ret: tx.params.ret ?? null,
          recipients: tx.recipients,
        }, spool);
      } catch (error) {
        if (error instanceof QuotaExceededError) {
          // The real size would overflow a domain's quota: nothing was kept (RFC 3463 X.2.2).
          state.messages.inc("rejected-over-quota");
          logger.info("message refused: queue quota", { tid, domain: error.domain, size: spool.size });
          return { reply: C452QuotaExceeded };
        }
        // Nothing half-written remains: the transaction rolled back (451 4.3.0, client retries).
        state.messages.inc("rejected-storage-error");
        logger.error("enqueue failed", { tid, error: String(error) });
        return { reply: C451LocalError };
      }
      state.messages.inc("accepted");
      logger.info("queued", {
        tid,
        id,
        from: tx.from?.address ?? "<>",
        rcpts: tx.recipients.length,
        size: spool.size,
      });
      return { reply: C250Queued(String(id)) };
    } finally {
      if (!submitted) this.#deps.dataAbandoned?.();
      spool.discard();
    }
  }
}
