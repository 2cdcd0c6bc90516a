/**
 * Helpers for the ODMR (port 366) tests: CRAM-MD5 computed independently with node:crypto, a
 * relay seeded for ATRN, direct enqueueing, queue inspection, and a scriptable CUSTOMER that plays
 * the SMTP server after the turn on the same TranscriptPeer.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import type { QueueStore } from "../../src/queue/store.ts";
import type { SeedAccount, TestRelay, TestRelayOptions } from "../support/relay.ts";
import { startTestRelay } from "../support/relay.ts";
import { bodyOf, incoming } from "../support/store.ts";
import { playTranscript, type TranscriptEndpoint, TranscriptPeer } from "../support/transcript.ts";

/** alice owns example.test, a.test, b.test; dave owns other.test; eve is disabled. */
export const ODMR_SEED: SeedAccount[] = [
  { username: "alice", password: "alice-secret", domains: ["example.test", "a.test", "b.test"] },
  { username: "dave", password: "dave-secret", domains: ["other.test"] },
  { username: "eve", password: "eve-secret", domains: ["eve.test"], disabled: true },
];

/** The ODMR greeting line. */
export const ODMR_GREETING = "< 220 mx.relay.test ESMTP odmr-relay on-demand mail relay ready";

/** A relay for ODMR tests: short AUTH delays, generous per-IP limits (all tests come from 127.0.0.1). */
export function startOdmrRelay(options: TestRelayOptions = {}, seed = ODMR_SEED): Promise<TestRelay> {
  return startTestRelay({
    authThrottle: { baseDelayMs: 10, maxDelayMs: 50 },
    ...options,
    flags: {
      authMaxFailuresPerIp: "1000",
      authMaxFailuresPerAccountIp: "1000",
      atrnMaxPerMinute: "1000",
      ...options.flags,
    },
  }, seed);
}

/** RFC 2195: base64("user " + hex(HMAC-MD5(secret, challenge))), the challenge given base64 as sent. */
export function cramResponse(challengeB64: string, user: string, secret: string): string {
  const challenge = Buffer.from(challengeB64, "base64").toString("latin1");
  const digest = createHmac("md5", secret).update(challenge, "latin1").digest("hex");
  return Buffer.from(`${user} ${digest}`).toString("base64");
}

/** Sends `AUTH CRAM-MD5`, answers the challenge, returns the final reply line. */
export async function cramAuth(peer: TranscriptPeer, user: string, secret: string): Promise<string> {
  await peer.sendLine("AUTH CRAM-MD5");
  const challenge = await peer.expect("334 *");
  await peer.sendLine(cramResponse(challenge.slice(4), user, secret));
  const reply = await peer.readLine();
  if (reply === null) throw peer.fail("closed after the CRAM-MD5 response");
  return reply;
}

/** Connects, reads the greeting, says EHLO (reading the whole reply), optionally AUTHs. */
export async function openOdmr(
  endpoint: TranscriptEndpoint,
  options: {
    user?: string;
    secret?: string;
    implicitTls?: boolean;
    ca?: string;
    timeoutMs?: number;
    /** Source address, any 127.x (Linux routes 127/8 to loopback): a distinct client IP. */
    localAddress?: string;
  } = {},
): Promise<TranscriptPeer> {
  const peer = await TranscriptPeer.reach(endpoint, {
    ...(options.implicitTls ? { implicitTls: true } : {}),
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    ...(options.ca ? { ca: options.ca } : {}),
    timeoutMs: options.timeoutMs ?? 5000,
  });
  await playTranscript(peer, `${ODMR_GREETING}\n> EHLO customer.test`);
  const ehlo = await peer.readReply();
  if (!ehlo.at(-1)!.startsWith("250 ")) throw peer.fail("EHLO refused");
  if (options.user) {
    const reply = await cramAuth(peer, options.user, options.secret ?? `${options.user}-secret`);
    if (!reply.startsWith("235 ")) throw peer.fail(`AUTH failed: ${reply}`);
  }
  return peer;
}

/** Queues a message directly through the store; returns its id. */
export function enqueue(
  store: QueueStore,
  rcpts: string[],
  body: string,
  from = "sender@remote.test",
): number {
  return store.enqueue(incoming(from, rcpts), bodyOf(body));
}

/** Every recipient row with its status, by id. */
export function recipientRows(
  relay: TestRelay,
): { id: number; message_id: number; address: string; status: string; last_code: number | null }[] {
  return relay.store.database.raw.prepare(
    "SELECT id, message_id, address, status, last_code FROM recipients ORDER BY id",
  ).all() as { id: number; message_id: number; address: string; status: string; last_code: number | null }[];
}

/** Addresses still queued (status 'queued'), sorted. */
export function queuedAddresses(relay: TestRelay): string[] {
  return recipientRows(relay).filter((r) => r.status === "queued").map((r) => r.address).sort();
}

/** Number of message rows. */
export function messageCount(relay: TestRelay): number {
  return (relay.store.database.raw.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n;
}

/** Waits (bounded) until `cond` holds; throws with `what` otherwise. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The newest ATRN session row. */
export function lastAtrn(relay: TestRelay) {
  const row = relay.store.recentAtrnSessions(1)[0];
  if (!row) throw new Error("no ATRN session recorded");
  return row;
}

/** A message as the customer received it: raw (still dot-stuffed) content lines. */
export interface CustomerMessage {
  mail: string;
  rcpts: string[];
  /** The wire lines between 354 and the final dot, exactly as sent (dot-stuffed). */
  lines: string[];
}

/** What the scripted customer answers; every hook returns reply lines ("" = hang up without a word). */
export interface CustomerScript {
  greeting?: string;
  ehlo?: string[];
  mail?: (line: string) => string;
  rcpt?: (line: string) => string;
  data?: () => string;
  /** Reply to the final dot; "drop" closes the socket instead. */
  end?: (message: CustomerMessage, index: number) => string;
  /** Called after 354, before reading content; "drop" closes the socket at once. */
  afterDataStart?: (index: number) => string | undefined;
}

/** What the customer saw. */
export interface CustomerLog {
  commands: string[];
  messages: CustomerMessage[];
  quit: boolean;
}

/**
 * Plays the customer after `250` to ATRN: greets, answers EHLO, and answers each command as
 * scripted until QUIT (answered 221, then closes) or until the relay closes.
 */
export async function playCustomer(peer: TranscriptPeer, script: CustomerScript = {}): Promise<CustomerLog> {
  const log: CustomerLog = { commands: [], messages: [], quit: false };
  await peer.sendLine(script.greeting ?? "220 customer.test ESMTP ready");
  let current: CustomerMessage | null = null;
  const reply = async (text: string) => {
    if (text === "drop") {
      peer.close();
      return false;
    }
    for (const l of text.split("\n")) await peer.sendLine(l);
    return true;
  };
  for (;;) {
    const line = await peer.readLine();
    if (line === null) return log;
    log.commands.push(line);
    const verb = line.split(" ", 1)[0]!.toUpperCase().replace(/:.*$/, "");
    let answer: string;
    if (verb === "EHLO") {
      const kw = script.ehlo ?? ["8BITMIME"];
      answer = ["customer.test hello", ...kw].map((k, i, all) => `250${i === all.length - 1 ? " " : "-"}${k}`)
        .join("\n");
    } else if (verb === "MAIL") {
      current = { mail: line, rcpts: [], lines: [] };
      answer = script.mail?.(line) ?? "250 2.1.0 Ok";
    } else if (verb === "RCPT") {
      answer = script.rcpt?.(line) ?? "250 2.1.5 Ok";
      if (answer.startsWith("2")) current?.rcpts.push(line);
    } else if (verb === "DATA") {
      answer = script.data?.() ?? "354 go ahead";
      if (answer.startsWith("354")) {
        if (!(await reply(answer))) return log;
        const index = log.messages.length;
        if (script.afterDataStart?.(index) === "drop") {
          peer.close();
          return log;
        }
        const msg = current ?? { mail: "", rcpts: [], lines: [] };
        for (;;) {
          const l = await peer.readLine();
          if (l === null) return log;
          if (l === ".") break;
          msg.lines.push(l);
        }
        log.messages.push(msg);
        if (!(await reply(script.end?.(msg, index) ?? "250 2.0.0 Ok: delivered"))) return log;
        continue;
      }
    } else if (verb === "RSET") answer = "250 2.0.0 Ok";
    else if (verb === "QUIT") {
      log.quit = true;
      await reply("221 2.0.0 Bye");
      peer.close();
      return log;
    } else answer = "502 5.5.1 not here";
    if (!(await reply(answer))) return log;
  }
}

/** Undoes dot-stuffing of wire lines and joins them with CRLF (each line ends with CRLF). */
export function unstuff(lines: string[]): string {
  return lines.map((l) => (l.startsWith(".") ? l.slice(1) : l) + "\r\n").join("");
}

/** Waits (bounded) for an ATRN session record newer than `id` that has ended; returns it. */
export async function waitForAtrnAfter(relay: TestRelay, id: number, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = relay.store.recentAtrnSessions(1)[0];
    if (row && row.id > id && row.endedAt !== null) return row;
    if (Date.now() > deadline) throw new Error(`no ATRN session recorded after #${id}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What the relay queued for the internet itself (DSNs, notices), with the body as text. */
export function outboundRows(
  relay: TestRelay,
): { id: number; kind: string; mail_from: string; rcpt: string; body: string; attempts: number }[] {
  const rows = relay.store.database.raw.prepare(
    "SELECT id, kind, mail_from, rcpt, body, attempts FROM outbound ORDER BY id",
  ).all() as unknown as {
    id: number;
    kind: string;
    mail_from: string;
    rcpt: string;
    body: Uint8Array;
    attempts: number;
  }[];
  return rows.map((r) => ({ ...r, body: new TextDecoder().decode(r.body) }));
}
