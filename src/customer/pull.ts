/**
 * Customer mode (`odmr-relay pull`): connect to an ODMR provider, EHLO, optionally STARTTLS (or
 * implicit TLS), AUTH CRAM-MD5, `ATRN domains`, and on `250` bridge the reversed SMTP session to
 * the local mail server: its 220 greeting becomes what the provider reads next, and bytes are
 * copied both ways until either side closes (PROTOCOL.md 1.9).
 *
 * Unlike fetchmail's line relay this copies raw chunks with Nagle off on both sockets, so a
 * prompt local MTA gets the provider's pipelined batches at once.
 *
 * Exit codes follow fetchmail's, which scripts already know: 0 the session ran, 1 no mail (453),
 * 3 authentication failed, 4 protocol error or refusal, 5 the local MTA could not be reached,
 * 6 connection or TLS failure.
 */
import { createHmac } from "node:crypto";
import net from "node:net";
import { LineConnection } from "../net/line_connection.ts";
import { type ParsedReply, ReplyParser } from "../smtp/reply.ts";
import type { Logger } from "../log/logger.ts";

/** Options of one pull. */
export interface PullOptions {
  host: string;
  port: number;
  /** "implicit": TLS from the first byte; "starttls": upgrade after EHLO; "none": plaintext. */
  tls: "implicit" | "starttls" | "none";
  /** Extra CA certificates (PEM) to trust; `insecure` skips verification (tests, self-signed). */
  ca?: string;
  insecure?: boolean;
  username: string;
  secret: string;
  domains: string[];
  /** Our EHLO name. */
  helo: string;
  /** The local SMTP server that receives the mail. */
  localHost: string;
  localPort: number;
  timeoutMs: number;
  logger: Logger;
}

/** How a pull ended. */
export interface PullResult {
  exitCode: 0 | 1 | 3 | 4 | 5 | 6;
  message: string;
  bytesToLocal: number;
  bytesToProvider: number;
}

async function readReply(conn: LineConnection, timeoutMs: number): Promise<ParsedReply> {
  const parser = new ReplyParser();
  for (;;) {
    const reply = parser.push(await conn.readLine({ maxLength: 2048, timeoutMs }));
    if (reply) return reply;
  }
}

function text(reply: ParsedReply): string {
  return `${reply.code} ${reply.lines.join(" / ")}`;
}

async function connectProvider(options: PullOptions): Promise<LineConnection> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: options.host, port: options.port });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
  socket.setNoDelay(true);
  const conn = new LineConnection(socket, { readTimeoutMs: options.timeoutMs });
  if (options.tls === "implicit") await conn.startTlsClient(tlsOptions(options));
  return conn;
}

function tlsOptions(options: PullOptions) {
  return {
    servername: options.host,
    rejectUnauthorized: !options.insecure,
    ...(options.ca ? { ca: options.ca } : {}),
  };
}

/** Runs one ODMR customer session. Never throws; the result says how it ended. */
export async function pull(options: PullOptions): Promise<PullResult> {
  const { logger, timeoutMs } = options;
  const done = (
    exitCode: PullResult["exitCode"],
    message: string,
    bytes = { toLocal: 0, toProvider: 0 },
  ) => ({
    exitCode,
    message,
    bytesToLocal: bytes.toLocal,
    bytesToProvider: bytes.toProvider,
  });
  let conn: LineConnection;
  try {
    conn = await connectProvider(options);
  } catch (error) {
    return done(6, `cannot connect to ${options.host}:${options.port}: ${(error as Error).message}`);
  }
  try {
    const send = (line: string) => conn.write(line + "\r\n");
    const greeting = await readReply(conn, timeoutMs);
    if (greeting.code !== 220) return done(4, `provider greeting: ${text(greeting)}`);
    await send(`EHLO ${options.helo}`);
    let ehlo = await readReply(conn, timeoutMs);
    if (ehlo.code !== 250) return done(4, `EHLO refused: ${text(ehlo)}`);
    if (options.tls === "starttls") {
      if (!ehlo.lines.some((l) => /^STARTTLS\b/i.test(l))) {
        return done(4, "the provider does not offer STARTTLS (--tls none collects in plaintext)");
      }
      await send("STARTTLS");
      const ready = await readReply(conn, timeoutMs);
      if (ready.code !== 220) return done(4, `STARTTLS refused: ${text(ready)}`);
      await conn.startTlsClient(tlsOptions(options));
      // RFC 3207 4.2: everything learned before TLS is forgotten; EHLO again.
      await send(`EHLO ${options.helo}`);
      ehlo = await readReply(conn, timeoutMs);
      if (ehlo.code !== 250) return done(4, `EHLO refused: ${text(ehlo)}`);
    }
    // RFC 2645 5.1.1: the provider must list ATRN.
    if (!ehlo.lines.some((l) => /^ATRN\b/i.test(l))) return done(4, "the provider does not offer ATRN");
    // RFC 2195: AUTH CRAM-MD5, then answer the challenge with "user hex(HMAC-MD5(secret, challenge))".
    await send("AUTH CRAM-MD5");
    const challenge = await readReply(conn, timeoutMs);
    if (challenge.code !== 334) return done(3, `AUTH CRAM-MD5 refused: ${text(challenge)}`);
    const challengeText = Buffer.from(challenge.lines[0] ?? "", "base64").toString("latin1");
    const digest = createHmac("md5", options.secret).update(challengeText, "latin1").digest("hex");
    await send(Buffer.from(`${options.username} ${digest}`).toString("base64"));
    const auth = await readReply(conn, timeoutMs);
    if (auth.code !== 235) return done(3, `authentication failed: ${text(auth)}`);
    // RFC 2645 5.2.1: ATRN must wait up to 10 minutes for the reply.
    await send(`ATRN ${options.domains.join(",")}`);
    const atrn = await readReply(conn, Math.max(timeoutMs, 600_000));
    if (atrn.code === 453) return done(1, "no mail");
    if (atrn.code === 530) return done(3, `ATRN: ${text(atrn)}`);
    if (atrn.code !== 250) return done(4, `ATRN refused: ${text(atrn)}`);
    logger.info("turned; bridging to the local mail server", {
      local: `${options.localHost}:${options.localPort}`,
    });
    return await bridge(conn, options);
  } catch (error) {
    return done(6, `provider session failed: ${(error as Error).message}`);
  } finally {
    conn.destroy();
  }
}

/** Copies bytes both ways between the provider (now our SMTP client) and the local server. */
async function bridge(conn: LineConnection, options: PullOptions): Promise<PullResult> {
  let local: net.Socket;
  try {
    local = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: options.localHost, port: options.localPort });
      s.once("connect", () => resolve(s));
      s.once("error", reject);
    });
  } catch (error) {
    // Like fetchmail: close without a word; the provider keeps every message queued.
    return {
      exitCode: 5,
      message: `cannot reach the local mail server: ${(error as Error).message}`,
      bytesToLocal: 0,
      bytesToProvider: 0,
    };
  }
  local.setNoDelay(true);
  let toLocal = 0;
  let toProvider = 0;
  const localClosed = new Promise<void>((resolve) => {
    local.on("close", () => resolve());
    local.on("error", () => resolve());
  });
  // local -> provider: the local server's greeting and replies.
  local.on("data", (chunk: Uint8Array) => {
    toProvider += chunk.length;
    local.pause();
    conn.write(chunk).then(() => local.resume(), () => local.destroy());
  });
  // provider -> local: the provider's commands and message data.
  const pump = (async () => {
    try {
      for (;;) {
        const chunk = await conn.readChunk({ timeoutMs: options.timeoutMs });
        if (local.destroyed) break;
        toLocal += chunk.length;
        // Backpressure: wait for the local server to take the data, but not past its closing or the
        // timeout (a closed socket never emits "drain"; a stuck one must not hang the bridge).
        if (!local.write(chunk) && !(await drained(local, localClosed, options.timeoutMs))) break;
      }
    } catch {
      // The provider closed, timed out or failed: the session is over.
    }
    local.end();
  })();
  await Promise.race([localClosed, pump]);
  await conn.close().catch(() => {});
  local.destroy();
  await pump;
  return { exitCode: 0, message: "session ended", bytesToLocal: toLocal, bytesToProvider: toProvider };
}

/** Resolves true on "drain", false when the socket closes first or `timeoutMs` passes. */
function drained(socket: net.Socket, closed: Promise<void>, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => finish(false), timeoutMs);
    const onDrain = () => finish(true);
    function finish(ok: boolean): void {
      clearTimeout(timer);
      socket.off("drain", onDrain);
      resolve(ok);
    }
    socket.once("drain", onDrain);
    void closed.then(() => finish(false));
  });
}
