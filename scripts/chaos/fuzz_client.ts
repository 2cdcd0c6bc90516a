/**
 * Plays one generated fuzz session against the relay and records everything it received. Every wait
 * is bounded (SESSION_LIMIT_MS in all), so a relay that stops answering makes sessions end, not the
 * fuzzer hang. The caller judges what came back (no `421 4.3.0` internal error, ever).
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { cramResponse } from "./lib/customer.ts";
import { Rng } from "./lib/rng.ts";
import type { FuzzSession, Step } from "./fuzz_grammar.ts";

/** The longest a session may take, whatever it does. */
const SESSION_LIMIT_MS = 8000;
/** After the last step of a "linger" end, wait this long for the relay to finish talking. */
const LINGER_MS = 200;
/** The fuzzy customer after a turn: its longest life and most replies. */
const CUSTOMER_LIMIT_MS = 2500;
const CUSTOMER_MAX_REPLIES = 120;

/** Where to connect and who the real account is. */
export interface FuzzTarget {
  ports: { smtp: number; odmr: number; odmrs: number };
  user: string;
  secret: string;
  source: string;
}

/** What a session saw. */
export interface FuzzOutcome {
  received: string;
  localPort: number;
  turned: boolean;
  /** The reply code to ATRN, when the session got that far. */
  atrn: number | null;
  /** Why the session could not run (connection refused, ...), or null. */
  error: string | null;
}

/** A connection whose socket may be replaced by a TLS socket over it. */
class Wire {
  socket: net.Socket;
  received = "";
  #finals = 0;
  /** Final reply lines seen when the client last wrote: a reply to that write is one past it. */
  #mark = 0;
  #lines = 0;
  #partial = "";
  #wake: (() => void) | null = null;
  closed = false;

  constructor(socket: net.Socket) {
    this.socket = socket;
    this.#attach(socket);
  }

  #attach(s: net.Socket): void {
    s.on("data", (d: Buffer) => {
      const text = d.toString("latin1");
      this.received += text;
      this.#partial += text;
      for (let i; (i = this.#partial.indexOf("\n")) >= 0;) {
        const line = this.#partial.slice(0, i);
        this.#partial = this.#partial.slice(i + 1);
        this.#lines++;
        if (/^\d{3}( |\r?$)/.test(line)) this.#finals++;
      }
      this.#poke();
    });
    s.on("error", () => {});
    s.on("close", () => {
      if (s === this.socket) {
        this.closed = true;
        this.#poke();
      }
    });
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /**
   * Waits until a final reply line has come since the last write (it may already be here), or for
   * the next line of any kind; false when the connection closed or `ms` passed first.
   */
  async wait(ms: number, what: "final" | "line" = "final"): Promise<boolean> {
    const target = what === "final" ? this.#mark + 1 : this.#lines + 1;
    const deadline = Date.now() + ms;
    while ((what === "final" ? this.#finals : this.#lines) < target && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return !this.closed || (what === "final" ? this.#finals : this.#lines) >= target;
  }

  /** Counts every reply so far as seen: the next `wait` is for one that has not come yet. */
  markSeen(): void {
    this.#mark = this.#finals;
  }

  /** The last complete line received. */
  lastLine(): string {
    const lines = this.received.split("\r\n");
    return lines[lines.length - 2] ?? "";
  }

  write(bytes: Uint8Array | string): Promise<void> {
    this.#mark = this.#finals;
    return new Promise((resolve) => {
      if (this.closed || this.socket.destroyed) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  /** Upgrades to TLS (self-signed relay certificate: not verified, this is not about trust). */
  async startTls(timeoutMs: number): Promise<boolean> {
    const plain = this.socket;
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: "relay.chaos.test" });
    this.socket = secure;
    this.#partial = "";
    this.#attach(secure);
    return await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      secure.once("secureConnect", () => {
        clearTimeout(t);
        resolve(true);
      });
      secure.once("error", () => {
        clearTimeout(t);
        resolve(false);
      });
    });
  }

  end(how: "fin" | "rst"): void {
    const s = this.socket as net.Socket & { resetAndDestroy?: () => void };
    if (how === "rst" && typeof s.resetAndDestroy === "function") {
      try {
        return void s.resetAndDestroy();
      } catch { /* fall through */ }
    }
    if (how === "rst") s.destroy();
    else s.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Runs one session. Never throws. */
export async function runSession(session: FuzzSession, target: FuzzTarget): Promise<FuzzOutcome> {
  const outcome: FuzzOutcome = { received: "", localPort: 0, turned: false, atrn: null, error: null };
  const started = Date.now();
  const left = () => Math.max(0, SESSION_LIMIT_MS - (Date.now() - started));
  let wire: Wire;
  try {
    const socket = await connect(target.ports[session.listener], target.source);
    wire = new Wire(socket);
    outcome.localPort = socket.localPort ?? 0;
  } catch (error) {
    outcome.error = String(error);
    return outcome;
  }
  const guard = setTimeout(() => wire.destroy(), SESSION_LIMIT_MS + 500);
  try {
    if (
      session.listener === "odmrs" && !session.tags.includes("plaintext-on-tls") &&
      !(await wire.startTls(2000))
    ) {
      return outcome;
    }
    for (const step of session.steps) {
      if (wire.closed || left() === 0) break;
      if (await perform(step, wire, target, left, outcome)) break;
    }
  } finally {
    clearTimeout(guard);
    wire.destroy();
    outcome.received = wire.received;
  }
  return outcome;
}

/** One step; true when the session is over. */
async function perform(
  step: Step,
  wire: Wire,
  target: FuzzTarget,
  left: () => number,
  outcome: FuzzOutcome,
): Promise<boolean> {
  switch (step.kind) {
    case "send":
      if (step.dripMs) {
        for (const b of step.bytes) {
          await wire.write(new Uint8Array([b]));
          await new Promise((r) => setTimeout(r, step.dripMs));
        }
      } else await wire.write(step.bytes);
      return false;
    case "read":
      await wire.wait(Math.min(step.ms, left()));
      return false;
    case "cram": {
      // The 334 may come after replies to commands pipelined before AUTH: look at a few finals.
      let last = "";
      for (let i = 0; i < 4 && !last.startsWith("334 "); i++) {
        if (!(await wire.wait(Math.min(3000, left())))) break;
        last = wire.lastLine();
        wire.markSeen();
      }
      if (!last.startsWith("334 ")) return false;
      const challenge = last.slice(4).trim();
      // A wrong answer names an account that does not exist: failures naming the real one would make
      // its later (right) attempts wait up to 16 s (docs/security.md), which only slows the fuzzer.
      const answer = step.right
        ? cramResponse(target.user, target.secret, challenge)
        : cramResponse(`nobody-${challenge.slice(0, 16)}`, "wrong", challenge);
      await wire.write(`${answer}\r\n`);
      await wire.wait(Math.min(step.ms, left()));
      return false;
    }
    case "tls": {
      await wire.wait(Math.min(2000, left()));
      if (!wire.lastLine().startsWith("220")) return false;
      return !(await wire.startTls(Math.min(2000, left())));
    }
    case "customer": {
      if (!(await wire.wait(Math.min(3000, left())))) return false;
      const reply = wire.lastLine();
      outcome.atrn = Number(reply.slice(0, 3)) || 0;
      if (!/^250 .*revers/i.test(reply)) return false;
      outcome.turned = true;
      await fuzzyCustomer(wire, new Rng(step.seed), Math.min(CUSTOMER_LIMIT_MS, left()));
      return true;
    }
    case "end":
      if (step.how === "linger") {
        await wire.wait(Math.min(LINGER_MS, left()));
        wire.end("fin");
      } else wire.end(step.how);
      return true;
  }
}

/** The customer's side after the turn: mostly a plain MTA, sometimes anything but. */
async function fuzzyCustomer(wire: Wire, rng: Rng, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  const greeting = rng.pick([
    "220 customer ESMTP\r\n",
    "220 customer ESMTP\r\n",
    "220-customer\r\n220 customer\r\n",
    "554 go away\r\n",
    "421 busy\r\n",
    "garbage without code\r\n",
    `220 ${"x".repeat(rng.int(1000, 70000))}\r\n`,
    "",
  ]);
  await wire.write(greeting);
  const sane = rng.float();
  let inData = false;
  let cursor = wire.received.length;
  /** The next line the relay sent that has not been answered yet (pipelined lines queue up). */
  const nextLine = async (): Promise<string | null> => {
    for (;;) {
      const end = wire.received.indexOf("\r\n", cursor);
      if (end >= 0) {
        const line = wire.received.slice(cursor, end);
        cursor = end + 2;
        return line;
      }
      if (wire.closed || Date.now() >= deadline) return null;
      await wire.wait(deadline - Date.now(), "line");
    }
  };
  for (let n = 0; n < CUSTOMER_MAX_REPLIES; n++) {
    const line = await nextLine();
    if (line === null) return;
    if (inData) {
      if (line !== ".") {
        n--;
        continue;
      }
      inData = false;
      await wire.write(rng.chance(sane) ? "250 2.0.0 Ok\r\n" : insane(rng));
      continue;
    }
    const verb = line.slice(0, 4).toUpperCase();
    let reply: string;
    if (!rng.chance(sane)) reply = insane(rng);
    else if (verb === "EHLO") {
      const keywords = ["PIPELINING", "8BITMIME", "SIZE 1000000", "DSN", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        .filter(() => rng.chance(0.5));
      reply = ["250-customer", ...keywords.map((k) => `250-${k}`), "250 HELP"].join("\r\n") + "\r\n";
    } else if (verb === "DATA") {
      inData = true;
      reply = "354 go\r\n";
    } else if (verb === "QUIT") {
      await wire.write("221 bye\r\n");
      return wire.end("fin");
    } else reply = rng.pick(["250 Ok\r\n", "250 Ok\r\n", "450 try later\r\n", "550 no such user\r\n"]);
    if (reply === "") return wire.end(rng.pick(["fin", "rst"] as const));
    await wire.write(reply);
  }
}

/** A reply no well-behaved server sends. */
function insane(rng: Rng): string {
  return rng.pick([
    "",
    `${rng.int(100, 999)} odd code\r\n`,
    "250-unterminated\r\n",
    "2500 four digits\r\n",
    "hello\r\n",
    "250 ok\n",
    "\u0000\u0000\r\n",
    `250-${"a".repeat(rng.int(100, 20000))}\r\n250 end\r\n`,
    "250-x\r\n".repeat(rng.int(10, 3000)) + "250 x\r\n",
    "451 4.3.0 later\r\n",
    "554 5.0.0 never\r\n",
  ]);
}

function connect(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    const t = setTimeout(() => {
      socket.destroy();
      reject(new Error("connect timed out"));
    }, 5000);
    socket.once("connect", () => {
      clearTimeout(t);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
