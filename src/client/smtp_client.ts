/**
 * SMTP client over a connection it is HANDED and never dials (DESIGN.md 4, seam 1).
 *
 * After the ATRN turn (RFC 2645 4) the relay's ODMR server passes its {@linkcode LineConnection}, with the
 * same read buffer, to this client: the customer's 220 may already be buffered. The client then reads the
 * greeting, says EHLO and sends queued messages, mapping each reply to a per-recipient outcome exactly as
 * PROTOCOL 3.4 lists. After the turn it never sends STARTTLS (a TLS session from before the turn simply
 * continues, PROTOCOL 1.6) and never BDAT (fetchmail's line relay can deadlock on chunks, PROTOCOL
 * Appendix A). The outbound path (src/outbound/dial.ts) dials its own connections and uses
 * {@linkcode SmtpClient.startTls} and {@linkcode SmtpClient.authenticate} on them before sending.
 *
 * 8-bit content for a customer without 8BITMIME is FAILED with 5.6.3, not converted to 7-bit MIME: a
 * conversion would have to rewrite MIME structure (and break DKIM signatures), and PROTOCOL 3.2 allows
 * failing instead. Likewise a message that needs SMTPUTF8 is failed with 5.6.7 when it is not offered
 * (RFC 6531 3.2: a relay must not downgrade).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { LineConnection, StartTlsClientOptions } from "../net/line_connection.ts";
import { ReadTimeoutError } from "../net/errors.ts";
import type { Logger } from "../log/logger.ts";
import type { DeliverableMessage, RecipientOutcome } from "../queue/store.ts";
import { DotStuffer } from "../smtp/dot_stuff.ts";
import { Capabilities, parseEhloReply, sizeLimitOf } from "../smtp/ehlo.ts";
import { type ParsedReply, ReplyParser } from "../smtp/reply.ts";
import { xtextEncode } from "../smtp/params.ts";
import { encodeBase64 } from "../server/sasl/base64.ts";
import { BodyReadError, Code451LocalDeferral, DeliveryAbort, toAbort } from "./errors.ts";
import { choosePipelining, type PipeliningDecision, type PipeliningMode } from "./pipelining.ts";

// ---------------------------------------------------------------------------------------------------
// Reply codes this client acts on (RFC 5321 4.2.2 / 4.2.3 unless noted).
// ---------------------------------------------------------------------------------------------------

/** 220 Service ready (greeting, RFC 5321 4.2.2). */
export const Code220Ready = 220;
/** 221 Service closing transmission channel (reply to QUIT). */
export const Code221Closing = 221;
/** 235 Authentication succeeded (RFC 4954 6). */
export const Code235AuthSucceeded = 235;
/** 334 Server challenge during AUTH (RFC 4954 4). */
export const Code334Challenge = 334;
/** 354 Start mail input (RFC 5321 4.1.1.4). */
export const Code354StartInput = 354;
/** 421 Service not available, closing transmission channel (RFC 5321 3.8: may come at any time). */
export const Code421Closing = 421;
/** 452 Too many recipients (RFC 5321 4.5.3.1.10): the rest go in a new transaction. */
export const Code452TooManyRecipients = 452;
/** 500 Syntax error, command unrecognized: EHLO unknown, fall back to HELO (RFC 5321 3.2). */
export const Code500Unrecognized = 500;
/** 501 Syntax error in parameters: also fall back to HELO once (PROTOCOL 3.1). */
export const Code501SyntaxError = 501;
/** 502 Command not implemented: EHLO unknown, fall back to HELO (RFC 5321 3.2). */
export const Code502NotImplemented = 502;
/** 504 Command parameter not implemented: fall back to HELO once (PROTOCOL 3.1). */
export const Code504ParamNotImplemented = 504;
/** 550 Requested action not taken: fall back to HELO once (PROTOCOL 3.1). */
export const Code550NotTaken = 550;
/** 552 Exceeded storage allocation; on RCPT sometimes "too many recipients" (PROTOCOL 3.4). */
export const Code552ExceededStorage = 552;
/** 554 Transaction failed; as a greeting "no SMTP service here" (RFC 5321 3.1). */
export const Code554Failed = 554;
/** Synthetic code recorded when WE fail a recipient without asking the customer (5.3.4, 5.6.3, 5.6.7). */
export const Code554LocalFailure = 554;

/** RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
export const DEFAULT_MAX_REPLY_LINE_LENGTH = 512;
/** PROTOCOL 3.1: cap a reply at 100 lines (an endless `250-` flood aborts the session). */
export const DEFAULT_MAX_REPLY_LINES = 100;
/** RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients per transaction. */
export const DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION = 100;
/** Body writes are cut to this size so one write never holds more than ~2x of it after stuffing. */
const BODY_WRITE_SLICE = 64 * 1024;
/** Length of the terminator line `.` CRLF that {@linkcode DotStuffer.finish} ends with. */
const TERMINATOR_LENGTH = 3;
/** Longest reply text kept on a recipient row. */
const MAX_RECORDED_TEXT = 500;
/** Longest reply recorded whole for a DSN (a reply is at most 100 lines of 512 octets here). */
const MAX_RECORDED_REPLY = 8000;

/** Per-command client timeouts in milliseconds (RFC 5321 4.5.3.2). */
export interface ClientTimeouts {
  /** Wait for the 220 greeting (4.5.3.2.1: 5 minutes). */
  greetingMs: number;
  /** Wait for replies to EHLO, MAIL, RCPT, RSET, QUIT (4.5.3.2.2/3: 5 minutes). */
  commandMs: number;
  /** Wait for the 354 reply to DATA (4.5.3.2.4: 2 minutes). */
  dataInitMs: number;
  /** Time for one block of content to be accepted by the socket (4.5.3.2.5: 3 minutes). */
  dataBlockMs: number;
  /** Wait for the reply to the final dot (4.5.3.2.6: 10 minutes). */
  dataTermMs: number;
}

/** Options of {@linkcode SmtpClient}. */
export interface SmtpClientOptions {
  /** Client timeouts. */
  timeouts: ClientTimeouts;
  /** PIPELINING policy (config `atrnPipelining`). Default `"auto"`. */
  pipelining?: PipeliningMode;
  /** Most lines in one reply. Default 100. */
  maxReplyLines?: number;
  /** Longest reply line in octets including CRLF. Default 512. */
  maxReplyLineLength?: number;
  /** Most RCPTs per MAIL transaction. Default 100. */
  maxRecipientsPerTransaction?: number;
  /** Logger; commands and replies are traced at level `trace` (never the content). */
  logger?: Logger;
  /** Clock for round-trip measurements. Default `performance.now`. */
  monotonicNow?: () => number;
}

/** A chunked message body; called again for a second transaction of the same message (452). */
export type BodyOpener = () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** What happened to one message. */
export interface MessageResult {
  /** One outcome per recipient that was handed in, in the same order. */
  outcomes: RecipientOutcome[];
  /** Recipients delivered (2xx to RCPT and to the final dot). */
  delivered: number;
  /** Recipients that stay queued. */
  deferred: number;
  /** Recipients failed (5xx, or refused locally). */
  failed: number;
  /** Set when the session cannot continue; every unconfirmed recipient was deferred with its text. */
  abort: DeliveryAbort | null;
}

/** A reply plus how it arrived. */
interface Received extends ParsedReply {
  /** A multi-line reply whose continuation lines were not yet buffered when the previous line was read. */
  fragmented: boolean;
}

type Recipient = DeliverableMessage["recipients"][number];
type SetOutcome = (
  r: Recipient,
  result: RecipientOutcome["result"],
  code: number | null,
  text: string,
  /** The relay refused it itself (the DSN says so, rather than quoting the customer). */
  local?: boolean,
) => void;

/**
 * One SMTP client session over a handed connection. Methods must be called in order: `readGreeting`,
 * `hello`, any number of `sendMessage`, `quit`. After a {@linkcode DeliveryAbort} (thrown by
 * `readGreeting`/`hello`, returned by `sendMessage`) the connection has been closed.
 */
export class SmtpClient {
  /** The customer's EHLO keywords (empty after HELO). */
  capabilities: Capabilities = new Capabilities();
  /** `"EHLO"` or `"HELO"` once `hello` succeeded. */
  greetingVerb: "EHLO" | "HELO" | null = null;
  /** EHLO round-trip time in milliseconds, when measured. */
  ehloRttMs: number | null = null;
  /** A multi-line greeting or EHLO reply arrived in pieces (see pipelining.ts). */
  fragmentedReplies = false;
  /** The PIPELINING decision taken after EHLO. */
  pipeliningDecision: PipeliningDecision = { pipelining: false, reason: "no EHLO yet" };
  /** Why the session ended early, once it did. */
  abortedWith: DeliveryAbort | null = null;

  readonly #conn: LineConnection;
  readonly #timeouts: ClientTimeouts;
  readonly #mode: PipeliningMode;
  readonly #maxLines: number;
  readonly #maxLineLength: number;
  readonly #maxRcpts: number;
  readonly #log: Logger | undefined;
  readonly #clock: () => number;
  /** Set by `abort()` from outside (session timer, cancel): explains the ConnectionClosedError that follows. */
  #externalAbort: DeliveryAbort | null = null;

  /** Wraps a connection that is already connected (after the ATRN turn). */
  constructor(conn: LineConnection, options: SmtpClientOptions) {
    this.#conn = conn;
    this.#timeouts = options.timeouts;
    this.#mode = options.pipelining ?? "auto";
    this.#maxLines = options.maxReplyLines ?? DEFAULT_MAX_REPLY_LINES;
    this.#maxLineLength = options.maxReplyLineLength ?? DEFAULT_MAX_REPLY_LINE_LENGTH;
    this.#maxRcpts = Math.max(
      1,
      options.maxRecipientsPerTransaction ?? DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION,
    );
    this.#log = options.logger;
    this.#clock = options.monotonicNow ?? (() => performance.now());
  }

  /** Whether transactions are pipelined in this session. */
  get pipelining(): boolean {
    return this.pipeliningDecision.pipelining;
  }

  /**
   * Whether every command, content line and final dot goes out as its own write and TLS record: over TLS
   * to a customer that relays line by line (a multi-line reply arrived in pieces). fetchmail with `ssl`
   * reads ONE line per select() wake-up with SSL_read and never checks SSL_pending() (PROTOCOL Appendix
   * A), so lines sharing the last TLS record before we wait for a reply stay in OpenSSL's buffer and the
   * session stalls. Plaintext and prompt customers keep the fast path (large slices).
   */
  get lineByLine(): boolean {
    return this.#conn.isTls && this.fragmentedReplies;
  }

  /** Why the session ended early (our abort or one from outside), or `null`. */
  get abortReason(): DeliveryAbort | null {
    return this.abortedWith ?? this.#externalAbort;
  }

  /** Whether the session can still send (no abort so far, connection open). */
  get usable(): boolean {
    return this.abortedWith === null && this.#externalAbort === null && !this.#conn.isClosed;
  }

  /**
   * Ends the session from outside (overall session timeout, shutdown): the connection is destroyed at once
   * and the pending operation fails with `reason` (so unconfirmed recipients are deferred with its text).
   */
  abort(reason: DeliveryAbort): void {
    if (this.#externalAbort === null) this.#externalAbort = reason;
    this.#conn.destroy();
  }

  /**
   * Reads the customer's greeting (RFC 5321 3.1, 4.2; may be multi-line and may already be buffered).
   * `220` resolves. `554` (no service): sends QUIT as RFC 5321 3.1 asks, closes, throws `refused`.
   * `421`: closes, throws `refused`. Anything else: closes, throws `protocol`.
   */
  async readGreeting(): Promise<ParsedReply> {
    const reply = await this.#guard("greeting", async () => {
      const r = await this.#readReply(this.#timeouts.greetingMs, "greeting", false);
      if (r.fragmented) this.fragmentedReplies = true;
      return r;
    });
    if (reply.code === Code220Ready) return reply;
    if (reply.code === Code554Failed) {
      // RFC 5321 3.1: after a 554 greeting the client "SHOULD wait for a QUIT reply" path: send QUIT.
      await this.#politeQuit();
      throw this.#fail(
        new DeliveryAbort("refused", `4.3.2 Customer refused the session: ${describeReply(reply)}`, {
          code: Code554Failed,
        }),
      );
    }
    if (reply.code === Code421Closing) {
      throw this.#fail(
        new DeliveryAbort("refused", `4.3.2 Customer not available: ${describeReply(reply)}`, {
          code: Code421Closing,
        }),
      );
    }
    throw this.#fail(new DeliveryAbort("protocol", `4.5.0 Unexpected greeting: ${describeReply(reply)}`));
  }

  /**
   * Says EHLO (RFC 5321 4.1.1.1), falling back to HELO on 500/502 (RFC 5321 3.2) and, once, on
   * 501/504/550 (PROTOCOL 3.1). Parses the keywords case-insensitively and takes the PIPELINING decision.
   * Throws `refused` when neither is accepted.
   */
  hello(ourName: string): Promise<"EHLO" | "HELO"> {
    return this.#guard("EHLO", () => this.#hello(ourName));
  }

  async #hello(ourName: string): Promise<"EHLO" | "HELO"> {
    const name = sanitizeHelloName(ourName, this.#conn.localAddress);
    const start = this.#clock();
    const ehlo = await this.#command(`EHLO ${name}`, this.#timeouts.commandMs, "EHLO");
    if (ehlo.code >= 200 && ehlo.code < 300) {
      this.ehloRttMs = Math.round((this.#clock() - start) * 100) / 100;
      if (ehlo.fragmented) this.fragmentedReplies = true;
      this.capabilities = parseEhloReply(ehlo.lines);
      this.greetingVerb = "EHLO";
      this.pipeliningDecision = choosePipelining(this.#mode, {
        advertised: this.capabilities.has("PIPELINING"),
        fragmentedReplies: this.fragmentedReplies,
        ehloRttMs: this.ehloRttMs,
      });
      this.#log?.debug("ehlo accepted", {
        rttMs: this.ehloRttMs,
        fragmented: this.fragmentedReplies,
        pipelining: this.pipelining,
        why: this.pipeliningDecision.reason,
        keywords: [...this.capabilities.keys()].join(","),
      });
      return "EHLO";
    }
    const fallback = [
      Code500Unrecognized,
      Code502NotImplemented,
      Code501SyntaxError,
      Code504ParamNotImplemented,
      Code550NotTaken,
    ];
    if (fallback.includes(ehlo.code)) {
      const helo = await this.#command(`HELO ${name}`, this.#timeouts.commandMs, "HELO");
      if (helo.code >= 200 && helo.code < 300) {
        this.greetingVerb = "HELO";
        this.capabilities = new Capabilities();
        this.pipeliningDecision = { pipelining: false, reason: "HELO session" };
        return "HELO";
      }
      await this.#politeQuit();
      throw this.#fail(
        new DeliveryAbort("refused", `4.3.2 Customer refused HELO: ${describeReply(helo)}`, {
          code: helo.code,
        }),
      );
    }
    await this.#politeQuit();
    throw this.#fail(
      new DeliveryAbort("refused", `4.3.2 Customer refused EHLO: ${describeReply(ehlo)}`, {
        code: ehlo.code,
      }),
    );
  }

  /**
   * STARTTLS (RFC 3207 4) on a connection this client was handed before any TLS. On `220` the connection
   * is upgraded ({@linkcode LineConnection.startTlsClient}) and `null` is returned; everything learnt
   * before is forgotten and the caller must say EHLO again (RFC 3207 4.2). Any other reply (`454 TLS not
   * available`, `501`) is returned as it is and the session goes on in plaintext: the caller decides
   * whether that is acceptable. A failed handshake or refused certificate throws a `protocol`
   * {@linkcode DeliveryAbort} whose `cause` is the `TlsHandshakeError` (connection closed).
   */
  startTls(options: StartTlsClientOptions): Promise<ParsedReply | null> {
    return this.#guard("STARTTLS", async () => {
      // PROTOCOL 3.2: never start TLS twice.
      if (this.#conn.isTls) throw new Error("STARTTLS on a connection that already uses TLS");
      const reply = await this.#command("STARTTLS", this.#timeouts.commandMs, "STARTTLS");
      if (reply.code !== Code220Ready) return reply;
      try {
        await this.#conn.startTlsClient(options);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new DeliveryAbort("protocol", `4.7.0 STARTTLS failed: ${why}`, { cause: err });
      }
      // RFC 3207 4.2: discard any knowledge obtained from the server before TLS; EHLO comes next.
      this.capabilities = new Capabilities();
      this.greetingVerb = null;
      this.pipeliningDecision = { pipelining: false, reason: "no EHLO since STARTTLS" };
      return null;
    });
  }

  /**
   * AUTH (RFC 4954 4) with PLAIN (RFC 4616 2, as the initial response) or LOGIN (the username and the
   * password, base64, in answer to the two `334` prompts). Resolves with the final reply: `235` means
   * authenticated (RFC 4954 6); anything else is the server's refusal, returned for the caller to judge
   * (the session stays usable). The credentials never reach the wire trace.
   */
  authenticate(mechanism: "PLAIN" | "LOGIN", username: string, password: string): Promise<ParsedReply> {
    return this.#guard("AUTH", async () => {
      // RFC 4616 2: authcid and passwd are UTF-8 without NUL (NUL separates the fields).
      if (username.includes("\0") || password.includes("\0")) throw new Error("Credentials contain a NUL");
      const t = this.#timeouts.commandMs;
      let reply: Received;
      if (mechanism === "PLAIN") {
        // RFC 4616 2: message = [authzid] NUL authcid NUL passwd; the authzid is left empty.
        const response = encodeBase64(`\0${username}\0${password}`);
        reply = await this.#secretCommand(`AUTH PLAIN ${response}`, "AUTH PLAIN <redacted>", t);
      } else {
        reply = await this.#command("AUTH LOGIN", t, "AUTH");
        for (const field of [username, password]) {
          if (reply.code !== Code334Challenge) return reply;
          reply = await this.#secretCommand(encodeBase64(field), "<redacted>", t);
        }
      }
      if (reply.code !== Code334Challenge) return reply;
      // One challenge too many: RFC 4954 4, the client cancels with "*" and the server answers 501.
      return await this.#command("*", t, "AUTH");
    });
  }

  /**
   * Sends one message to its recipients (one or more MAIL transactions) and returns one outcome per
   * recipient. Never throws for anything the customer or the connection does: a session-ending problem is
   * returned as `abort`, with every recipient not yet confirmed deferred. `openBody` is called once per
   * transaction and must yield the stored (unstuffed, CRLF) content in order.
   */
  async sendMessage(message: DeliverableMessage, openBody: BodyOpener): Promise<MessageResult> {
    const outcomes = new Map<number, RecipientOutcome>();
    const set: SetOutcome = (r, result, code, text, local) => {
      outcomes.set(r.id, {
        id: r.id,
        result,
        code,
        text: clip(text, MAX_RECORDED_REPLY),
        ...(local ? { local } : {}),
      });
    };
    let abort: DeliveryAbort | null = this.abortedWith ?? this.#externalAbort;
    if (abort === null) {
      try {
        let todo = this.#refuseLocally(message, set);
        while (todo.length > 0) {
          const batch = todo.slice(0, this.#maxRcpts);
          const retry = await this.#transaction(message, batch, openBody, set);
          // RFC 5321 4.5.3.1.10: recipients refused with 452 go again in a new transaction.
          todo = [...retry, ...todo.slice(batch.length)];
        }
      } catch (err) {
        abort = this.#fail(toAbort(this.#externalAbort ?? err, "delivery"));
      }
    }
    let delivered = 0;
    let deferred = 0;
    let failed = 0;
    const list = message.recipients.map((r) => {
      // Every recipient without a definitive answer stays queued (DESIGN 6: at-least-once).
      const o = outcomes.get(r.id) ??
        {
          id: r.id,
          result: "deferred" as const,
          code: abort?.code ?? Code451LocalDeferral,
          text: clip(abort?.text ?? "4.4.2 Not attempted"),
        };
      if (o.result === "delivered") delivered++;
      else if (o.result === "deferred") deferred++;
      else failed++;
      return o;
    });
    return { outcomes: list, delivered, deferred, failed, abort };
  }

  /**
   * Sends QUIT and waits (command timeout) for the 221, then closes the connection (RFC 5321 4.1.1.10).
   * Errors are ignored: every message's outcome has been recorded already.
   */
  /**
   * NOOP (RFC 5321 4.1.1.9): keeps a waiting session and the customer's own connections alive. Throws
   * a DeliveryAbort (connection closed) when the customer does not answer 2xx.
   */
  async noop(): Promise<void> {
    const reply = await this.#guard("NOOP", () => this.#command("NOOP", this.#timeouts.commandMs, "NOOP"));
    if (reply.code < 200 || reply.code >= 300) {
      await this.#politeQuit();
      throw this.#fail(new DeliveryAbort("refused", `4.3.2 Customer refused NOOP: ${describeReply(reply)}`));
    }
  }

  async quit(): Promise<void> {
    if (this.usable) await this.#politeQuit();
    await this.#closeQuietly();
  }

  // -------------------------------------------------------------------------------------------------

  /** Fails recipients that must not be offered to this customer (SIZE, 8BITMIME, SMTPUTF8). */
  #refuseLocally(
    message: DeliverableMessage,
    set: SetOutcome,
  ): Recipient[] {
    const limit = sizeLimitOf(this.capabilities);
    if (limit !== undefined && limit > 0 && message.size > limit) {
      // RFC 1870 6.1: a client must not send a message larger than the advertised SIZE; 5.3.4 too big.
      for (const r of message.recipients) {
        set(
          r,
          "failed",
          Code554LocalFailure,
          `5.3.4 Message size ${message.size} exceeds the receiving server's limit ${limit}`,
          true,
        );
      }
      return [];
    }
    if (message.eightBit && !this.capabilities.has("8BITMIME")) {
      // RFC 6152 3 / PROTOCOL 3.2: no conversion to 7-bit MIME here, the message is failed (5.6.3).
      for (const r of message.recipients) {
        set(
          r,
          "failed",
          Code554LocalFailure,
          "5.6.3 Message has 8-bit content and the receiving server lacks 8BITMIME",
          true,
        );
      }
      return [];
    }
    if (this.capabilities.has("SMTPUTF8")) return [...message.recipients];
    // RFC 6531 3.2: without SMTPUTF8 a message that needs it must not be sent (and a relay does not downgrade).
    const needsUtf8 = !isAscii(message.mailFrom) || (message.smtputf8 && message.eightBit);
    const todo: Recipient[] = [];
    for (const r of message.recipients) {
      if (needsUtf8 || !isAscii(r.address)) {
        set(
          r,
          "failed",
          Code554LocalFailure,
          "5.6.7 Message needs SMTPUTF8 and the receiving server does not offer it",
          true,
        );
      } else {
        todo.push(r);
      }
    }
    return todo;
  }

  /** MAIL FROM with only the parameters the customer advertised (RFC 5321 4.1.1.11, never AUTH=). */
  #mailCommand(message: DeliverableMessage): string {
    let cmd = `MAIL FROM:<${clean(message.mailFrom)}>`;
    const caps = this.capabilities;
    // RFC 1870 3: SIZE=<exact size in octets> only when SIZE was advertised.
    if (caps.has("SIZE")) cmd += ` SIZE=${message.size}`;
    if (caps.has("8BITMIME")) {
      // RFC 6152 3: BODY=8BITMIME when the content is 8-bit or was received that way.
      const declared = message.bodyType?.toUpperCase();
      if (message.eightBit || declared === "8BITMIME") cmd += " BODY=8BITMIME";
      else if (declared === "7BIT") cmd += " BODY=7BIT";
    }
    // RFC 6531 3.4: SMTPUTF8 only when advertised and the message was received with it.
    if (caps.has("SMTPUTF8") && (message.smtputf8 || !isAscii(message.mailFrom))) cmd += " SMTPUTF8";
    if (caps.has("DSN")) {
      // RFC 3461 4.3 / 4.4: pass RET and ENVID on exactly as received.
      const ret = message.ret?.toUpperCase();
      if (ret === "FULL" || ret === "HDRS") cmd += ` RET=${ret}`;
      if (message.envid !== null && message.envid !== "") {
        // Stored as received, still xtext-encoded (smtp/params.ts): pass it on unchanged (RFC 3461 4.4),
        // after checking it is plain xtext so nothing else can ride along.
        const envid = clean(message.envid);
        if (/^[\x21-\x2a\x2c-\x3c\x3e-\x7e]*(?:\+[0-9A-F]{2}[\x21-\x2a\x2c-\x3c\x3e-\x7e]*)*$/.test(envid)) {
          cmd += ` ENVID=${envid}`;
        }
      }
    }
    return cmd;
  }

  /** RCPT TO with NOTIFY/ORCPT only when DSN was advertised (RFC 3461 4.1, 4.2). */
  #rcptCommand(r: Recipient): string {
    let cmd = `RCPT TO:<${clean(r.address)}>`;
    if (this.capabilities.has("DSN")) {
      const notify = r.notify?.toUpperCase();
      if (
        notify !== undefined &&
        /^(NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY)){0,2})$/.test(notify)
      ) {
        cmd += ` NOTIFY=${notify}`;
      }
      if (r.orcpt !== null) {
        const semicolon = r.orcpt.indexOf(";");
        const type = r.orcpt.slice(0, semicolon);
        if (semicolon > 0 && /^[A-Za-z0-9][A-Za-z0-9-]*$/.test(type)) {
          cmd += ` ORCPT=${type};${xtextEncode(clean(r.orcpt.slice(semicolon + 1)))}`;
        }
      }
    }
    return cmd;
  }

  /**
   * One MAIL transaction for `batch`; records outcomes through `set` and returns the recipients to try
   * again in a new transaction (refused with 452 while the transaction delivered to others).
   */
  async #transaction(
    message: DeliverableMessage,
    batch: Recipient[],
    openBody: BodyOpener,
    set: SetOutcome,
  ): Promise<Recipient[]> {
    // Open the body BEFORE the MAIL command: a message deleted meanwhile must not leave us inside DATA.
    let body: AsyncIterator<Uint8Array>;
    let first: IteratorResult<Uint8Array>;
    try {
      body = toAsyncIterator(openBody());
      first = await body.next();
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      for (const r of batch) {
        set(r, "deferred", Code451LocalDeferral, `4.3.0 Stored message unavailable: ${why}`);
      }
      return [];
    }
    try {
      return await this.#runTransaction(message, batch, body, first, set);
    } finally {
      await body.return?.();
    }
  }

  async #runTransaction(
    message: DeliverableMessage,
    batch: Recipient[],
    body: AsyncIterator<Uint8Array>,
    first: IteratorResult<Uint8Array>,
    set: SetOutcome,
  ): Promise<Recipient[]> {
    const t = this.#timeouts;
    const mail = this.#mailCommand(message);
    const rcpts = batch.map((r) => this.#rcptCommand(r));
    let mailReply: Received;
    const rcptReplies: Received[] = [];
    let dataReply: Received | null = null;

    if (this.pipelining) {
      // RFC 2920 3.1: MAIL and RCPT may be grouped; DATA must be the last command of the group.
      const commands = [mail, ...rcpts, "DATA"].map((c) => `${c}\r\n`);
      this.#trace(">", `${mail} +${rcpts.length} RCPT + DATA (pipelined)`);
      // RFC 2920 3.5: read replies while the batch is still being written, or both sides can block.
      // Line-by-line (TLS line relay, only when pipelining is forced): one record per command.
      const writing = this.lineByLine
        ? (async () => {
          for (const c of commands) await this.#writeRecord(c, t.commandMs);
        })()
        : this.#conn.write(commands.join(""), { timeoutMs: t.commandMs });
      writing.catch(() => {});
      // RFC 2920 3.1: replies are matched to commands by COUNT, never by code or text.
      mailReply = await this.#readReply(t.commandMs, "MAIL");
      for (let i = 0; i < rcpts.length; i++) rcptReplies.push(await this.#readReply(t.commandMs, "RCPT"));
      dataReply = await this.#readReply(t.dataInitMs, "DATA");
      await writing;
    } else {
      mailReply = await this.#command(mail, t.commandMs, "MAIL");
      if (isPositive(mailReply)) {
        for (const cmd of rcpts) rcptReplies.push(await this.#command(cmd, t.commandMs, "RCPT"));
      }
    }

    if (!isPositive(mailReply)) {
      // PROTOCOL 3.4: MAIL 4xx/5xx -> the whole message deferred/failed, then RSET (RFC 5321 4.1.1.5).
      for (const r of batch) this.#byReply(r, mailReply, set);
      if (dataReply?.code === Code354StartInput) await this.#emptyData();
      await this.#rset();
      return [];
    }

    const accepted: Recipient[] = [];
    const retry: { r: Recipient; reply: Received }[] = [];
    batch.forEach((r, i) => {
      const reply = rcptReplies[i]!;
      if (isPositive(reply)) {
        accepted.push(r); // RFC 5321 4.1.1.3: 250/251 -> pending on this transaction
      } else if (reply.code === Code452TooManyRecipients || this.#isTemporary552(reply, accepted.length)) {
        retry.push({ r, reply });
      } else {
        this.#byReply(r, reply, set); // 4xx deferred, 5xx failed
      }
    });
    const deferRetries = () => {
      for (const { r, reply } of retry) set(r, "deferred", reply.code, recordReply(reply));
    };

    if (accepted.length === 0) {
      // RFC 2920 3.1: if DATA got 354 anyway, send a lone "." (the server must deliver nothing); then RSET.
      if (dataReply?.code === Code354StartInput) await this.#emptyData();
      deferRetries();
      await this.#rset();
      return [];
    }

    if (dataReply === null) dataReply = await this.#command("DATA", t.dataInitMs, "DATA");
    if (dataReply.code !== Code354StartInput) {
      // PROTOCOL 3.4: DATA 4xx -> pending deferred, 5xx -> failed; a bogus 2xx/3xx is treated as 4xx.
      for (const r of accepted) this.#byReply(r, dataReply, set);
      deferRetries();
      await this.#rset();
      return [];
    }

    await this.#sendContent(body, first);
    const final = await this.#readReply(t.dataTermMs, "end of data");
    // PROTOCOL 3.4: end-of-data 2xx -> delivered (recorded by the caller right away), 4xx/5xx per class.
    for (const r of accepted) this.#byReply(r, final, set, true);
    if (!isPositive(final)) {
      deferRetries();
      return [];
    }
    return retry.map(({ r }) => r);
  }

  /**
   * PROTOCOL 3.4: RCPT 552 is temporary ("too many recipients", RFC 5321 4.5.3.1.10) when at least 100
   * were already accepted or the enhanced code is 5.5.3; otherwise permanent (RFC 1870 too big).
   */
  #isTemporary552(reply: Received, acceptedSoFar: number): boolean {
    return reply.code === Code552ExceededStorage && (acceptedSoFar >= 100 || reply.enhanced === "5.5.3");
  }

  /** Maps a reply to an outcome: 2xx delivered, 5xx failed, anything else deferred. */
  #byReply(
    r: Recipient,
    reply: Received,
    set: SetOutcome,
    positiveMeansDelivered = false,
  ): void {
    const cls = Math.floor(reply.code / 100);
    if (cls === 2 && positiveMeansDelivered) set(r, "delivered", reply.code, recordReply(reply));
    else if (cls === 5) set(r, "failed", reply.code, recordReply(reply));
    else set(r, "deferred", reply.code, recordReply(reply));
  }

  /**
   * Streams the dot-stuffed content and the final dot with backpressure (RFC 5321 4.5.2, 4.1.1.4).
   *
   * Fast path: slices of up to 64 KB, the last one written together with the terminator (one segment
   * for small mail). Line-by-line path ({@linkcode SmtpClient.lineByLine}): each line, and then the
   * final dot, is its own write on its own event-loop turn, hence its own TLS record.
   */
  async #sendContent(body: AsyncIterator<Uint8Array>, first: IteratorResult<Uint8Array>): Promise<void> {
    const stuffer = new DotStuffer();
    const timeoutMs = this.#timeouts.dataBlockMs;
    const lineByLine = this.lineByLine;
    const lines = lineByLine ? new LineSplitter() : null;
    let next = first;
    // The last block is held back and written together with the terminator: one segment for small mail.
    let held: Uint8Array | null = null;
    while (!next.done) {
      const chunk = next.value;
      for (let off = 0; off < chunk.length; off += BODY_WRITE_SLICE) {
        const out = stuffer.push(chunk.subarray(off, off + BODY_WRITE_SLICE));
        if (out.length === 0) continue;
        if (lines !== null) {
          for (const line of lines.push(out)) await this.#writeRecord(line, timeoutMs);
          continue;
        }
        // RFC 5321 4.5.3.2.5: each block must be accepted within the data block timeout.
        if (held !== null) await this.#conn.write(held, { timeoutMs });
        held = out;
      }
      try {
        next = await body.next();
      } catch (err) {
        // Never send the final dot after a partial body: drop the connection instead (at-least-once).
        throw new BodyReadError(err);
      }
    }
    this.#trace(">", "<content> .");
    const tail = stuffer.finish();
    if (lines !== null) {
      // `tail` is the missing line end (if any) and ".\r\n": the rest of the content first, then the dot
      // alone in the last record, so fetchmail's one-line-per-wake-up relay reaches it.
      for (const line of lines.push(tail.subarray(0, tail.length - TERMINATOR_LENGTH))) {
        await this.#writeRecord(line, timeoutMs);
      }
      const rest = lines.rest();
      if (rest !== null) await this.#writeRecord(rest, timeoutMs);
      await this.#writeRecord(tail.subarray(tail.length - TERMINATOR_LENGTH), timeoutMs);
    } else if (held === null) {
      await this.#conn.write(tail, { timeoutMs });
    } else {
      const last = new Uint8Array(held.length + tail.length);
      last.set(held);
      last.set(tail, held.length);
      await this.#conn.write(last, { timeoutMs });
    }
  }

  /**
   * One write that must become its own TLS record in line-by-line mode: written, then the event loop is
   * given a turn, so the runtime encrypts and sends it before the next write is even issued. Deno and Bun
   * both coalesce writes made in the same turn into one record (measured: 50 awaited one-line writes gave
   * 4 records; with a turn between them, 50). Outside line-by-line mode it is a plain awaited write.
   */
  async #writeRecord(data: string | Uint8Array, timeoutMs: number): Promise<void> {
    await this.#conn.write(data, { timeoutMs });
    if (this.lineByLine) await nextTurn();
  }

  /** RFC 2920 3.1: after a 354 with no accepted recipient, a lone "." ends the (empty) content. */
  async #emptyData(): Promise<void> {
    await this.#command(".", this.#timeouts.dataTermMs, "end of data");
  }

  /** RSET (RFC 5321 4.1.1.5); its reply is read but only a 421 matters (thrown by readReply). */
  async #rset(): Promise<void> {
    await this.#command("RSET", this.#timeouts.commandMs, "RSET");
  }

  /** Sends QUIT and reads one reply; errors ignored (the session is over either way). */
  async #politeQuit(): Promise<void> {
    try {
      this.#trace(">", "QUIT");
      await this.#writeRecord("QUIT\r\n", this.#timeouts.commandMs);
      const line = await this.#conn.readLine({
        maxLength: this.#maxLineLength,
        timeoutMs: this.#timeouts.commandMs,
      });
      this.#trace("<", line);
    } catch {
      // ignore: QUIT is a courtesy
    }
  }

  async #closeQuietly(): Promise<void> {
    try {
      await this.#conn.close();
    } catch {
      // ignore
    }
  }

  /** Writes one command and reads its reply (the non-pipelined path). */
  async #command(line: string, timeoutMs: number, what: string): Promise<Received> {
    this.#trace(">", line);
    await this.#writeRecord(`${line}\r\n`, this.#timeouts.commandMs);
    return await this.#readReply(timeoutMs, what);
  }

  /** Like `#command`, for a line carrying credentials: the trace shows `shown` instead. */
  async #secretCommand(line: string, shown: string, timeoutMs: number): Promise<Received> {
    this.#trace(">", shown);
    await this.#writeRecord(`${line}\r\n`, this.#timeouts.commandMs);
    return await this.#readReply(timeoutMs, "AUTH");
  }

  /**
   * Reads one (possibly multi-line) reply within `timeoutMs` in total, with the line and line-count caps
   * (never buffering more than one capped line). A 421 ends the session (RFC 5321 3.8) unless `allow421`.
   */
  async #readReply(timeoutMs: number, what: string, throwOn421 = true): Promise<Received> {
    const parser = new ReplyParser({ maxLines: this.#maxLines, maxLineLength: this.#maxLineLength });
    const deadline = this.#clock() + timeoutMs;
    let fragmented = false;
    for (;;) {
      const left = Math.max(1, Math.ceil(deadline - this.#clock()));
      let line: string;
      try {
        line = await this.#conn.readLine({ maxLength: this.#maxLineLength, timeoutMs: left });
      } catch (err) {
        if (this.#externalAbort !== null) throw this.#externalAbort;
        // Report the whole reply's timeout, not what was left of it for this line.
        if (err instanceof ReadTimeoutError) throw toAbort(new ReadTimeoutError(timeoutMs), what);
        throw toAbort(err, what);
      }
      this.#trace("<", line);
      const reply = (() => {
        try {
          return parser.push(line);
        } catch (err) {
          throw toAbort(err, what);
        }
      })();
      if (reply !== undefined) {
        if (throwOn421 && reply.code === Code421Closing) {
          // RFC 5321 3.8: 421 means the customer is closing; everything unconfirmed stays queued.
          throw new DeliveryAbort(
            "refused",
            `4.3.2 Customer closing during ${what}: ${describeReply(reply)}`,
            {
              code: Code421Closing,
            },
          );
        }
        return { ...reply, fragmented };
      }
      // A continuation line is due; if none is buffered yet, the reply is arriving line by line.
      if (!this.#conn.hasBufferedInput()) fragmented = true;
    }
  }

  /** Runs `fn`, turning any error into a recorded {@linkcode DeliveryAbort} (connection closed). */
  async #guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.#fail(toAbort(this.#externalAbort ?? err, what));
    }
  }

  /** Records the abort and drops the connection (its state is unknown after a failure). */
  #fail(abort: DeliveryAbort): DeliveryAbort {
    if (this.abortedWith === null) {
      this.abortedWith = abort;
      this.#log?.info("delivery session aborted", { kind: abort.kind, detail: abort.text });
    }
    if (abort.kind === "refused" && !this.#conn.isClosed) void this.#closeQuietly();
    else this.#conn.destroy();
    return this.abortedWith;
  }

  #trace(direction: ">" | "<", line: string): void {
    if (this.#log?.enabled("trace")) this.#log.trace("wire", { dir: direction, line });
  }
}

// ---------------------------------------------------------------------------------------------------

function isPositive(reply: ParsedReply): boolean {
  return reply.code >= 200 && reply.code < 300;
}

/** The reply as recorded on a recipient: `5.1.1 User unknown` (enhanced code, then text lines). */
export function describeReply(reply: ParsedReply): string {
  const text = reply.lines.filter((l) => l !== "").join(" / ");
  const parts = [String(reply.code), reply.enhanced, text].filter((p) => p !== undefined && p !== "");
  return clip(parts.join(" "));
}

function clip(text: string, max = MAX_RECORDED_TEXT): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/**
 * The reply as recorded on a recipient for its DSN: code and enhanced code, then each line's text, one
 * per line (`550 5.1.1 first\nsecond`), so the DSN can quote it as the customer sent it (RFC 3464
 * 2.3.6). Clipped only far beyond any real reply.
 */
export function recordReply(reply: ParsedReply): string {
  const head = [String(reply.code), reply.enhanced].filter((p) => p !== undefined).join(" ");
  return clip(`${head} ${reply.lines.join("\n")}`.trimEnd(), MAX_RECORDED_REPLY);
}

/**
 * Removes CR, LF and other control characters from a value that goes into a command (PROTOCOL 3.5,
 * GHSA-vvjj-xcjg-gr5g: CRLF injection). Queue data is already validated; this is defence in depth.
 */
export function clean(value: string): string {
  // deno-lint-ignore no-control-regex
  return value.replace(/[\x00-\x1f\x7f]/g, "");
}

/** An EHLO/HELO argument: our name without spaces or controls, or an address literal (RFC 5321 4.1.3). */
export function sanitizeHelloName(name: string, localAddress: string): string {
  // deno-lint-ignore no-control-regex
  const cleaned = name.replace(/[\x00-\x20\x7f]/g, "");
  if (cleaned !== "") return cleaned;
  if (localAddress.includes(":")) return `[IPv6:${localAddress}]`;
  return localAddress === "" ? "[127.0.0.1]" : `[${localAddress}]`;
}

function isAscii(text: string): boolean {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(text);
}

function toAsyncIterator(
  source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): AsyncIterator<Uint8Array> {
  if (Symbol.asyncIterator in source) return (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const it = (source as Iterable<Uint8Array>)[Symbol.iterator]();
  return {
    next: () => Promise.resolve(it.next()),
    return: () => Promise.resolve(it.return?.() ?? { done: true, value: undefined }),
  };
}

/** Resolves on a later turn of the event loop (after pending I/O), so the previous write has gone out. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Splits canonical CRLF content into whole lines (LF included), carrying a partial line over. */
export class LineSplitter {
  #carry: Uint8Array | null = null;

  /** The complete lines in `carry + data`; a trailing partial line is kept for the next call. */
  push(data: Uint8Array): Uint8Array[] {
    let buf = data;
    if (this.#carry !== null) {
      buf = new Uint8Array(this.#carry.length + data.length);
      buf.set(this.#carry);
      buf.set(data, this.#carry.length);
      this.#carry = null;
    }
    const out: Uint8Array[] = [];
    let start = 0;
    for (let lf = buf.indexOf(0x0a); lf !== -1; lf = buf.indexOf(0x0a, start)) {
      out.push(buf.subarray(start, lf + 1));
      start = lf + 1;
    }
    if (start < buf.length) this.#carry = buf.slice(start);
    return out;
  }

  /** The partial line left over (none for canonical content), or `null`. */
  rest(): Uint8Array | null {
    const rest = this.#carry;
    this.#carry = null;
    return rest;
  }
}
