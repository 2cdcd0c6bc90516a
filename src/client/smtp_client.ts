/**
 * SMTP client over a connection it is HANDED and never dials (docs/design.md#seams, 1).
 *
 * After the ATRN turn (RFC 2645 4) the relay's ODMR server passes its {@linkcode Connection}, with the
 * same read buffer, to this client: the customer's 220 may already be buffered. The client then reads the
 * greeting, says EHLO and sends queued messages, mapping each reply to a per-recipient outcome
 * (docs/protocol.md#reply-mapping). After the turn it never sends STARTTLS (a TLS session from before
 * the turn simply continues, docs/protocol.md#tls-across-the-turn) and never BDAT (fetchmail's line relay
 * can deadlock on chunks, docs/protocol.md#fetchmail). The outbound path (src/outbound/dial.ts) dials its
 * own connections and uses {@linkcode SmtpClient.startTls} and {@linkcode SmtpClient.authenticate} on them
 * before sending.
 *
 * This file is the session: replies, the order of commands, aborts. Its parts live beside it: what is
 * refused without asking (local_policy.ts), the MAIL and RCPT lines (commands.ts), one transaction
 * (transaction.ts), replies to outcomes (outcome.ts), and how the content is written (body_writer.ts).
 *
 * @module
 */

import type { Connection } from "../net/connection.ts";
import type { StartTlsClientOptions } from "../net/line_connection.ts";
import { ReadTimeoutError } from "../net/errors.ts";
import type { Logger } from "../log/logger.ts";
import type { DeliverableMessage } from "./types.ts";
import {
  Code220Ready,
  Code334Challenge,
  Code421Closing,
  Code500Unrecognized,
  Code501SyntaxError,
  Code502NotImplemented,
  Code504ParamNotImplemented,
  Code550NotTaken,
  Code554Failed,
  isPositive,
} from "../smtp/codes.ts";
import { Capabilities, parseEhloReply } from "../smtp/ehlo.ts";
import { type ParsedReply, ReplyParser } from "../smtp/reply.ts";
import { encodeBase64 } from "../server/sasl/base64.ts";
import { writeBody, writeRecord } from "./body_writer.ts";
import { sanitizeHelloName } from "./commands.ts";
import { DeliveryAbort, toAbort } from "./errors.ts";
import { refuseLocally } from "./local_policy.ts";
import { describeReply, MessageOutcomes, type MessageResult } from "./outcome.ts";
import {
  choosePipelining,
  PACED_FALLBACK_REASON,
  PacedReplyDetector,
  type PipeliningDecision,
  type PipeliningMode,
} from "./pipelining.ts";
import {
  DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION,
  DEFAULT_MAX_REPLY_LINE_LENGTH,
  DEFAULT_MAX_REPLY_LINES,
  type SmtpClientOptions,
} from "./client_options.ts";
import {
  type BodyOpener,
  type ClientTimeouts,
  type Received,
  runTransaction,
  type TransactionLink,
} from "./transaction.ts";

export type { BodyOpener, ClientTimeouts } from "./transaction.ts";
export type { MessageResult } from "./outcome.ts";

export {
  DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION,
  DEFAULT_MAX_REPLY_LINE_LENGTH,
  DEFAULT_MAX_REPLY_LINES,
  type SmtpClientOptions,
} from "./client_options.ts";

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

  readonly #conn: Connection;
  readonly #timeouts: ClientTimeouts;
  readonly #mode: PipeliningMode;
  readonly #maxLines: number;
  readonly #maxLineLength: number;
  readonly #maxRcpts: number;
  readonly #log: Logger | undefined;
  readonly #clock: () => number;
  /** Set by `abort()` from outside (session timer, cancel): explains the ConnectionClosedError that follows. */
  #externalAbort: DeliveryAbort | null = null;
  readonly #link: TransactionLink;
  readonly #paced = new PacedReplyDetector();

  /** Wraps a connection that is already connected (after the ATRN turn). */
  constructor(conn: Connection, options: SmtpClientOptions) {
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
    this.#link = this.#makeLink();
  }

  /** Whether transactions are pipelined in this session. */
  get pipelining(): boolean {
    return this.pipeliningDecision.pipelining;
  }

  /**
   * Whether every command, content line and final dot goes out as its own write and TLS record: over TLS
   * to a customer that relays line by line (a multi-line reply arrived in pieces). fetchmail with `ssl`
   * reads ONE line per select() wake-up with SSL_read and never checks SSL_pending()
   * (docs/protocol.md#fetchmail), so lines sharing the last TLS record before we wait for a reply stay in
   * OpenSSL's buffer and the session stalls. Plaintext and prompt customers keep the fast path (large
   * slices, src/client/body_writer.ts).
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
   * 501/504/550 (docs/protocol.md#ehlo-fallback). Parses the keywords case-insensitively and takes the
   * PIPELINING decision. Throws `refused` when neither is accepted.
   */
  hello(ourName: string): Promise<"EHLO" | "HELO"> {
    return this.#guard("EHLO", () => this.#hello(ourName));
  }

  async #hello(ourName: string): Promise<"EHLO" | "HELO"> {
    const name = sanitizeHelloName(ourName, this.#conn.localAddress);
    const start = this.#clock();
    const ehlo = await this.#command(`EHLO ${name}`, this.#timeouts.commandMs, "EHLO");
    if (isPositive(ehlo)) {
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
      if (isPositive(helo)) {
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
      // RFC 3207 4.2: never start TLS twice.
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
    const outcomes = new MessageOutcomes();
    let abort: DeliveryAbort | null = this.abortedWith ?? this.#externalAbort;
    if (abort === null) {
      try {
        const local = refuseLocally(message, this.capabilities);
        for (const { recipient, text } of local.refused) {
          outcomes.set(recipient, "failed", Code554Failed, text, true);
        }
        let todo = local.todo;
        while (todo.length > 0) {
          const batch = todo.slice(0, this.#maxRcpts);
          const retry = await runTransaction(this.#link, message, batch, openBody, outcomes.set);
          // RFC 5321 4.5.3.1.10: recipients refused with 452 go again in a new transaction.
          todo = [...retry, ...todo.slice(batch.length)];
        }
      } catch (err) {
        abort = this.#fail(toAbort(this.#externalAbort ?? err, "delivery"));
      }
    }
    return outcomes.result(message, abort);
  }

  /**
   * NOOP (RFC 5321 4.1.1.9): keeps a waiting session and the customer's own connections alive. Throws
   * a DeliveryAbort (connection closed) when the customer does not answer 2xx.
   */
  async noop(): Promise<void> {
    const reply = await this.#guard("NOOP", () => this.#command("NOOP", this.#timeouts.commandMs, "NOOP"));
    if (!isPositive(reply)) {
      await this.#politeQuit();
      throw this.#fail(new DeliveryAbort("refused", `4.3.2 Customer refused NOOP: ${describeReply(reply)}`));
    }
  }

  /**
   * Sends QUIT and waits (command timeout) for the 221, then closes the connection (RFC 5321 4.1.1.10).
   * Errors are ignored: every message's outcome has been recorded already.
   */
  async quit(): Promise<void> {
    if (this.usable) await this.#politeQuit();
    await this.#closeQuietly();
  }

  // -------------------------------------------------------------------------------------------------

  /** What one transaction (src/client/transaction.ts) uses of this session. */
  #makeLink(): TransactionLink {
    return {
      timeouts: this.#timeouts,
      session: this,
      command: (line, timeoutMs, what) => this.#command(line, timeoutMs, what),
      readReply: (timeoutMs, what) => this.#readReply(timeoutMs, what),
      writeBatch: async (commands, timeoutMs) => {
        if (!this.lineByLine) return await this.#conn.write(commands.join(""), { timeoutMs });
        for (const c of commands) await this.#writeRecord(c, timeoutMs);
      },
      writeBody: (body, first) =>
        writeBody(this.#conn, body, first, {
          timeoutMs: this.#timeouts.dataBlockMs,
          lineByLine: this.lineByLine,
          beforeTerminator: () => this.#trace(">", "<content> ."),
        }),
      trace: (line) => this.#trace(">", line),
      now: this.#clock,
      hasBufferedReply: () => this.#conn.hasBufferedInput(),
      pipelinedGroupRead: (slowestGapMs, waits) => {
        if (this.#mode !== "auto" || !this.#paced.observe(slowestGapMs, waits)) return;
        this.pipeliningDecision = { pipelining: false, reason: PACED_FALLBACK_REASON };
        this.#log?.info("pipelining off", { why: PACED_FALLBACK_REASON, gapMs: Math.round(slowestGapMs) });
      },
    };
  }

  /** One write, its own TLS record in line-by-line mode (src/client/body_writer.ts). */
  #writeRecord(data: string, timeoutMs: number): Promise<void> {
    return writeRecord(this.#conn, data, timeoutMs, this.lineByLine);
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
   * (never buffering more than one capped line). A 421 ends the session (RFC 5321 3.8) unless
   * `throwOn421` is false (the greeting, where a 421 is a refusal of its own).
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
