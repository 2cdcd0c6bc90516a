/**
 * A receiving SMTP server for the outbound tests: a loopback `net.Server` bound to a chosen address
 * (any of 127.0.0.0/8, so fake DNS can give each MX host its own address on the same port) that
 * accepts mail and records it. It can offer STARTTLS (RFC 3207, server side of
 * {@linkcode LineConnection.startTlsServer}) and AUTH PLAIN/LOGIN (RFC 4954) with one account, greet
 * with something else than 220, never greet, or refuse recipients.
 *
 * The Postfix-backed sink (test/client/_smtp_sink.ts) cannot bind a chosen address, offer TLS or AUTH,
 * and the scriptable fake customer (test/support/fake_customer.ts) binds 127.0.0.1 only and has no
 * TLS; hence this one. Bounded: per-line timeouts, command count, message size.
 *
 * @module
 */

import * as net from "node:net";
import type * as tls from "node:tls";
import { LineConnection } from "../../src/net/line_connection.ts";

/** Most commands in one session. */
const MAX_COMMANDS = 1000;
/** Largest message accepted. */
const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
/** Wait for the next line from the client. */
const LINE_TIMEOUT_MS = 10_000;
/** Longest content line, octets including CRLF (RFC 5321 4.5.3.1.6). */
const MAX_DATA_LINE = 1000;

/** A message as received. */
export interface ReceivedMail {
  /** The MAIL command line. */
  mail: string;
  /** Accepted recipient addresses (without brackets). */
  rcpts: string[];
  /** The content, dot-unstuffed, CRLF kept. */
  data: string;
  /** Whether the session was under TLS. */
  tls: boolean;
  /** The user that authenticated, or `null`. */
  authUser: string | null;
}

/** One connection as the fake saw it. */
export interface FakeMxSession {
  /** Command lines in order (AUTH lines included, test data only). */
  commands: string[];
  /** Whether STARTTLS completed. */
  tls: boolean;
}

/** Options; all optional. */
export interface FakeMxOptions {
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Port. Default 0 (a free one). */
  port?: number;
  /** Greeting line(s) without CRLF, or `null` to stay silent. Default `220 <name> ESMTP fake`. */
  greeting?: string | null;
  /** Name in the greeting and EHLO reply. Default `fake-mx.test`. */
  name?: string;
  /** EHLO keywords besides STARTTLS and AUTH. Default PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES. */
  keywords?: string[];
  /** Offer STARTTLS with this context. */
  tls?: tls.SecureContext;
  /** Offer AUTH (only under TLS) for this account. */
  auth?: { username: string; password: string };
  /** Mechanisms offered with `auth`. Default PLAIN and LOGIN. */
  authMechanisms?: string[];
  /** Answer STARTTLS with 220, then drop the connection instead of a handshake (a broken TLS stack). */
  brokenTls?: boolean;
  /** Reply to RCPT for this address instead of `250 2.1.5 Ok`. */
  rcptReply?: (address: string) => string | undefined;
}

/** A running fake MX. */
export interface FakeMx {
  host: string;
  port: number;
  /** Messages received (after `250` to the final dot). */
  messages: ReceivedMail[];
  /** Connections in arrival order. */
  sessions: FakeMxSession[];
  /** Stops listening and drops every connection. */
  close(): Promise<void>;
}

/** Starts a fake MX. */
export async function startFakeMx(options: FakeMxOptions = {}): Promise<FakeMx> {
  const host = options.host ?? "127.0.0.1";
  const messages: ReceivedMail[] = [];
  const sessions: FakeMxSession[] = [];
  const conns = new Set<LineConnection>();
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    const conn = new LineConnection(socket, { closeGraceMs: 200 });
    conns.add(conn);
    const session: FakeMxSession = { commands: [], tls: false };
    sessions.push(session);
    serve(conn, session, options, messages).catch(() => {}).finally(() => {
      conns.delete(conn);
      conn.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    host,
    port,
    messages,
    sessions,
    async close() {
      for (const c of conns) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function serve(
  conn: LineConnection,
  session: FakeMxSession,
  options: FakeMxOptions,
  messages: ReceivedMail[],
): Promise<void> {
  const name = options.name ?? "fake-mx.test";
  const say = (text: string) => conn.write(`${text}\r\n`);
  if (options.greeting === null) {
    await conn.closed; // never greet: the client's greeting timeout must fire
    return;
  }
  await say(options.greeting ?? `220 ${name} ESMTP fake`);
  if (!(options.greeting ?? "220").startsWith("220")) {
    await conn.close(); // a refusing greeting, then FIN (the reply must get out before the close)
    return;
  }

  let authUser: string | null = null;
  let mail: string | null = null;
  let rcpts: string[] = [];
  while (session.commands.length < MAX_COMMANDS) {
    const line = await conn.readLine({ timeoutMs: LINE_TIMEOUT_MS, maxLength: 12_288 });
    session.commands.push(line);
    const verb = line.split(" ", 1)[0]!.toUpperCase();
    const arg = line.slice(verb.length + 1);
    if (verb === "EHLO" || verb === "HELO") {
      const keywords = [
        ...(options.keywords ?? ["PIPELINING", "8BITMIME", "SIZE 10485760", "ENHANCEDSTATUSCODES"]),
      ];
      if (options.tls !== undefined && !conn.isTls) keywords.push("STARTTLS");
      if (options.auth !== undefined && conn.isTls) {
        keywords.push(`AUTH ${(options.authMechanisms ?? ["PLAIN", "LOGIN"]).join(" ")}`);
      }
      const lines = [name, ...(verb === "EHLO" ? keywords : [])];
      await say(lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}`).join("\r\n"));
    } else if (verb === "STARTTLS" && options.tls !== undefined && !conn.isTls) {
      if (options.brokenTls) {
        await say("220 2.0.0 Ready to start TLS");
        return;
      }
      await conn.startTlsServer(options.tls, { readyReply: "220 2.0.0 Ready to start TLS\r\n" });
      session.tls = true;
      mail = null;
      rcpts = [];
    } else if (verb === "AUTH" && options.auth !== undefined && conn.isTls) {
      const [mechanism, initial] = arg.split(" ");
      let user: string | undefined;
      let pass: string | undefined;
      if (mechanism?.toUpperCase() === "PLAIN") {
        const fields = decode(initial ?? "").split("\0");
        user = fields[1];
        pass = fields[2];
      } else if (mechanism?.toUpperCase() === "LOGIN") {
        await say("334 VXNlcm5hbWU6");
        user = decode(await conn.readLine({ timeoutMs: LINE_TIMEOUT_MS }));
        await say("334 UGFzc3dvcmQ6");
        pass = decode(await conn.readLine({ timeoutMs: LINE_TIMEOUT_MS }));
      }
      if (user === options.auth.username && pass === options.auth.password) {
        authUser = user;
        await say("235 2.7.0 Authentication successful");
      } else {
        await say("535 5.7.8 Error: authentication failed");
      }
    } else if (verb === "MAIL") {
      mail = line;
      rcpts = [];
      await say("250 2.1.0 Ok");
    } else if (verb === "RCPT") {
      const address = /<([^>]*)>/.exec(arg)?.[1] ?? "";
      const reply = options.rcptReply?.(address) ?? "250 2.1.5 Ok";
      if (reply.startsWith("2")) rcpts.push(address);
      await say(reply);
    } else if (verb === "DATA") {
      if (mail === null || rcpts.length === 0) {
        await say("554 5.5.1 Error: no valid recipients");
        continue;
      }
      await say("354 End data with <CR><LF>.<CR><LF>");
      const data = await readContent(conn);
      messages.push({ mail, rcpts, data, tls: conn.isTls, authUser });
      mail = null;
      rcpts = [];
      await say("250 2.0.0 Ok: queued as FAKE");
    } else if (verb === "RSET" || verb === "NOOP") {
      mail = null;
      rcpts = [];
      await say("250 2.0.0 Ok");
    } else if (verb === "QUIT") {
      await say("221 2.0.0 Bye");
      await conn.close();
      return;
    } else {
      await say("502 5.5.2 Error: command not recognized");
    }
  }
}

/** The content up to the lone ".", unstuffed (RFC 5321 4.5.2). */
async function readContent(conn: LineConnection): Promise<string> {
  let data = "";
  for (;;) {
    const line = await conn.readLine({ timeoutMs: LINE_TIMEOUT_MS, maxLength: MAX_DATA_LINE });
    if (line === ".") return data;
    data += (line.startsWith(".") ? line.slice(1) : line) + "\r\n";
    if (data.length > MAX_MESSAGE_BYTES) throw new Error("Message too large for the fake MX");
  }
}

function decode(base64: string): string {
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
  } catch {
    return "";
  }
}
