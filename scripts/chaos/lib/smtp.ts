/**
 * A small SMTP client for the suites: a line reader over a loopback socket (any 127.x source
 * address), replies parsed as RFC 5321 4.2 multi-line groups, and one-message transactions that report
 * exactly how far they got. "Accepted" means the client read a complete `250` line to the final dot,
 * which is the moment responsibility passes to the relay (RFC 5321 6.1): only those count as
 * acknowledged.
 */
import * as net from "node:net";

/** One SMTP reply. */
export interface Reply {
  code: number;
  lines: string[];
  /** The last line's text after the code. */
  text: string;
}

/** The connection was closed or reset, or a reply did not come in time. */
export class ConnectionLost extends Error {
  constructor(what: string) {
    super(what);
    this.name = "ConnectionLost";
  }
}

/** Where to connect. */
export interface Target {
  port: number;
  host?: string;
  /** Source address (127.0.x.y spreads connections over many "clients" for per-IP limits). */
  localAddress?: string;
}

/** A socket read line by line; replies are assembled from lines. */
export class LineSocket {
  readonly socket: net.Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #lines: string[] = [];
  #waiter: (() => void) | null = null;
  #ended: string | null = null;
  /** Every byte received (for the fuzzer's checks). */
  received = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => {
      this.received += d.length;
      this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, d]) : d;
      for (let i; (i = this.#buffer.indexOf("\r\n")) >= 0;) {
        this.#lines.push(this.#buffer.subarray(0, i).toString("latin1"));
        this.#buffer = this.#buffer.subarray(i + 2);
      }
      this.#wake();
    });
    socket.on("error", (e) => this.#end(`socket error: ${e.message}`));
    socket.on("close", () => this.#end("connection closed"));
  }

  /** Connects; rejects with ConnectionLost when the connection cannot be made in time. */
  static connect(target: Target, timeoutMs = 10_000): Promise<LineSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: target.host ?? "127.0.0.1",
        port: target.port,
        ...(target.localAddress ? { localAddress: target.localAddress } : {}),
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionLost("connect timed out"));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new LineSocket(socket));
      });
      socket.once("error", (e) => {
        clearTimeout(timer);
        reject(new ConnectionLost(`connect: ${e.message}`));
      });
    });
  }

  /** Wraps a socket that is already connected (a server-side socket of a sink). */
  static over(socket: net.Socket): LineSocket {
    return new LineSocket(socket);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  #end(why: string): void {
    this.#ended ??= why;
    this.#wake();
  }

  get ended(): boolean {
    return this.#ended !== null;
  }

  /** The next line (without CRLF). */
  async line(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.#lines.shift();
      if (line !== undefined) return line;
      if (this.#ended !== null) throw new ConnectionLost(this.#ended);
      const left = deadline - Date.now();
      if (left <= 0) throw new ConnectionLost(`no line within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The next complete reply. */
  async reply(timeoutMs: number): Promise<Reply> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.line(timeoutMs);
      lines.push(line);
      if (!/^\d{3}-/.test(line)) {
        const code = Number(line.slice(0, 3));
        return { code: Number.isFinite(code) ? code : 0, lines, text: line.slice(4) };
      }
    }
  }

  /** Bytes already read but not yet consumed as lines. */
  pendingBytes(): Buffer {
    return this.#buffer;
  }

  /** Writes and resolves once the bytes are handed to the kernel (or the socket is gone). */
  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(data, () => resolve());
    });
  }

  /** Sends a command line and reads its reply. */
  async command(line: string, timeoutMs: number): Promise<Reply> {
    void this.write(`${line}\r\n`);
    return await this.reply(timeoutMs);
  }

  /** Closes abruptly (RST when the runtime can, FIN otherwise). */
  destroy(): void {
    const s = this.socket as net.Socket & { resetAndDestroy?: () => void };
    if (typeof s.resetAndDestroy === "function" && !s.destroyed) {
      try {
        s.resetAndDestroy();
        return;
      } catch { /* fall back to destroy */ }
    }
    s.destroy();
  }

  /** Closes politely (FIN). */
  end(): void {
    this.socket.end();
  }
}

/** RFC 5321 4.5.2: a content line that starts with "." gets another "." in front. */
export function dotStuff(body: Uint8Array): Buffer {
  const src = Buffer.from(body.buffer, body.byteOffset, body.length);
  const parts: Buffer[] = [];
  let start = 0;
  let lineStart = 0;
  while (lineStart < src.length) {
    if (src[lineStart] === 0x2e) {
      parts.push(src.subarray(start, lineStart), DOT);
      start = lineStart;
    }
    const nl = src.indexOf(0x0a, lineStart);
    if (nl < 0) break;
    lineStart = nl + 1;
  }
  parts.push(src.subarray(start));
  return Buffer.concat(parts);
}
const DOT = Buffer.from(".");

/** A message to send. The body is CRLF text ending in CRLF, not dot-stuffed. */
export interface Outgoing {
  from: string;
  rcpts: string[];
  body: Uint8Array;
  /** ESMTP parameters for MAIL (e.g. `RET=HDRS`). */
  mailParams?: string;
}

/** How a transaction ended. */
export interface SendResult {
  /** accepted: 250 to the final dot; refused: a reply other than the expected one; lost: no reply. */
  outcome: "accepted" | "refused" | "lost";
  /** The step that ended it: greeting, ehlo, mail, rcpt, data, dot. */
  stage: string;
  code: number;
  text: string;
  /** The relay's queue id from `250 2.0.0 Ok: queued as N`. */
  queueId: number | null;
}

/** An SMTP client session that can send several messages in one connection. */
export class SmtpSession {
  readonly conn: LineSocket;
  readonly timeoutMs: number;

  private constructor(conn: LineSocket, timeoutMs: number) {
    this.conn = conn;
    this.timeoutMs = timeoutMs;
  }

  /** Connects, reads the greeting, says EHLO. Returns a result instead of a session when that fails. */
  static async open(
    target: Target,
    helo = "client.chaos.test",
    timeoutMs = 30_000,
  ): Promise<SmtpSession | SendResult> {
    let conn: LineSocket;
    try {
      conn = await LineSocket.connect(target, timeoutMs);
    } catch (error) {
      return lost("connect", error);
    }
    const session = new SmtpSession(conn, timeoutMs);
    try {
      const greeting = await conn.reply(timeoutMs);
      if (greeting.code !== 220) return session.#refused("greeting", greeting);
      const ehlo = await conn.command(`EHLO ${helo}`, timeoutMs);
      if (ehlo.code !== 250) return session.#refused("ehlo", ehlo);
    } catch (error) {
      conn.destroy();
      return lost("greeting", error);
    }
    return session;
  }

  #refused(stage: string, reply: Reply): SendResult {
    this.conn.destroy();
    return { outcome: "refused", stage, code: reply.code, text: reply.text, queueId: null };
  }

  /** One transaction. After "refused" at MAIL/RCPT/dot the session is still usable; after "lost" not. */
  async send(message: Outgoing): Promise<SendResult> {
    const c = this.conn;
    const t = this.timeoutMs;
    let stage = "mail";
    try {
      const mail = await c.command(
        `MAIL FROM:<${message.from}>${message.mailParams ? ` ${message.mailParams}` : ""}`,
        t,
      );
      if (mail.code !== 250) return refusedAt(stage, mail);
      stage = "rcpt";
      let accepted = 0;
      let lastRefusal: Reply | null = null;
      for (const rcpt of message.rcpts) {
        const r = await c.command(`RCPT TO:<${rcpt}>`, t);
        if (r.code === 250) accepted++;
        else lastRefusal = r;
      }
      if (accepted === 0) {
        await c.command("RSET", t);
        return refusedAt(stage, lastRefusal!);
      }
      stage = "data";
      const data = await c.command("DATA", t);
      if (data.code !== 354) return refusedAt(stage, data);
      stage = "dot";
      void c.write(dotStuff(message.body));
      const final = await c.command(".", t);
      if (final.code !== 250) return refusedAt(stage, final);
      const id = /queued as (\d+)/.exec(final.text);
      return { outcome: "accepted", stage, code: 250, text: final.text, queueId: id ? Number(id[1]) : null };
    } catch (error) {
      c.destroy();
      return lost(stage, error);
    }
  }

  /** QUIT without waiting long for the 221. */
  async quit(): Promise<void> {
    try {
      await this.conn.command("QUIT", 2000);
    } catch { /* the relay may be gone */ }
    this.conn.destroy();
  }
}

function refusedAt(stage: string, reply: Reply): SendResult {
  return { outcome: "refused", stage, code: reply.code, text: reply.text, queueId: null };
}

function lost(stage: string, error: unknown): SendResult {
  if (!(error instanceof ConnectionLost)) throw error;
  return { outcome: "lost", stage, code: 0, text: error.message, queueId: null };
}

/** One message in one connection, then QUIT. */
export async function sendOne(target: Target, message: Outgoing, timeoutMs = 30_000): Promise<SendResult> {
  const session = await SmtpSession.open(target, "client.chaos.test", timeoutMs);
  if (!(session instanceof SmtpSession)) return session;
  const result = await session.send(message);
  if (result.outcome !== "lost") await session.quit();
  return result;
}

/** The i-th loopback source address of a spread: 127.0.{1..250}.{1..250}, never 127.0.0.1 itself. */
export function sourceAddress(i: number): string {
  return `127.0.${1 + Math.floor(i / 250) % 250}.${1 + (i % 250)}`;
}
