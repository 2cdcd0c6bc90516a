/**
 * A recording SMTP server on loopback: the customer's MTA behind `odmr-relay pull`, and the fake
 * smarthost that DSNs go to. It answers like a plain MTA (no PIPELINING, so every step is its own
 * round trip), dot-unstuffs DATA, and hands each complete message to `onMessage` BEFORE it answers
 * the final dot: what the callback has seen is exactly what this server has taken responsibility
 * for, even if the sending side dies before reading the 250.
 */
import * as net from "node:net";

/** A message as received. */
export interface SinkMessage {
  from: string;
  rcpts: string[];
  data: Buffer;
}

/** Options; all optional. */
export interface SinkOptions {
  /** Reply to RCPT for an address (default 250). */
  rcptReply?: (address: string) => string;
  /** Called with each complete message before the final 250 (return another reply to refuse it). */
  onMessage?: (message: SinkMessage) => string | void;
  /** Pause before every reply (a slow MX, so kills land while sending). */
  replyDelayMs?: number;
  /** EHLO keywords (default 8BITMIME, SIZE, ENHANCEDSTATUSCODES, SMTPUTF8). */
  keywords?: string[];
}

/** Longest command line or data line accepted (generous: a sink must not be the thing that fails). */
const MAX_LINE = 1 << 20;

/** A running sink. */
export class Sink {
  readonly #server: net.Server;
  readonly #options: SinkOptions;
  readonly #sockets = new Set<net.Socket>();
  port = 0;
  sessions = 0;
  messages = 0;

  constructor(options: SinkOptions = {}) {
    this.#options = options;
    this.#server = net.createServer((socket) => this.#serve(socket));
  }

  /** Listens on 127.0.0.1 and a free port. */
  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  /** Stops and drops every connection. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: net.Socket): void {
    this.sessions++;
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const o = this.#options;
    const keywords = o.keywords ?? ["8BITMIME", "SIZE 104857600", "ENHANCEDSTATUSCODES", "SMTPUTF8"];
    let buffer: Buffer = Buffer.alloc(0);
    let inData = false;
    let from = "";
    let rcpts: string[] = [];
    let data: Buffer[] = [];
    let replies = Promise.resolve();
    const reply = (text: string) => {
      // Replies stay in order even with a delay: each waits for the one before.
      replies = replies.then(async () => {
        if (o.replyDelayMs) await new Promise((r) => setTimeout(r, o.replyDelayMs));
        if (!socket.destroyed) socket.write(`${text}\r\n`);
      });
    };
    const onLine = (raw: Buffer) => {
      if (inData) {
        if (raw.length === 1 && raw[0] === 0x2e) {
          inData = false;
          const message = { from, rcpts, data: Buffer.concat(data) };
          data = [];
          this.messages++;
          const answer = o.onMessage?.(message);
          reply(answer ?? "250 2.0.0 Ok: queued");
          rcpts = [];
          return;
        }
        data.push(raw[0] === 0x2e ? raw.subarray(1) : raw, CRLF);
        return;
      }
      const line = raw.toString("latin1");
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO") {
        const lines = ["sink.chaos.test", ...keywords];
        reply(lines.map((k, i) => `250${i === lines.length - 1 ? " " : "-"}${k}`).join("\r\n"));
      } else if (verb === "HELO") reply("250 sink.chaos.test");
      else if (verb === "MAIL") {
        from = /<([^>]*)>/.exec(line)?.[1] ?? "";
        rcpts = [];
        reply("250 2.1.0 Ok");
      } else if (verb === "RCPT") {
        const address = /<([^>]*)>/.exec(line)?.[1] ?? "";
        const answer = o.rcptReply?.(address) ?? "250 2.1.5 Ok";
        if (answer.startsWith("2")) rcpts.push(address);
        reply(answer);
      } else if (verb === "DATA") {
        if (rcpts.length === 0) return reply("554 5.5.1 Error: no valid recipients");
        inData = true;
        reply("354 End data with <CR><LF>.<CR><LF>");
      } else if (verb === "RSET") {
        rcpts = [];
        reply("250 2.0.0 Ok");
      } else if (verb === "QUIT") {
        replies = replies.then(() => void socket.end("221 2.0.0 Bye\r\n"));
      } else if (verb === "NOOP") reply("250 2.0.0 Ok");
      else reply("502 5.5.2 Error: command not recognized");
    };
    socket.on("data", (chunk: Buffer) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      let start = 0;
      for (let i; (i = buffer.indexOf(CRLF, start)) >= 0; start = i + 2) onLine(buffer.subarray(start, i));
      buffer = buffer.subarray(start);
      if (buffer.length > MAX_LINE) socket.destroy();
    });
    socket.on("error", () => {});
    socket.on("close", () => this.#sockets.delete(socket));
    socket.write("220 sink.chaos.test ESMTP chaos sink\r\n");
  }
}
const CRLF = Buffer.from("\r\n");
