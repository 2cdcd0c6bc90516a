/**
 * The customer's half of an ODMR session up to the turn (RFC 2645 5): connect (implicit TLS if
 * asked), read the greeting, EHLO, STARTTLS and EHLO again (RFC 3207), check the offer, AUTH CRAM-MD5
 * (RFC 2195), then `ATRN domains`. On `250` the connection is handed back turned, for the bridge.
 */
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import { rootCertificates } from "node:tls";
import { LineConnection } from "../net/line_connection.ts";
import type { Connection } from "../net/connection.ts";
import {
  Code220Ready,
  Code235AuthSucceeded,
  Code250Ok,
  Code334Challenge,
  Code453NoMail,
  Code530AuthRequired,
  Code535AuthFailed,
} from "../smtp/codes.ts";
import { WATCH_KEYWORD } from "../smtp/ehlo.ts";
import { type ParsedReply, ReplyParser } from "../smtp/reply.ts";
import { dial } from "./dial.ts";
import { offerProblem, readEhloOffer, WANTED_MECHANISM } from "./ehlo_offer.ts";
import type { PollOutcome } from "./outcome.ts";

/** RFC 2645 5.2.1: the customer waits at least 10 minutes for the reply to ATRN. */
export const MIN_ATRN_REPLY_WAIT_MS = 10 * 60_000;
/** After QUIT, time the provider gets to close before we do. */
export const QUIT_GRACE_MS = 1000;
/** Longest reply line read from the provider; RFC 4954 4 lets a 334 challenge be long. */
export const MAX_PROVIDER_REPLY_LINE = 12_288 + 2;

/** Where and how to reach one provider, and who we are there. */
export interface ProviderOptions {
  host: string;
  port: number;
  /** "implicit": TLS from the first byte; "starttls": upgrade after EHLO; "none": plaintext. */
  tls: "implicit" | "starttls" | "none";
  /** Extra CA certificates (PEM) to trust; `insecure` skips verification. */
  ca?: string;
  insecure?: boolean;
  username: string;
  secret: string;
  /** Domains for ATRN; empty: every domain of the account (RFC 2645 5.2.1). */
  domains: string[];
  /** Our EHLO name. */
  helo: string;
  connectTimeoutMs: number;
  /** Wait for each reply (ATRN's at least {@link MIN_ATRN_REPLY_WAIT_MS}). */
  timeoutMs: number;
  /** Ask for push delivery (XWATCH) when the provider offers it. */
  watch?: boolean;
}

/** The connection turned: the provider is now the SMTP client on `conn`. */
export interface Turned {
  kind: "turned";
  conn: Connection;
  /** The provider accepted XWATCH: the session stays open for new mail after the queue is drained. */
  watching: boolean;
}

/** The session ended before a turn. */
export interface NotTurned {
  kind: "ended";
  outcome: Exclude<PollOutcome, "turned" | "local-unreachable">;
  message: string;
}

function ended(outcome: NotTurned["outcome"], message: string): NotTurned {
  return { kind: "ended", outcome, message };
}

/**
 * Runs the session up to the turn; never throws. `stop` gives up at once (the provider keeps all
 * mail: nothing is delivered before the turn).
 */
export async function openTurnedSession(
  options: ProviderOptions,
  stop?: AbortSignal,
): Promise<Turned | NotTurned> {
  let conn: Connection;
  try {
    const socket = await dial(options.host, options.port, options.connectTimeoutMs, stop);
    conn = new LineConnection(socket, { readTimeoutMs: options.timeoutMs });
  } catch (error) {
    if (stop?.aborted) return ended("interrupted", "stopped before connecting");
    return ended("connect-failed", `cannot connect: ${(error as Error).message}`);
  }
  const onStop = () => conn.destroy();
  stop?.addEventListener("abort", onStop, { once: true });
  let turned = false;
  try {
    const result = await converse(conn, options);
    turned = result.kind === "turned";
    // RFC 5321 4.1.1.10: end a session that will not turn with QUIT (its reply is not needed).
    if (!turned) await conn.write("QUIT\r\n").then(() => conn.close(QUIT_GRACE_MS), () => {});
    return result;
  } catch (error) {
    if (stop?.aborted) return ended("interrupted", "stopped before the turn; the provider keeps the mail");
    return ended("connect-failed", `session failed: ${(error as Error).message}`);
  } finally {
    stop?.removeEventListener("abort", onStop);
    if (!turned) conn.destroy();
  }
}

async function converse(conn: Connection, options: ProviderOptions): Promise<Turned | NotTurned> {
  const { timeoutMs } = options;
  const tls = {
    servername: options.host,
    rejectUnauthorized: !options.insecure,
    // The extra CA is added to the system's trust store, not put in its place: a provider with a public
    // certificate and one with a private CA can be polled side by side.
    ...(options.ca ? { ca: [...rootCertificates, options.ca] } : {}),
  };
  const send = (line: string) => conn.write(line + "\r\n");
  const hello = async () => {
    await send(`EHLO ${options.helo}`);
    return await readReply(conn, timeoutMs);
  };
  if (options.tls === "implicit") await conn.startTlsClient(tls);
  const greeting = await readReply(conn, timeoutMs);
  if (greeting.code !== Code220Ready) return ended("refused", `provider greeting: ${text(greeting)}`);
  let ehlo = await hello();
  if (ehlo.code !== Code250Ok) return ended("refused", `EHLO refused: ${text(ehlo)}`);
  if (options.tls === "starttls") {
    if (!readEhloOffer(ehlo.lines).starttls) {
      return ended("refused", "the provider does not offer STARTTLS (--tls none collects in plaintext)");
    }
    await send("STARTTLS");
    const ready = await readReply(conn, timeoutMs);
    if (ready.code !== Code220Ready) return ended("refused", `STARTTLS refused: ${text(ready)}`);
    await conn.startTlsClient(tls);
    // RFC 3207 4.2: everything learned before TLS is forgotten; EHLO again.
    ehlo = await hello();
    if (ehlo.code !== Code250Ok) return ended("refused", `EHLO refused: ${text(ehlo)}`);
  }
  // Read the offer before AUTH: a mechanism that is not offered would only earn a 503/504, which
  // must not read as a bad secret.
  const problem = offerProblem(readEhloOffer(ehlo.lines), conn.isTls);
  if (problem) return ended("refused", problem);
  // RFC 2195 2: the response is "user hex(HMAC-MD5(secret, challenge))", base64 (RFC 4954 4).
  await send(`AUTH ${WANTED_MECHANISM}`);
  const challenge = await readReply(conn, timeoutMs);
  if (challenge.code !== Code334Challenge) {
    return ended("refused", `AUTH ${WANTED_MECHANISM} refused: ${text(challenge)}`);
  }
  const challengeText = Buffer.from(challenge.lines[0] ?? "", "base64").toString("latin1");
  const digest = createHmac("md5", options.secret).update(challengeText, "latin1").digest("hex");
  await send(Buffer.from(`${options.username} ${digest}`).toString("base64"));
  const auth = await readReply(conn, timeoutMs);
  // RFC 4954 6: 535 is a rejected secret; 454 and the rest say nothing about the secret.
  if (auth.code === Code535AuthFailed) return ended("auth-failed", `authentication failed: ${text(auth)}`);
  if (auth.code !== Code235AuthSucceeded) return ended("refused", `AUTH not completed: ${text(auth)}`);
  // Push delivery (src/smtp/ehlo.ts): asked before ATRN, so ATRN turns even when no mail waits.
  let watching = false;
  if (options.watch && readEhloOffer(ehlo.lines).watch) {
    await send(WATCH_KEYWORD);
    watching = (await readReply(conn, timeoutMs)).code === Code250Ok;
  }
  await send(options.domains.length > 0 ? `ATRN ${options.domains.join(",")}` : "ATRN");
  const atrn = await readReply(conn, Math.max(timeoutMs, MIN_ATRN_REPLY_WAIT_MS));
  // RFC 2645 5.2.1 and 7: 453 no mail, 530 not authenticated, 450/451 refused or not now.
  if (atrn.code === Code453NoMail) return ended("no-mail", "no mail");
  if (atrn.code === Code530AuthRequired) return ended("auth-failed", `ATRN: ${text(atrn)}`);
  if (atrn.code !== Code250Ok) return ended("refused", `ATRN refused: ${text(atrn)}`);
  return { kind: "turned", conn, watching };
}

async function readReply(conn: Connection, timeoutMs: number): Promise<ParsedReply> {
  const parser = new ReplyParser({ maxLineLength: MAX_PROVIDER_REPLY_LINE });
  for (;;) {
    const reply = parser.push(await conn.readLine({ maxLength: MAX_PROVIDER_REPLY_LINE, timeoutMs }));
    if (reply) return reply;
  }
}

function text(reply: ParsedReply): string {
  return `${reply.code} ${reply.lines.join(" / ")}`;
}
