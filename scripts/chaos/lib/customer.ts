/**
 * An in-process ODMR customer for the fault and load suites: EHLO, AUTH CRAM-MD5 (RFC 2195), ATRN
 * (RFC 2645), and then the customer's side of the reversed session on the same socket, with the
 * option to vanish at any step. `odmr-relay pull` is the real customer elsewhere; this one exists
 * because a real client cannot be told to drop the connection right after the 354.
 */
import { createHmac } from "node:crypto";
import { LineSocket, type Reply, type Target } from "./smtp.ts";

/** Replies from the relay before the turn come quickly; a slow one is a failure of its own. */
const REPLY_TIMEOUT_MS = 20_000;

/** Where the customer leaves the reversed session (see the fault suite). */
export type VanishPoint =
  | "after-220"
  | "after-ehlo"
  | "after-mail"
  | "after-rcpt"
  | "after-354"
  | "mid-body"
  | "after-dot"
  | "after-250";

/** Logs in; resolves with the connection ready for ATRN, or rejects saying which reply was wrong. */
export async function odmrLogin(target: Target, user: string, secret: string): Promise<LineSocket> {
  const conn = await LineSocket.connect(target);
  try {
    expect(await conn.reply(REPLY_TIMEOUT_MS), 220, "greeting");
    expect(await conn.command("EHLO customer.chaos.test", REPLY_TIMEOUT_MS), 250, "EHLO");
    const challenge = expect(await conn.command("AUTH CRAM-MD5", REPLY_TIMEOUT_MS), 334, "AUTH");
    expect(await conn.command(cramResponse(user, secret, challenge.text), REPLY_TIMEOUT_MS), 235, "CRAM-MD5");
    return conn;
  } catch (error) {
    conn.destroy();
    throw error;
  }
}

/** The CRAM-MD5 response line for a 334 challenge (base64 text). */
export function cramResponse(user: string, secret: string, challengeBase64: string): string {
  const digest = createHmac("md5", secret).update(Buffer.from(challengeBase64, "base64")).digest("hex");
  return Buffer.from(`${user} ${digest}`).toString("base64");
}

function expect(reply: Reply, code: number, what: string): Reply {
  if (reply.code !== code) throw new Error(`${what}: expected ${code}, got ${reply.lines.join(" / ")}`);
  return reply;
}

/** A message the customer received in the reversed session. */
export interface Collected {
  rcpts: string[];
  data: Buffer;
}

/** What a reversed session did. */
export interface TurnedSession {
  messages: Collected[];
  /** The point where the customer vanished, or null when it ran to QUIT. */
  vanished: VanishPoint | null;
}

/**
 * Plays the customer's MTA after the turn: 220, replies 250 to everything (no PIPELINING offered,
 * so each step is its own round trip), and leaves at `vanish` (FIN, or RST with `reset`).
 */
export async function serveTurned(
  conn: LineSocket,
  options: { vanish?: VanishPoint; reset?: boolean; timeoutMs?: number } = {},
): Promise<TurnedSession> {
  const t = options.timeoutMs ?? REPLY_TIMEOUT_MS;
  const session: TurnedSession = { messages: [], vanished: null };
  const leave = (point: VanishPoint) => {
    session.vanished = point;
    if (options.reset) conn.destroy();
    else conn.end();
    return session;
  };
  const at = (point: VanishPoint) => options.vanish === point;
  await conn.write("220 customer.chaos.test ESMTP\r\n");
  if (at("after-220")) return leave("after-220");
  let rcpts: string[] = [];
  for (;;) {
    let line: string;
    try {
      line = await conn.line(t);
    } catch {
      return session; // the relay ended the session (after QUIT or on its own)
    }
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === "EHLO" || verb === "HELO") {
      await conn.write("250-customer.chaos.test\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n");
      if (at("after-ehlo")) return leave("after-ehlo");
    } else if (verb === "MAIL") {
      rcpts = [];
      await conn.write("250 2.1.0 Ok\r\n");
      if (at("after-mail")) return leave("after-mail");
    } else if (verb === "RCPT") {
      rcpts.push(/<([^>]*)>/.exec(line)?.[1] ?? "");
      await conn.write("250 2.1.5 Ok\r\n");
      if (at("after-rcpt")) return leave("after-rcpt");
    } else if (verb === "DATA") {
      await conn.write("354 go ahead\r\n");
      if (at("after-354")) return leave("after-354");
      const parts: string[] = [];
      for (;;) {
        const data = await conn.line(t);
        if (data === ".") break;
        parts.push(data.startsWith(".") ? data.slice(1) : data, "\r\n");
        if (at("mid-body") && parts.length >= 6) return leave("mid-body");
      }
      if (at("after-dot")) return leave("after-dot");
      session.messages.push({ rcpts, data: Buffer.from(parts.join(""), "latin1") });
      await conn.write("250 2.0.0 Ok: queued\r\n");
      if (at("after-250")) return leave("after-250");
    } else if (verb === "QUIT") {
      await conn.write("221 2.0.0 Bye\r\n");
      conn.end();
      return session;
    } else await conn.write("250 2.0.0 Ok\r\n");
  }
}
