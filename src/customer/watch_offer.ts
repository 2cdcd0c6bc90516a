/**
 * Push delivery on the customer's side (`pull --watch`): after the turn the local mail server is the
 * SMTP server, but it knows nothing of push. So its reply to the provider's EHLO gets one more line on
 * its way through the bridge: `250-XWATCH` before the last line (RFC 5321 4.1.1.1: keywords are lines of
 * the EHLO reply; src/smtp/ehlo.ts). That single reply is changed; everything else is copied as is.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Code250Ok } from "../smtp/codes.ts";
import { WATCH_KEYWORD } from "../smtp/ehlo.ts";

/** Longest reply buffered while it is looked at (an EHLO reply is a few hundred octets). */
const MAX_HELD_BYTES = 64 * 1024;

/** Watches the first command and changes the local server's reply to it when it is EHLO. */
export class WatchAdvertiser {
  /** The greeting's lines are passed through until its last line; then the first reply follows. */
  #phase: "greeting" | "reply" | "done" = "greeting";
  #greetingTail = "";
  #firstCommand = "";
  /** null until the provider's first command line is complete. */
  #firstIsEhlo: boolean | null = null;
  #held = "";

  /** Sees what the provider sends (before the local server gets it). */
  fromProvider(chunk: Uint8Array): void {
    if (this.#firstIsEhlo !== null) return;
    this.#firstCommand += Buffer.from(chunk).toString("latin1");
    const end = this.#firstCommand.indexOf("\n");
    if (end >= 0) this.#firstIsEhlo = /^EHLO[ \r\n]/i.test(this.#firstCommand.slice(0, end + 1));
    else if (this.#firstCommand.length > 1000) this.#firstIsEhlo = false;
  }

  /** What to send the provider for a chunk from the local server (held back while the EHLO reply is read). */
  fromLocal(chunk: Uint8Array): Uint8Array {
    if (this.#phase === "done") return chunk;
    const text = Buffer.from(chunk).toString("latin1");
    if (this.#phase === "greeting") {
      // Pass the greeting through; find where its last line ends (RFC 5321 4.2: "220 " not "220-").
      const all = this.#greetingTail + text;
      const end = lastLineEnd(all);
      if (end < 0) {
        this.#greetingTail = all.slice(-1000);
        return chunk;
      }
      this.#phase = "reply";
      const rest = all.slice(end);
      const passed = text.slice(0, text.length - rest.length);
      if (rest === "") return Buffer.from(passed, "latin1");
      return concat(Buffer.from(passed, "latin1"), this.#reply(rest));
    }
    return this.#reply(text);
  }

  /** The first reply after the greeting: held until complete, then changed if it answers EHLO. */
  #reply(text: string): Uint8Array {
    this.#held += text;
    const end = lastLineEnd(this.#held);
    if (end < 0 && this.#held.length < MAX_HELD_BYTES) return new Uint8Array(0);
    this.#phase = "done";
    const reply = end < 0 ? this.#held : this.#held.slice(0, end);
    const after = end < 0 ? "" : this.#held.slice(end);
    this.#held = "";
    if (this.#firstIsEhlo !== true || end < 0) return Buffer.from(reply + after, "latin1");
    const lastStart = reply.lastIndexOf("\n", reply.length - 2) + 1;
    const last = reply.slice(lastStart);
    if (!last.startsWith(`${Code250Ok} `)) return Buffer.from(reply + after, "latin1");
    if (lastStart === 0) {
      // A one-line reply is the domain line itself (RFC 5321 4.1.1.1): keep it first, keyword after.
      const domainLine = `${Code250Ok}-${last.slice(4)}`;
      return Buffer.from(`${domainLine}${Code250Ok} ${WATCH_KEYWORD}\r\n${after}`, "latin1");
    }
    const keyword = `${Code250Ok}-${WATCH_KEYWORD}\r\n`;
    return Buffer.from(`${reply.slice(0, lastStart)}${keyword}${last}${after}`, "latin1");
  }
}

/** Index just after the first line that ends a reply (`ddd ` or `ddd` then CRLF), or -1. */
function lastLineEnd(text: string): number {
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) return -1;
    const line = text.slice(start, nl + 1);
    if (/^\d{3}(?: |\r?\n)/.test(line)) return nl + 1;
    start = nl + 1;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
