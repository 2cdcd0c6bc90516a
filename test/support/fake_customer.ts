/**
 * A scriptable fake CUSTOMER for client tests: a loopback `net.Server` that plays the SMTP server side of
 * a reversed ODMR session (greeting, EHLO keywords, a reply per command, end-of-data handling) and can
 * misbehave on request (no greeting, floods, hangs, closing mid-DATA, line-by-line replies like
 * fetchmail's relay). `connect()` returns a {@linkcode LineConnection} over the connecting socket, exactly
 * what the ODMR server hands to the client after the turn.
 *
 * @module
 */

import * as net from "node:net";
import { LineConnection, type LineConnectionOptions } from "../../src/net/line_connection.ts";

/** What the fake does instead of (or besides) a plain reply. */
export type FakeAction =
  /** Send these bytes as they are (no CRLF added). */
  | { kind: "raw"; data: string | Uint8Array }
  /** Close the connection now, after writing `reply` when given. */
  | { kind: "close"; reply?: string }
  /** Never answer (the client's timeout must fire). */
  | { kind: "hang" }
  /** Wait, then reply. */
  | { kind: "delay"; ms: number; reply: string };

/** A reply: reply text (lines joined by CRLF, final CRLF added) or an action. */
export type FakeReply = string | FakeAction;

/** A message as the fake received it (content dot-unstuffed, CRLF kept). */
export interface ReceivedMessage {
  /** The MAIL command line as sent. */
  mail: string;
  /** The RCPT command lines that were accepted. */
  rcpts: string[];
  /** The content between the 354 and the final dot, unstuffed. */
  data: Uint8Array;
}

/** State visible to the script's hooks. */
export interface FakeSession {
  /** Every command line received, in order (content excluded). */
  commands: string[];
  /** Command lines grouped by the network read that delivered them (a group of more than one = pipelined). */
  reads: string[][];
  /** Messages completed with the final dot (whatever the reply was). */
  messages: ReceivedMessage[];
  /** The current transaction: MAIL line and accepted RCPT lines. */
  mail: string | null;
  /** Accepted RCPT lines of the current transaction. */
  rcpts: string[];
  /** Count of commands seen per verb (upper-case). */
  verbs: Map<string, number>;
  /** Resolves when the connection has closed. */
  closed: Promise<void>;
}

/** The script. Every field is optional. */
export interface FakeScript {
  /** Greeting text (`null` = say nothing). Default `220 customer.test ESMTP ready`. */
  greeting?: FakeReply | null;
  /** EHLO keywords. Default PIPELINING, SIZE 52428800, 8BITMIME, SMTPUTF8, DSN, ENHANCEDSTATUSCODES. */
  keywords?: string[];
  /** Per-command override: return `undefined` for the default reply. */
  respond?: (line: string, session: FakeSession) => FakeReply | undefined;
  /** Reply to the final dot; default `250 2.0.0 Ok: queued`. */
  endOfData?: (message: ReceivedMessage, session: FakeSession) => FakeReply | undefined;
  /** Called with each content chunk while in DATA; return an action to misbehave mid-DATA. */
  onContent?: (bytesSoFar: number, session: FakeSession) => FakeAction | undefined;
  /** Write multi-line replies one line at a time with this pause between lines (a line relay). */
  lineByLineMs?: number;
  /**
   * Emulate Nagle's algorithm with the client's delayed ACK of this many ms: a write while an earlier one
   * is unacknowledged is held, and the held bytes leave together when the client sends something (its
   * ACK rides on it) or when the delayed ACK fires.
   */
  nagleMs?: number;
}

/** Default EHLO keywords of the fake. */
export const DEFAULT_KEYWORDS = [
  "PIPELINING",
  "SIZE 52428800",
  "8BITMIME",
  "SMTPUTF8",
  "DSN",
  "ENHANCEDSTATUSCODES",
];

/** A running fake customer. */
export interface FakeCustomer {
  /** Loopback port. */
  port: number;
  /** Sessions in connection order. */
  sessions: FakeSession[];
  /** Connects and returns the client-side LineConnection plus the server-side session state. */
  connect(options?: LineConnectionOptions): Promise<{ conn: LineConnection; session: FakeSession }>;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

const CRLF = new Uint8Array([0x0d, 0x0a]);

/** Starts a fake customer on 127.0.0.1 with `script`. */
export async function startFakeCustomer(script: FakeScript = {}): Promise<FakeCustomer> {
  const sockets = new Set<net.Socket>();
  const sessions: FakeSession[] = [];
  const waiting: Array<(s: FakeSession) => void> = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const session = serve(socket, script);
    sessions.push(session);
    waiting.shift()?.(session);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    sessions,
    async connect(options = {}) {
      const accepted = new Promise<FakeSession>((resolve) => waiting.push(resolve));
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.on("error", () => {});
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("error", reject);
      });
      const conn = new LineConnection(socket, { closeGraceMs: 200, ...options });
      return { conn, session: await accepted };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function serve(socket: net.Socket, script: FakeScript): FakeSession {
  socket.setNoDelay(true);
  let resolveClosed!: () => void;
  const session: FakeSession = {
    commands: [],
    reads: [],
    messages: [],
    mail: null,
    rcpts: [],
    verbs: new Map(),
    closed: new Promise<void>((resolve) => (resolveClosed = resolve)),
  };
  socket.on("close", () => resolveClosed());
  socket.on("error", () => {});

  let buf = new Uint8Array(0);
  let inData = false;
  let dataParts: Uint8Array[] = [];
  let dataBytes = 0;
  let hung = false;
  let busy: Promise<void> = Promise.resolve();
  // Nagle emulation (script.nagleMs): bytes waiting for the "ACK" of the last segment sent.
  let unacked = false;
  let held = "";
  let ackTimer: ReturnType<typeof setTimeout> | undefined;
  const acked = () => {
    clearTimeout(ackTimer);
    unacked = false;
    if (held && !socket.destroyed) {
      const out = held;
      held = "";
      segment(out);
    }
  };
  const segment = (text: string) => {
    socket.write(text);
    unacked = true;
    ackTimer = setTimeout(acked, script.nagleMs);
  };
  const write = (text: string) => {
    if (script.nagleMs === undefined) socket.write(text);
    else if (unacked) held += text;
    else segment(text);
  };
  socket.on("close", () => clearTimeout(ackTimer));

  const send = async (reply: FakeReply): Promise<void> => {
    if (socket.destroyed) return;
    if (typeof reply === "string") {
      const lines = reply.split("\r\n");
      if (script.lineByLineMs !== undefined && lines.length > 1) {
        for (const line of lines) {
          socket.write(`${line}\r\n`);
          await sleep(script.lineByLineMs);
        }
      } else {
        write(`${reply}\r\n`);
      }
      return;
    }
    switch (reply.kind) {
      case "raw":
        socket.write(reply.data);
        return;
      case "close":
        if (reply.reply !== undefined) socket.end(`${reply.reply}\r\n`);
        else socket.destroy();
        return;
      case "hang":
        hung = true;
        return;
      case "delay":
        await sleep(reply.ms);
        await send(reply.reply);
        return;
    }
  };

  const defaultReply = (line: string): FakeReply => {
    const verb = (line.split(" ")[0] ?? "").toUpperCase();
    switch (verb) {
      case "EHLO":
        return ["250-customer.test hello", ...(script.keywords ?? DEFAULT_KEYWORDS)]
          .map((
            l,
            i,
            all,
          ) => (i === all.length - 1 ? `250 ${l.replace(/^250-/, "")}` : i === 0 ? l : `250-${l}`))
          .join("\r\n");
      case "HELO":
        return "250 customer.test";
      case "MAIL":
        session.mail = line;
        session.rcpts = [];
        return "250 2.1.0 Ok";
      case "RCPT":
        return "250 2.1.5 Ok";
      case "DATA":
        return session.rcpts.length > 0
          ? "354 End data with <CR><LF>.<CR><LF>"
          : "554 5.5.1 Error: no valid recipients";
      case "RSET":
        session.mail = null;
        session.rcpts = [];
        return "250 2.0.0 Ok";
      case "NOOP":
        return "250 2.0.0 Ok";
      case "QUIT":
        return "221 2.0.0 Bye";
      default:
        return "502 5.5.2 Error: command not recognized";
    }
  };

  const handleCommand = async (line: string): Promise<void> => {
    session.commands.push(line);
    const verb = (line.split(" ")[0] ?? "").toUpperCase();
    session.verbs.set(verb, (session.verbs.get(verb) ?? 0) + 1);
    if (verb === "MAIL") {
      session.mail = line;
      session.rcpts = [];
    }
    const reply = script.respond?.(line, session) ?? defaultReply(line);
    // A delayed reply counts as the reply it delays.
    const text = typeof reply === "string"
      ? reply
      : reply.kind === "delay" && typeof reply.reply === "string"
      ? reply.reply
      : null;
    if (verb === "RCPT" && text?.startsWith("2")) session.rcpts.push(line);
    if (verb === "DATA" && text?.startsWith("354")) {
      inData = true;
      dataParts = [];
      dataBytes = 0;
    }
    await send(reply);
    if (verb === "QUIT" && typeof reply === "string" && reply.startsWith("221")) socket.end();
  };

  const endData = async (): Promise<void> => {
    inData = false;
    const data = concat(dataParts);
    const message: ReceivedMessage = { mail: session.mail ?? "", rcpts: session.rcpts, data };
    session.messages.push(message);
    const reply = script.endOfData?.(message, session) ?? "250 2.0.0 Ok: queued";
    session.mail = null;
    session.rcpts = [];
    await send(reply);
  };

  /** Consumes complete lines from `buf`; returns when more bytes are needed. */
  const process = async (): Promise<void> => {
    const group: string[] = [];
    for (;;) {
      if (hung || socket.destroyed) return;
      const end = indexOfCrlf(buf);
      if (end < 0) break;
      const lineBytes = buf.subarray(0, end);
      buf = buf.subarray(end + 2);
      if (inData) {
        if (lineBytes.length === 1 && lineBytes[0] === 0x2e) {
          await endData();
          continue;
        }
        // RFC 5321 4.5.2: remove one leading dot.
        const content = lineBytes[0] === 0x2e ? lineBytes.subarray(1) : lineBytes;
        dataParts.push(content.slice(), CRLF);
        dataBytes += content.length + 2;
        const action = script.onContent?.(dataBytes, session);
        if (action !== undefined) {
          await send(action);
          if (action.kind === "close") return;
        }
        continue;
      }
      const line = new TextDecoder().decode(lineBytes);
      group.push(line);
      await handleCommand(line);
    }
    if (group.length > 0) session.reads.push(group);
  };

  socket.on("data", (chunk: Uint8Array) => {
    if (script.nagleMs !== undefined && unacked) acked(); // the client's data carries the ACK
    const next = new Uint8Array(buf.length + chunk.length);
    next.set(buf);
    next.set(chunk, buf.length);
    buf = next;
    busy = busy.then(process);
  });

  if (script.greeting !== null) void send(script.greeting ?? "220 customer.test ESMTP ready");
  return session;
}

function indexOfCrlf(buf: Uint8Array): number {
  for (let i = buf.indexOf(0x0d); i >= 0 && i + 1 < buf.length; i = buf.indexOf(0x0d, i + 1)) {
    if (buf[i + 1] === 0x0a) return i;
  }
  return -1;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
