/**
 * Plain-text SMTP transcripts played from the TEST PEER's side, over a real loopback socket (a port) or
 * in memory (a service's `accept`, through src/net/memory_connection.ts: no socket, no port, same
 * protocol code). One directive per line; leading indentation is ignored:
 *
 * ```
 * # a comment (blank lines are ignored too)
 * > EHLO client.test          send "EHLO client.test" + CRLF (">" alone sends an empty line)
 * >> MAIL FROM:<a@b>\nRCPT    send raw text with escapes \r \n \t \\ \xHH and NO CRLF appended
 * < 250-mx.relay.test*        expect the next reply LINE to match a glob ("*" = any run of characters)
 * <close                      expect the server to close the connection (no further line)
 * !tls                        upgrade this socket to TLS as the client (after "< 220 *Ready*")
 * !wait 200                   pause this many milliseconds
 * ```
 *
 * Consecutive send lines are written in ONE write (one segment on loopback), which is how a
 * pipelining client behaves; put a `<` between sends to wait for the reply.
 *
 * The notation survives the ATRN role reversal: after the turn the peer plays the customer, so it
 * sends `> 220 customer.test ESMTP` and expects `< EHLO *`, `< MAIL FROM:<*>`... exactly the same way.
 *
 * On any mismatch, timeout or early close the error message holds the whole transcript so far
 * (sent and received).
 *
 * @module
 */
import * as net from "node:net";
import * as tls from "node:tls";
import type { Connection } from "../../src/net/connection.ts";
import { memoryPipe } from "../../src/net/memory_connection.ts";

/** Something that serves a connection handed to it: `SmtpService.accept` (in-memory transcripts). */
export interface TranscriptTarget {
  accept(conn: Connection): Promise<void>;
}

/** Where a transcript runs: a loopback port, or a service reached in memory. */
export type TranscriptEndpoint = number | TranscriptTarget;

/** Options of {@link runTranscript} and {@link playTranscript}. */
export interface TranscriptOptions {
  /** Per-read timeout in ms (default 5000). */
  timeoutMs?: number;
  /** Host to connect to (default 127.0.0.1). */
  host?: string;
  /** For `!tls`: extra trust anchor(s); without it the certificate is not verified. */
  ca?: string;
  /** Leave the socket open after the script (default: destroyed unless the script ended with <close). */
  keepOpen?: boolean;
  /** Connect with implicit TLS from the first byte (for the odmrs listener). */
  implicitTls?: boolean;
  /** Local address to connect from (e.g. 127.0.0.2 to look like another client); in memory, claimed. */
  localAddress?: string;
}

/** The peer's transport: a socket, or the client end of an in-memory pipe. */
interface Wire {
  write(bytes: Uint8Array): Promise<void>;
  readonly destroyed: boolean;
  destroy(): void;
}

/** What a transcript run leaves behind. */
export interface TranscriptResult {
  /** The transcript as played: `> sent`, `< received`. */
  log: string[];
  /** The peer (socket) the script ran on. */
  peer: TranscriptPeer;
}

const CRLF = new Uint8Array([0x0d, 0x0a]);
const decoder = new TextDecoder("utf-8");
const encoder = new TextEncoder();

/** Decodes `\r \n \t \\ \xHH` in a `>>` line into bytes (other characters as UTF-8). */
export function unescapeRaw(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== "\\" || i + 1 >= text.length) {
      out.push(...encoder.encode(c));
      continue;
    }
    const n = text[++i]!;
    if (n === "r") out.push(0x0d);
    else if (n === "n") out.push(0x0a);
    else if (n === "t") out.push(0x09);
    else if (n === "\\") out.push(0x5c);
    else if (n === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(0x5c, ...encoder.encode(n));
  }
  return new Uint8Array(out);
}

/** True when `line` matches `pattern`, where `*` is any run of characters and the rest is literal. */
export function globMatch(pattern: string, line: string): boolean {
  const re = new RegExp(
    "^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[\\s\\S]*") + "$",
  );
  return re.test(line);
}

/** Shows control characters of a line readably in the transcript. */
function visible(s: string): string {
  // deno-lint-ignore no-control-regex
  const controls = /[\x00-\x08\x0b-\x1f\x7f]|\r|\n/g;
  return s.replace(
    controls,
    (c) => c === "\r" ? "\\r" : c === "\n" ? "\\n" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** The client end of a connection, with a CRLF line reader and a transcript log. */
export class TranscriptPeer {
  /** The transcript so far: `> ...` sent, `< ...` received, `!! ...` failures. */
  readonly log: string[] = [];
  #socket: net.Socket | null = null;
  #wire!: Wire;
  #buf: Uint8Array = new Uint8Array(0);
  #closed = false;
  #wake: (() => void) | null = null;
  readonly timeoutMs: number;

  constructor(socket: net.Socket | Connection, options: { timeoutMs?: number } = {}) {
    this.timeoutMs = options.timeoutMs ?? 5000;
    if (socket instanceof net.Socket) this.#attach(socket);
    else this.#pump(socket);
  }

  /** Opens an in-memory connection to `target` (served as from `localAddress`, default 127.0.0.1). */
  static open(target: TranscriptTarget, options: TranscriptOptions = {}): TranscriptPeer {
    const [server, client] = memoryPipe(options.localAddress ? { clientAddress: options.localAddress } : {});
    void target.accept(server).catch(() => server.destroy());
    return new TranscriptPeer(client, options);
  }

  /** A socket connection to a port, or an in-memory one to a service. */
  static async reach(endpoint: TranscriptEndpoint, options: TranscriptOptions = {}): Promise<TranscriptPeer> {
    return typeof endpoint === "number"
      ? await TranscriptPeer.connect(endpoint, options)
      : TranscriptPeer.open(endpoint, options);
  }

  /** Connects to 127.0.0.1:`port` (or implicit TLS) and wraps the socket. */
  static async connect(port: number, options: TranscriptOptions = {}): Promise<TranscriptPeer> {
    const host = options.host ?? "127.0.0.1";
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const local = options.localAddress ? { localAddress: options.localAddress } : {};
      const s: net.Socket = options.implicitTls
        ? tls.connect({
          host,
          port,
          ...local,
          rejectUnauthorized: Boolean(options.ca),
          ...(options.ca ? { ca: options.ca } : {}),
          servername: "localhost",
        })
        : net.connect({ host, port, ...local });
      s.once(options.implicitTls ? "secureConnect" : "connect", () => resolve(s));
      s.once("error", reject);
    });
    socket.setNoDelay(true);
    return new TranscriptPeer(socket, options);
  }

  /** The underlying socket (plain or TLS); a peer in memory has none. */
  get socket(): net.Socket {
    if (!this.#socket) throw new Error("this transcript peer runs in memory: it has no socket");
    return this.#socket;
  }

  /** True once the server closed (or the socket failed). */
  get closed(): boolean {
    return this.#closed;
  }

  #attach(socket: net.Socket): void {
    this.#socket = socket;
    this.#wire = {
      write: (data) =>
        new Promise<void>((resolve, reject) => socket.write(data, (e) => (e ? reject(e) : resolve()))),
      get destroyed() {
        return socket.destroyed;
      },
      destroy: () => socket.destroy(),
    };
    socket.on("data", (chunk: Uint8Array) => this.#received(chunk));
    const onClose = () => this.#ended();
    socket.on("end", onClose);
    socket.on("close", onClose);
    socket.on("error", onClose);
  }

  /** Reads an in-memory pipe end until it closes (bounded: it ends when the server end closes). */
  #pump(conn: Connection): void {
    this.#wire = {
      write: (data) => conn.write(data),
      get destroyed() {
        return conn.isClosed;
      },
      destroy: () => conn.destroy(),
    };
    void (async () => {
      try {
        for (;;) this.#received(await conn.readChunk({ timeoutMs: Infinity }));
      } catch {
        this.#ended();
      }
    })();
  }

  #received(chunk: Uint8Array): void {
    const next = new Uint8Array(this.#buf.length + chunk.length);
    next.set(this.#buf);
    next.set(chunk, this.#buf.length);
    this.#buf = next;
    this.#notify();
  }

  #ended(): void {
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #wait(deadline: number): Promise<boolean> {
    const left = deadline - Date.now();
    if (left <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve(false);
      }, left);
      this.#wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  /** Writes bytes (logged as text). */
  async send(bytes: Uint8Array | string, logAs?: string): Promise<void> {
    const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
    this.log.push(`> ${logAs ?? visible(decoder.decode(data))}`);
    if (this.#wire.destroyed) throw this.fail("cannot send: connection already closed");
    await this.#wire.write(data);
  }

  /** Sends a text line with CRLF. */
  sendLine(text: string): Promise<void> {
    return this.send(concat([encoder.encode(text), CRLF]), text);
  }

  #takeLine(): string | null {
    const b = this.#buf;
    for (let i = 0; i + 1 < b.length; i++) {
      if (b[i] === 0x0d && b[i + 1] === 0x0a) {
        const line = decoder.decode(b.subarray(0, i));
        this.#buf = b.slice(i + 2);
        return line;
      }
    }
    return null;
  }

  /** Reads one CRLF-terminated line; null when the server closed first. Throws on timeout. */
  async readLine(timeoutMs = this.timeoutMs): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.#takeLine();
      if (line !== null) {
        this.log.push(`< ${visible(line)}`);
        return line;
      }
      if (this.#closed) return null;
      if (!(await this.#wait(deadline))) {
        throw this.fail(
          `timed out after ${timeoutMs} ms waiting for a line (partial: ${
            JSON.stringify(decoder.decode(this.#buf))
          })`,
        );
      }
    }
  }

  /** Reads a whole reply (all lines up to `NNN text`); returns its lines. */
  async readReply(timeoutMs = this.timeoutMs): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.readLine(timeoutMs);
      if (line === null) throw this.fail("connection closed inside a reply");
      lines.push(line);
      if (!/^\d{3}-/.test(line)) return lines;
    }
  }

  /** Expects the next line to match `pattern` (glob). */
  async expect(pattern: string, timeoutMs = this.timeoutMs): Promise<string> {
    const line = await this.readLine(timeoutMs);
    if (line === null) throw this.fail(`expected ${JSON.stringify(pattern)} but the server closed`);
    if (!globMatch(pattern, line)) throw this.fail(`expected ${JSON.stringify(pattern)}`);
    return line;
  }

  /** Expects the server to close without sending another line. */
  async expectClose(timeoutMs = this.timeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.#takeLine();
      if (line !== null) {
        this.log.push(`< ${visible(line)}`);
        throw this.fail("expected the server to close, got another line");
      }
      if (this.#closed) {
        this.log.push("<close");
        return;
      }
      if (!(await this.#wait(deadline))) throw this.fail(`server did not close within ${timeoutMs} ms`);
    }
  }

  /** Upgrades this connection to TLS as the client (after the server's 220 to STARTTLS). */
  async startTls(options: { ca?: string } = {}): Promise<tls.TLSSocket> {
    this.log.push("!tls");
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("end");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    plain.on("error", () => {});
    this.#buf = new Uint8Array(0);
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        socket: plain,
        servername: "localhost",
        rejectUnauthorized: Boolean(options.ca),
        ...(options.ca ? { ca: options.ca } : {}),
      });
      s.once("secureConnect", () => resolve(s));
      s.once("error", reject);
    }).catch((error) => {
      throw this.fail(`TLS handshake failed: ${error}`);
    });
    this.#attach(secure);
    return secure;
  }

  /** An Error carrying the transcript so far. */
  fail(message: string): Error {
    this.log.push(`!! ${message}`);
    return new Error(`transcript failed: ${message}\n--- transcript ---\n${this.log.join("\n")}\n---`);
  }

  /** Destroys the connection. */
  close(): void {
    this.#wire.destroy();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

type Step =
  | { kind: "send"; bytes: Uint8Array; text: string }
  | { kind: "expect"; pattern: string }
  | { kind: "close" }
  | { kind: "tls" }
  | { kind: "wait"; ms: number };

/** Parses a script into steps; throws on an unknown directive. */
export function parseTranscript(script: string): Step[] {
  const steps: Step[] = [];
  for (const raw of script.split("\n")) {
    const line = raw.replace(/^[ \t]+/, "").replace(/\r$/, "");
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith(">>")) {
      const text = line.slice(2).replace(/^ /, "");
      steps.push({ kind: "send", bytes: unescapeRaw(text), text: `>> ${text}` });
    } else if (line.startsWith(">")) {
      const text = line.slice(1).replace(/^ /, "");
      steps.push({ kind: "send", bytes: concat([encoder.encode(text), CRLF]), text });
    } else if (line === "<close") steps.push({ kind: "close" });
    else if (line.startsWith("<")) steps.push({ kind: "expect", pattern: line.slice(1).replace(/^ /, "") });
    else if (line === "!tls") steps.push({ kind: "tls" });
    else if (/^!wait \d+$/.test(line)) steps.push({ kind: "wait", ms: Number(line.slice(6)) });
    else throw new Error(`transcript: cannot parse line ${JSON.stringify(raw)}`);
  }
  return steps;
}

/** Plays `script` on an existing peer (for example after the ATRN turn, or a second part). */
export async function playTranscript(
  peer: TranscriptPeer,
  script: string,
  options: TranscriptOptions = {},
): Promise<TranscriptResult> {
  const steps = parseTranscript(script);
  const timeoutMs = options.timeoutMs ?? peer.timeoutMs;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    switch (step.kind) {
      case "send": {
        // Consecutive sends go out in one write, like a pipelining client.
        const batch: Uint8Array[] = [step.bytes];
        const texts = [step.text];
        while (steps[i + 1]?.kind === "send") {
          const next = steps[++i] as Extract<Step, { kind: "send" }>;
          batch.push(next.bytes);
          texts.push(next.text);
        }
        await peer.send(concat(batch), texts.join("\n> "));
        break;
      }
      case "expect":
        await peer.expect(step.pattern, timeoutMs);
        break;
      case "close":
        await peer.expectClose(timeoutMs);
        break;
      case "tls":
        await peer.startTls(options.ca ? { ca: options.ca } : {});
        break;
      case "wait":
        await new Promise((r) => setTimeout(r, step.ms));
        break;
    }
  }
  return { log: peer.log, peer };
}

/**
 * Connects to 127.0.0.1:`endpoint` (a port) or opens an in-memory connection to it (a service), plays
 * `script`, and (unless `keepOpen`) destroys the connection.
 */
export async function runTranscript(
  endpoint: TranscriptEndpoint,
  script: string,
  options: TranscriptOptions = {},
): Promise<TranscriptResult> {
  const peer = await TranscriptPeer.reach(endpoint, options);
  try {
    return await playTranscript(peer, script, options);
  } finally {
    if (!options.keepOpen) peer.close();
  }
}
