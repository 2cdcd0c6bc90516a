/**
 * Unique test messages and what the suites remember of them. Each message carries a Message-ID
 * made of the run's tag and a counter, so a stored or delivered copy names its origin; the body is
 * random printable text with lines that need dot-stuffing (a lone ".", "..", ".x"), and a few bodies
 * are large enough to be stored in several 256 KiB chunks. Only the digest and length are kept, so a
 * long run does not hold every body in memory.
 */
import { createHash } from "node:crypto";
import type { Rng } from "./rng.ts";

/** Bodies above this are stored in chunks (src/queue/spool.ts CHUNK_SIZE). */
export const CHUNK_SIZE = 256 * 1024;

/** What a suite remembers about a message it sent. */
export interface Sent {
  messageId: string;
  from: string;
  rcpts: string[];
  length: number;
  sha256: string;
}

/** A message ready to send (an `Outgoing` of lib/smtp.ts), with its record. */
export interface Made {
  record: Sent;
  from: string;
  rcpts: string[];
  body: Uint8Array;
}

/** Size mix: mostly small; `largeShare` of them chunked (one to four chunks). */
export interface SizeMix {
  largeShare: number;
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_=+!?()";
const ENCODER = new TextEncoder();
/** Random text that lines are cut from (a fresh random character per byte made 1 MB bodies slow). */
const POOL_SIZE = 65536;
const pools = new WeakMap<Rng, string>();

function textPool(rng: Rng): string {
  let pool = pools.get(rng);
  if (!pool) {
    const chars: string[] = [];
    for (let i = 0; i < POOL_SIZE; i++) chars.push(ALPHABET[rng.int(0, ALPHABET.length - 1)]!);
    pools.set(rng, pool = chars.join(""));
  }
  return pool;
}

/** Hex SHA-256 of bytes. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Makes message `n` of a run tagged `tag`. */
export function makeMessage(
  rng: Rng,
  tag: string,
  n: number,
  envelope: { from: string; rcpts: string[] },
  mix: SizeMix = { largeShare: 0.03 },
): Made {
  const messageId = `<chaos-${tag}-${n}@chaos.test>`;
  const size = rng.chance(mix.largeShare)
    ? rng.int(CHUNK_SIZE + 1, 4 * CHUNK_SIZE + 1000)
    : rng.int(120, 6000);
  const head =
    `Message-ID: ${messageId}\r\nFrom: <${envelope.from}>\r\nTo: ${
      envelope.rcpts.map((r) => `<${r}>`).join(", ")
    }` +
    `\r\nSubject: chaos ${tag} ${n}\r\n\r\n`;
  const pool = textPool(rng);
  const lines: string[] = [head];
  let length = head.length;
  // Lines of at most 76 characters (no line-length refusals), some of them dot lines.
  while (length < size) {
    const kind = rng.int(0, 30);
    const at = rng.int(0, POOL_SIZE - 80);
    let line = pool.slice(at, at + rng.int(0, 76));
    if (kind === 0) line = "."; // a lone "." content line: stuffed on the wire, never the end
    else if (kind === 1) line = `..${line}`;
    else if (kind === 2) line = `.${line}`;
    lines.push(line, "\r\n");
    length += line.length + 2;
  }
  const body = ENCODER.encode(lines.join(""));
  return {
    body,
    from: envelope.from,
    rcpts: envelope.rcpts,
    record: {
      messageId,
      from: envelope.from,
      rcpts: envelope.rcpts,
      length: body.length,
      sha256: sha256(body),
    },
  };
}

const RECEIVED_PREFIX = /^Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*$/;

/**
 * Whether `stored` is `sent` with exactly one Received header in front (the relay's own, RFC 5321
 * 4.4) and nothing else changed. Returns a reason when it is not.
 */
export function compareStored(stored: Uint8Array, sent: Sent): string | null {
  if (stored.length < sent.length) return `stored ${stored.length} bytes < sent ${sent.length}`;
  const tail = stored.subarray(stored.length - sent.length);
  if (sha256(tail) !== sent.sha256) return "body differs from what was sent";
  const prefix = Buffer.from(stored.subarray(0, stored.length - sent.length)).toString("latin1");
  if (!RECEIVED_PREFIX.test(prefix)) return `unexpected prefix ${JSON.stringify(prefix.slice(0, 120))}`;
  return null;
}

/** The Message-ID of a stored or delivered message (the first one in its header section). */
export function messageIdOf(bytes: Uint8Array): string | null {
  const head = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 8192))).toString("latin1");
  const end = head.indexOf("\r\n\r\n");
  const m = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(end >= 0 ? head.slice(0, end) : head);
  return m ? m[1]! : null;
}
