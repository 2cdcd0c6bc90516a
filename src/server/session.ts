/**
 * The server session loop shared by the intake (port 25) and ODMR (port 366) listeners
 * (docs/design.md#seams, 2). Handlers are a table, one function per verb; they return a reply and an
 * effect as data. This loop is the only code that reads commands and writes replies; it performs
 * the effects (close, STARTTLS, DATA, SASL continuation, ATRN turn), enforces the per-session
 * limits, and is the single boundary where errors become replies (seam 3):
 * an SmtpError's reply goes to the peer; anything else is a bug: logged with its stack, answered
 * `421 4.3.0`, and only this connection is closed.
 */
import { type Clock, systemClock } from "../clock.ts";
import type { Connection } from "../net/connection.ts";
import {
  BareLineEndingError,
  ConnectionClosedError,
  LineFloodError,
  LineTooLongError,
  ReadTimeoutError,
  TlsHandshakeError,
} from "../net/errors.ts";
import { type Command, findInvalidCommandChar, parseCommand } from "../smtp/command.ts";
import { formatReply } from "../smtp/reply.ts";
import {
  C221ForbiddenCommand,
  C421AuthTimeLimit,
  C421Evicted,
  C421LineTooLong,
  C421LocalError,
  C421ShuttingDown,
  C421Timeout,
  C421TooManyErrors,
  C500BareCr,
  C500BareLf,
  C500LineTooLong,
  C501InvalidCharacters,
  C554SyncError,
  type Reply,
  SmtpError,
} from "../smtp/reply_codes.ts";
import type { Logger } from "../log/logger.ts";

/** What the loop does after sending a handler's reply. */
export type Effect =
  /** Close the connection (after QUIT's 221, or a fatal error). */
  | { kind: "close" }
  /** The reply was `220 Ready to start TLS`: upgrade, then forget the session state (RFC 3207 4.2). */
  | { kind: "startTls" }
  /**
   * The reply was 354: the session reads the message and returns the reply to the final dot.
   * `remainingMs` is the time left under the whole-session cap (reads must not outlast it).
   */
  | { kind: "data"; receive: (budget: { remainingMs: () => number }) => Promise<HandlerResult> }
  /** The reply was a 334 challenge: the next line is the client's response (RFC 4954 4). */
  | {
    kind: "continue";
    next: (line: string) => Promise<HandlerResult> | HandlerResult;
    maxLength: number;
    /** Reply to a line over maxLength; it also ends the exchange (RFC 4954 4: 500 5.5.6). */
    tooLong?: Reply;
  }
  /**
   * The reply was `250` to ATRN: hand the connection over (RFC 2645 5.2.1); the session then ends.
   * `abandon` runs instead of `run` when the 250 could not be written (the peer is gone).
   */
  | { kind: "turn"; run: () => Promise<void>; abandon: () => void };

/** A handler's answer: a reply (null when the effect answers itself) and an optional effect. */
export interface HandlerResult {
  reply: Reply | null;
  effect?: Effect;
}

/** One verb's handler. `line` is the raw command line (for SASL initial responses and logging). */
export type Handler = (arg: string, line: string) => Promise<HandlerResult> | HandlerResult;

/** The per-listener behaviour the loop needs from a protocol (intake or ODMR). */
export interface Protocol {
  /** Handlers by upper-case verb; anything else is an unknown command. */
  handlers: Record<string, Handler>;
  /** Reply to an unknown verb (500 on port 25, 502 allowed on 366 by RFC 2645 5.4). */
  unknownCommand: Reply;
  /** Verbs after which buffered input means the client did not wait for the reply (RFC 2920 3.1). */
  mustEndBatch(verb: string): boolean;
  /** True when PIPELINING is advertised and the client has said EHLO. */
  pipeliningAllowed(): boolean;
  /** Verbs that count toward the junk-command limit (NOOP, RSET, VRFY, HELP, unknown). */
  isJunk(verb: string): boolean;
  /** Called after STARTTLS completes: reset to the state after the greeting (RFC 3207 4.2). */
  afterTls(): void;
  /** Verbs whose argument is logged redacted (AUTH). */
  redact?(verb: string): boolean;
  /** Allow non-ASCII in this command's argument (MAIL/RCPT with SMTPUTF8 advertised, RFC 6531). */
  allowsNonAscii?(verb: string): boolean;
  /** False until the client has authenticated (ODMR): the pre-AUTH deadline applies until then. */
  authenticated?(): boolean;
  /**
   * True while the session must not be closed to make room for others (authenticated). A session in
   * DATA is always protected; an open transaction is not, or holding MAIL would pin a slot.
   */
  protectedFromEviction?(): boolean;
}

/** Limits and identity the loop enforces. */
export interface SessionLimits {
  hostname: string;
  maxLineLength: number;
  idleTimeoutMs: number;
  sessionTimeoutMs: number;
  maxErrors: number;
  maxJunkCommands: number;
  greetingDelayMs: number;
  /** Advertise enhanced status codes in replies (RFC 2034). */
  enhancedCodes: boolean;
  /** Log every line at trace level. */
  wireTrace: boolean;
  /** Time from connect until `protocol.authenticated()` must be true; 0 or absent: no such deadline. */
  preAuthTimeoutMs?: number;
}

/** Session hooks for the server that owns the loop (shutdown, TLS context). */
export interface SessionContext {
  conn: Connection;
  logger: Logger;
  limits: SessionLimits;
  protocol: Protocol;
  /** Greeting reply (220, or 554 when refusing service). */
  greeting: Reply;
  /**
   * Upgrades to TLS; writes `readyReply` (the 220) itself once the plaintext reader is detached,
   * so a fast ClientHello cannot land in the plaintext buffer. Null when TLS is not configured.
   */
  startTls: ((conn: Connection, readyReply: string) => Promise<void>) | null;
  /** The clock of the session cap (default: the system clock). */
  clock?: Clock;
}

/** A continuation line that was refused (too long): the exchange is over, the session goes on. */
const ABANDONED = Symbol("abandoned");

const HTTP_OR_PROXY =
  /^(GET|POST|HEAD|PUT|DELETE|OPTIONS|CONNECT|PATCH) \S+( HTTP\/\d)?|^(Host|User-Agent|Accept):/i;

/** Runs one server session from the greeting to close. Never throws. */
export class SessionLoop {
  readonly #ctx: SessionContext;
  readonly #started: number;
  readonly #clock: Clock;
  #errors = 0;
  #junk = 0;
  #inData = false;
  #closing = false;
  #shutdownRequested = false;
  #firstCommand = true;

  constructor(ctx: SessionContext) {
    this.#ctx = ctx;
    this.#clock = ctx.clock ?? systemClock;
    this.#started = this.#clock.now();
  }

  /** True while a message is being received (shutdown waits for it). */
  get inData(): boolean {
    return this.#inData;
  }

  /**
   * Asks the session to end: idle sessions get `421 4.3.2` now; a session in DATA finishes its
   * message (the caller bounds that with the shutdown grace) and then gets the 421.
   */
  requestShutdown(): void {
    this.#shutdownRequested = true;
    if (!this.#inData && !this.#closing) {
      void this.#fatal(C421ShuttingDown(this.#ctx.limits.hostname), "shutdown");
    }
  }

  /**
   * True when the listener may close this session to make room for a newcomer: not receiving a
   * message, and not protected by the protocol (an authenticated ODMR customer).
   */
  get evictable(): boolean {
    return !this.#inData && !(this.#ctx.protocol.protectedFromEviction?.() ?? false);
  }

  /** Closes the session with `421 4.7.0` to make room for another connection (the listener is full). */
  evict(): void {
    void this.#fatal(C421Evicted(this.#ctx.limits.hostname), "evicted to make room");
  }

  /** Writes a reply, formatted for this session (wire trace at level trace). */
  async send(reply: Reply): Promise<void> {
    const text = formatReply(reply, { enhanced: this.#ctx.limits.enhancedCodes });
    if (this.#ctx.limits.wireTrace) this.#ctx.logger.trace("send", { line: text.trimEnd() });
    await this.#ctx.conn.write(text);
  }

  async #fatal(reply: Reply, reason: string): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#ctx.logger.info("closing", { reason, code: reply.code });
    try {
      await this.send(reply);
    } catch { /* the peer is gone; nothing more to say */ }
    await this.#ctx.conn.close();
  }

  /** The whole session. */
  async run(): Promise<void> {
    const { conn, limits } = this.#ctx;
    try {
      // docs/protocol.md#synchronization: a client that talks before the greeting is not a real MTA.
      const early = limits.greetingDelayMs > 0
        ? await conn.waitForInput(limits.greetingDelayMs)
        : conn.hasBufferedInput();
      if (early) return await this.#fatal(C554SyncError, "early talker");
      await this.send(this.#ctx.greeting);
      while (!this.#closing) {
        if (this.#shutdownRequested) return await this.#fatal(C421ShuttingDown(limits.hostname), "shutdown");
        const line = await this.#readCommandLine(limits.maxLineLength);
        if (line === null) return;
        if (line === ABANDONED) continue;
        await this.#dispatch(line);
      }
    } catch (error) {
      await this.#onError(error);
    } finally {
      if (!conn.isClosed) conn.destroy();
    }
  }

  /** Time left before the whole-session cap. */
  #remaining(): number {
    return this.#ctx.limits.sessionTimeoutMs - (this.#clock.now() - this.#started);
  }

  /** Time left before the pre-AUTH deadline, or Infinity when it does not apply (any more). */
  #preAuthRemaining(): number {
    const limit = this.#ctx.limits.preAuthTimeoutMs ?? 0;
    if (limit <= 0 || (this.#ctx.protocol.authenticated?.() ?? true)) return Infinity;
    return limit - (this.#clock.now() - this.#started);
  }

  /** How long the next read may wait: idle timeout, bounded by the session cap and the AUTH deadline. */
  #readTimeout(): number {
    return Math.max(1, Math.min(this.#ctx.limits.idleTimeoutMs, this.#remaining(), this.#preAuthRemaining()));
  }

  /** Reads one command line; handles the line-level errors; null when the session is over. */
  async #readCommandLine(
    maxLength: number,
    tooLong?: Reply,
    secret = false,
  ): Promise<string | null | typeof ABANDONED> {
    const { conn, limits } = this.#ctx;
    let timeoutMs = this.#readTimeout();
    if (this.#firstCommand) {
      const waitStarted = this.#clock.now();
      this.#firstCommand = false;
      // docs/protocol.md#non-smtp-clients: a TLS ClientHello (0x16) or SSLv2 hello on the plaintext port
      // gets 221 and close.
      if (!conn.isTls && await conn.waitForInput(timeoutMs)) {
        const chunk = await conn.readChunk({ timeoutMs });
        conn.unread(chunk);
        if (chunk[0] === 0x16 || chunk[0] === 0x80) {
          await this.#fatal(C221ForbiddenCommand, "TLS handshake on a plaintext port");
          return null;
        }
      }
      // One idle deadline covers the wait above and the read below.
      timeoutMs = Math.max(1, timeoutMs - (this.#clock.now() - waitStarted));
    }
    for (;;) {
      try {
        const line = await conn.readLine({ maxLength, timeoutMs });
        if (limits.wireTrace) {
          // A SASL continuation line is a credential (base64 digest or password): never log it.
          this.#ctx.logger.trace("recv", { line: secret ? "[redacted]" : this.#redactLine(line) });
        }
        return line;
      } catch (error) {
        if (error instanceof LineTooLongError) {
          // RFC 5321 4.5.3.1.4: "500 Line too long"; the rest of the line was discarded.
          if (!(await this.#replyError(tooLong ?? C500LineTooLong))) return null;
          if (tooLong) return ABANDONED;
          continue;
        }
        if (error instanceof BareLineEndingError) {
          // docs/protocol.md#bare-line-endings: never a line end; refuse and close (the stream can no
          // longer be trusted).
          await this.#fatal(
            error.character === "LF" ? C500BareLf : C500BareCr,
            "bare line ending in command",
          );
          return null;
        }
        if (error instanceof LineFloodError) {
          await this.#fatal(C421LineTooLong(limits.hostname), "no CRLF within the flood limit");
          return null;
        }
        if (error instanceof ReadTimeoutError) {
          if (this.#preAuthRemaining() <= 0) {
            // An unauthenticated connection holds a slot only briefly (docs/security.md).
            await this.#fatal(C421AuthTimeLimit(limits.hostname), "authentication time limit");
            return null;
          }
          // RFC 5321 4.5.3.2.7 and 3.8: a timeout is one of the reasons a server may close.
          await this.#fatal(
            C421Timeout(limits.hostname),
            this.#remaining() <= 0 ? "session time limit" : "idle timeout",
          );
          return null;
        }
        if (error instanceof ConnectionClosedError) return null;
        throw error;
      }
    }
  }

  #redactLine(line: string): string {
    const { verb } = parseCommand(line);
    return this.#ctx.protocol.redact?.(verb) ? `${verb} [redacted]` : line;
  }

  /** Sends an error reply and counts it; false when the error limit closed the session. */
  async #replyError(reply: Reply): Promise<boolean> {
    this.#errors++;
    if (this.#errors > this.#ctx.limits.maxErrors) {
      // RFC 5321 7.8 tolerates closing on abuse; Postfix: smtpd_hard_error_limit.
      await this.#fatal(C421TooManyErrors(this.#ctx.limits.hostname), "too many errors");
      return false;
    }
    await this.send(reply);
    return true;
  }

  async #dispatch(line: string): Promise<void> {
    const { protocol, conn } = this.#ctx;
    const command: Command = parseCommand(line);
    const { verb } = command;
    if (HTTP_OR_PROXY.test(line) && !(verb in protocol.handlers)) {
      // docs/protocol.md#non-smtp-clients: an HTTP client or proxy probe, not an MTA.
      return void await this.#fatal(C221ForbiddenCommand, "HTTP request on an SMTP port");
    }
    const invalid = findInvalidCommandChar(line, { allowNonAscii: protocol.allowsNonAscii?.(verb) ?? false });
    // U+FFFD is what the line decoder puts in place of invalid UTF-8 (RFC 6531 3.3 requires valid
    // UTF-8): refuse rather than accept an address the sender never wrote.
    if (invalid !== null || line.includes("\uFFFD")) {
      // RFC 5321 4.1.2: invalid characters with no other reason to refuse get 501.
      await this.#replyError(C501InvalidCharacters);
      return;
    }
    const handler = protocol.handlers[verb];
    if (protocol.isJunk(verb) || !handler) {
      this.#junk++;
      if (this.#junk > this.#ctx.limits.maxJunkCommands) {
        return void await this.#fatal(C421TooManyErrors(this.#ctx.limits.hostname), "too many junk commands");
      }
    }
    // RFC 2920 3.1: without PIPELINING, or after a command that must end a batch, the client must
    // wait for our reply; bytes already here mean it did not (docs/protocol.md#synchronization).
    if (conn.hasBufferedInput() && (!protocol.pipeliningAllowed() || protocol.mustEndBatch(verb))) {
      return void await this.#fatal(C554SyncError, `input pipelined after ${verb}`);
    }
    if (!handler) {
      await this.#replyError(protocol.unknownCommand);
      return;
    }
    await this.#perform(await this.#call(() => handler(command.arg, line)));
  }

  /** Calls a handler, turning an SmtpError into its reply. */
  async #call(fn: () => Promise<HandlerResult> | HandlerResult): Promise<HandlerResult> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof SmtpError) {
        if (error.logReason) {
          this.#ctx.logger.debug("refused", { reason: error.logReason, code: error.reply.code });
        }
        return { reply: error.reply };
      }
      throw error;
    }
  }

  async #perform(result: HandlerResult): Promise<void> {
    const { reply, effect } = result;
    if (effect?.kind === "startTls" && reply) return await this.#startTls(reply);
    if (effect?.kind === "turn" && reply) {
      try {
        await this.send(reply);
      } catch (error) {
        effect.abandon(); // release what the handler took (the domain leases)
        throw error;
      }
      this.#closing = true;
      await effect.run();
      return;
    }
    if (reply) {
      if (reply.code >= 400) {
        if (!(await this.#replyError(reply))) return;
      } else await this.send(reply);
    }
    if (!effect) return;
    switch (effect.kind) {
      case "close":
        this.#closing = true;
        await this.#ctx.conn.close();
        return;
      case "startTls":
        throw new Error("STARTTLS effect without its 220 reply");
      case "data": {
        this.#inData = true;
        let after: HandlerResult;
        try {
          after = await this.#call(() => effect.receive({ remainingMs: () => this.#remaining() }));
        } finally {
          this.#inData = false;
        }
        await this.#perform(after);
        if (this.#shutdownRequested && !this.#closing) {
          await this.#fatal(C421ShuttingDown(this.#ctx.limits.hostname), "shutdown after DATA");
        }
        return;
      }
      case "continue": {
        const line = await this.#readCommandLine(effect.maxLength, effect.tooLong, true);
        if (line === null || line === ABANDONED) return;
        await this.#perform(await this.#call(() => effect.next(line)));
        return;
      }
      case "turn":
        // After the turn this connection belongs to the SMTP client; the server loop ends here.
        this.#closing = true;
        await effect.run();
        return;
    }
  }

  /** RFC 3207 4: 220, handshake, then forget everything from before (4.2). */
  async #startTls(ready: Reply): Promise<void> {
    if (!this.#ctx.startTls) throw new Error("STARTTLS effect without a TLS context");
    const text = formatReply(ready, { enhanced: this.#ctx.limits.enhancedCodes });
    if (this.#ctx.limits.wireTrace) this.#ctx.logger.trace("send", { line: text.trimEnd() });
    try {
      await this.#ctx.startTls(this.#ctx.conn, text);
    } catch (error) {
      if (error instanceof TlsHandshakeError) {
        this.#closing = true;
        this.#ctx.logger.info("TLS handshake failed", { error: error.message });
        return;
      }
      throw error;
    }
    this.#ctx.logger.debug("TLS started", { ...this.#ctx.conn.tlsInfo() });
    this.#ctx.protocol.afterTls();
  }

  async #onError(error: unknown): Promise<void> {
    if (error instanceof ConnectionClosedError) return;
    if (error instanceof ReadTimeoutError) {
      return await this.#fatal(C421Timeout(this.#ctx.limits.hostname), "timeout");
    }
    // Anything else is a bug: keep the process, drop this connection (docs/design.md#seams, 3).
    this.#ctx.logger.error("session failed", {
      error: String(error),
      stack: (error as Error)?.stack?.split("\n").slice(1, 4).join(" | "),
    });
    await this.#fatal(C421LocalError(this.#ctx.limits.hostname), "internal error");
  }
}
