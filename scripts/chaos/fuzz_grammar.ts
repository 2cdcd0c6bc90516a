/**
 * The fuzzer's session generator: a walk over a grammar of valid SMTP and ODMR commands (RFC 5321,
 * RFC 2645, RFC 4954, RFC 3461/6152/6531 parameters), then corruptions on top: binary garbage, huge
 * lines, CR/LF/NUL mixes, pipelined floods, TLS records on the plaintext port, truncated AUTH
 * exchanges, byte-level mutations, slow drips and early talk. Session `i` depends only on the seed
 * and `i`, so any failing session is regenerated exactly from those two numbers.
 */
import { Rng } from "./lib/rng.ts";

/** Which listener a session talks to. */
export type FuzzListener = "smtp" | "odmr" | "odmrs";

/** One thing the fuzz client does. */
export type Step =
  /** Write these bytes (`dripMs`: one byte at a time with that pause). */
  | { kind: "send"; bytes: Uint8Array; dripMs?: number }
  /** Wait up to `ms` for the next complete reply (or the end of the connection). */
  | { kind: "read"; ms: number }
  /**
   * Read a 334 challenge and answer it for the real account (rightly, or with a wrong digest for a
   * name that does not exist), then wait up to `ms` for the verdict.
   */
  | { kind: "cram"; right: boolean; ms: number }
  /** STARTTLS: read the 220, then a real TLS handshake (the rest of the session runs inside TLS). */
  | { kind: "tls" }
  /** Read the ATRN reply; on a 250, play a fuzzy customer on the reversed connection. */
  | { kind: "customer"; seed: number }
  /** How the client leaves: FIN, RST, or FIN after waiting for whatever is still coming. */
  | { kind: "end"; how: "fin" | "rst" | "linger" };

/** A generated session. */
export interface FuzzSession {
  index: number;
  listener: FuzzListener;
  /** What was done to it (for the failure report). */
  tags: string[];
  steps: Step[];
}

/** Names the grammar uses: the hosted domains and the real ODMR account. */
export interface FuzzWorld {
  user: string;
  /** The account's domains (several, so concurrent turns seldom meet a busy domain). */
  domains: string[];
  /** A domain hosted for another account (ATRN must refuse it). */
  otherDomain: string;
  tls: boolean;
}

const ENC = new TextEncoder();
/**
 * How long a step waits for a reply that may never come (a corrupted command can leave the relay
 * waiting for more). Loopback replies take milliseconds; a commit waits for an fsync; a failed AUTH
 * waits for the throttle's delay (docs/security.md).
 */
const REPLY_MS = 600;
const COMMIT_MS = 2000;
const AUTH_MS = 20_000;
const CRLF = "\r\n";
const HOSTS = ["client.example", "[127.0.0.1]", "[IPv6:::1]", "x", "a.b.c.d.e.f", "ünïcode.example", ""];
const LOCALS = [
  "bob",
  "Postmaster",
  "postmaster",
  "a.b",
  '"quoted local"',
  "x%y",
  "a!b",
  "über",
  "a+tag",
  "",
];
const VERBS_SMTP = [
  "EHLO",
  "HELO",
  "MAIL",
  "RCPT",
  "DATA",
  "RSET",
  "NOOP",
  "VRFY",
  "HELP",
  "QUIT",
  "STARTTLS",
];
const VERBS_ODD = [
  "AUTH",
  "ATRN",
  "ETRN",
  "TURN",
  "EXPN",
  "BDAT",
  "XCLIENT",
  "GET / HTTP/1.1",
  "\u0000",
  "ehlo",
];

/** The seed of session `index` of a run (independent streams, so sessions replay alone). */
export function sessionSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) + Math.imul(index + 1, 0x165667b1)) >>> 0;
}

/** Generates session `index`. */
export function generateSession(seed: number, index: number, world: FuzzWorld): FuzzSession {
  const rng = new Rng(sessionSeed(seed, index));
  const listeners: FuzzListener[] = world.tls ? ["smtp", "smtp", "odmr", "odmr", "odmrs"] : ["smtp", "odmr"];
  const listener = rng.pick(listeners);
  const g = new Grammar(rng, world);
  const steps = listener === "smtp" ? g.intakeSession() : g.odmrSession();
  const tags: string[] = [listener];
  corrupt(rng, steps, tags, listener);
  steps.push({ kind: "end", how: rng.pick(["fin", "fin", "rst", "linger"] as const) });
  return { index, listener, tags, steps };
}

/** The grammar of valid commands. */
class Grammar {
  constructor(readonly rng: Rng, readonly world: FuzzWorld) {}

  line(text: string): Step {
    return { kind: "send", bytes: ENC.encode(text + CRLF) };
  }

  /** A command, then usually a wait for its reply (lockstep), sometimes not (pipelined). */
  command(out: Step[], text: string): void {
    out.push(this.line(text));
    if (this.rng.chance(0.85)) out.push({ kind: "read", ms: REPLY_MS });
  }

  address(): string {
    const r = this.rng;
    const own = r.pick(this.world.domains);
    const domain = r.pick([own, own, this.world.otherDomain, "elsewhere.example", "", "[127.0.0.1]"]);
    const local = r.pick(LOCALS);
    return domain ? `${local}@${domain}` : local;
  }

  mailParams(): string {
    const r = this.rng;
    const all = [
      "SIZE=" + r.pick(["100", "0", "99999999999", "-1", "x"]),
      "BODY=" + r.pick(["8BITMIME", "7BIT", "BINARYMIME", "x"]),
      "SMTPUTF8",
      "RET=" + r.pick(["HDRS", "FULL", "X"]),
      "ENVID=" + r.pick(["abc", "a+2Bb", "+ZZ", ""]),
      "AUTH=<>",
      "X=Y",
    ];
    return Array.from({ length: r.int(0, 3) }, () => " " + r.pick(all)).join("");
  }

  rcptParams(): string {
    const r = this.rng;
    const all = [
      "NOTIFY=" + r.pick(["NEVER", "SUCCESS,FAILURE", "DELAY", "NEVER,SUCCESS", "x"]),
      "ORCPT=rfc822;" + r.pick(["a@b", "a+2Bb@c", ""]),
      "X=1",
    ];
    return Array.from({ length: r.int(0, 2) }, () => " " + r.pick(all)).join("");
  }

  /** A message body: ordinary lines, dot lines, 8-bit, Received headers, long lines, smuggling tries. */
  body(): string {
    const r = this.rng;
    const lines = [`Message-ID: <fuzz-${r.u32()}@chaos.test>`, "Subject: fuzz", ""];
    for (let i = r.int(0, 40); i > 0; i--) {
      lines.push(r.pick([
        "plain text line",
        ".",
        "..",
        ".leading dot",
        "Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000",
        "x".repeat(r.int(100, 12000)),
        "8-bit: \u00e9\u00e8\u00ea",
        "smuggle\n.\nMAIL FROM:<evil@x>",
        "smuggle\r.\rRCPT TO:<x@y>",
        "",
      ]));
    }
    return lines.join(CRLF) + CRLF + ".";
  }

  intakeSession(): Step[] {
    const r = this.rng;
    const out: Step[] = [{ kind: "read", ms: REPLY_MS }];
    this.command(out, `${r.pick(["EHLO", "EHLO", "HELO", "ehlo"])} ${r.pick(HOSTS)}`);
    for (let t = r.int(0, 3); t > 0; t--) {
      this.command(
        out,
        `MAIL FROM:${r.pick(["<", "<", " <", ""])}${
          r.chance(0.1) ? "" : this.address()
        }>${this.mailParams()}`,
      );
      for (let k = r.int(0, 4); k > 0; k--) {
        this.command(out, `RCPT TO:<${this.address()}>${this.rcptParams()}`);
      }
      if (r.chance(0.8)) {
        this.command(out, "DATA");
        out.push(this.line(this.body()));
        out.push({ kind: "read", ms: COMMIT_MS });
      }
      if (r.chance(0.3)) {
        this.command(out, r.pick(["RSET", "NOOP", "VRFY bob", "HELP", "EXPN list", "BDAT 10 LAST"]));
      }
      if (this.world.tls && r.chance(0.1)) {
        out.push(this.line("STARTTLS"));
        out.push({ kind: "tls" });
        this.command(out, `EHLO ${r.pick(HOSTS)}`);
      }
    }
    for (let k = r.int(0, 3); k > 0; k--) {
      this.command(out, `${r.pick([...VERBS_SMTP, ...VERBS_ODD])} ${r.pick(["", "x", this.address()])}`);
    }
    if (r.chance(0.7)) this.command(out, "QUIT");
    return out;
  }

  odmrSession(): Step[] {
    const r = this.rng;
    const w = this.world;
    const out: Step[] = [{ kind: "read", ms: REPLY_MS }];
    this.command(
      out,
      r.chance(0.7) ? "EHLO customer.example" : `${r.pick(["EHLO", "HELO"])} ${r.pick(HOSTS)}`,
    );
    if (w.tls && r.chance(0.15)) {
      out.push(this.line("STARTTLS"));
      out.push({ kind: "tls" });
      this.command(out, "EHLO customer.example");
    }
    const auth = r.int(0, 9);
    if (auth <= 3) {
      // The real account: a right CRAM-MD5 answer (then ATRN can turn) or a wrong one.
      out.push({ kind: "read", ms: REPLY_MS }, this.line("AUTH CRAM-MD5"));
      out.push({ kind: "cram", right: auth <= 2, ms: AUTH_MS });
    } else if (auth <= 5) {
      out.push(this.line(`AUTH CRAM-MD5${r.chance(0.2) ? " =" : ""}`));
      out.push({ kind: "read", ms: REPLY_MS });
      out.push(
        this.line(
          r.pick(["*", "", "!!notbase64!!", btoa(`nobody${r.u32()} 0123456789abcdef0123456789abcdef`)]),
        ),
      );
      out.push({ kind: "read", ms: AUTH_MS });
    } else if (auth === 6) {
      this.command(out, `AUTH PLAIN ${r.pick(["", "=", btoa(`\u0000nobody${r.u32()}\u0000wrong`), "AAAA"])}`);
    } else if (auth === 7) {
      this.command(out, "AUTH LOGIN");
      this.command(out, btoa(`nobody${r.u32()}`));
    }
    for (let k = r.int(0, 2); k > 0; k--) {
      this.command(out, r.pick(["NOOP", "RSET", "HELP", "MAIL FROM:<a@b>", "QUIT x", "EHLO again"]));
    }
    const own = r.pick(w.domains);
    const domains = r.chance(0.5) ? own : r.pick([
      w.domains.join(","),
      `${own},${w.otherDomain}`,
      w.otherDomain,
      "nosuch.example",
      "",
      "a,,b",
      `${own} ${own}`,
      own.toUpperCase(),
    ]);
    out.push(this.line(`ATRN${domains ? " " + domains : ""}`));
    out.push({ kind: "customer", seed: r.u32() });
    return out;
  }
}

/** Corruptions: each session gets none, one or several. */
function corrupt(rng: Rng, steps: Step[], tags: string[], listener: FuzzListener): void {
  const sends = () => steps.map((s, i) => (s.kind === "send" ? i : -1)).filter((i) => i >= 0);
  const at = () => rng.int(1, steps.length);
  /** Replaces one random send step by what `fn` makes of its bytes. */
  const rewrite = (fn: (bytes: Uint8Array) => Step) => {
    const i = rng.pick(sends());
    steps[i] = fn((steps[i] as Extract<Step, { kind: "send" }>).bytes);
  };
  for (let n = rng.pick([0, 0, 1, 1, 1, 2, 3]); n > 0; n--) {
    const kind = rng.int(0, 11);
    if (kind === 0) {
      tags.push("garbage");
      steps.splice(at(), 0, { kind: "send", bytes: rng.bytes(rng.int(1, 4096)) });
    } else if (kind === 1) {
      tags.push("huge-line");
      const len = rng.pick([2047, 2048, 2049, 12289, rng.int(3000, 300_000)]);
      const bytes = new Uint8Array(len + 2).fill(0x41);
      if (rng.chance(0.5)) bytes.set([0x0d, 0x0a], len);
      steps.splice(at(), 0, { kind: "send", bytes });
    } else if (kind === 2) {
      tags.push("eol-mix");
      rewrite((bytes) => ({ kind: "send", bytes: mixLineEnds(rng, bytes) }));
    } else if (kind === 3) {
      tags.push("flood");
      const cmd = rng.pick([
        "NOOP\r\n",
        "RSET\r\n",
        "RCPT TO:<a@b>\r\n",
        "EHLO x\r\n",
        "\r\n",
        "AUTH CRAM-MD5\r\n",
      ]);
      steps.splice(at(), 0, { kind: "send", bytes: ENC.encode(cmd.repeat(rng.int(50, 3000))) });
    } else if (kind === 4) {
      tags.push("tls-record");
      const record = rng.chance(0.8)
        ? clientHelloish(rng)
        : new Uint8Array([0x80, 0x2e, 0x01, 0x00, 0x02, ...rng.bytes(40)]);
      if (rng.chance(0.6)) steps.splice(0, 1, { kind: "send", bytes: record });
      else steps.splice(at(), 0, { kind: "send", bytes: record });
    } else if (kind === 5) {
      tags.push("truncated-auth");
      const cut = rng.int(0, steps.length);
      steps.splice(cut, steps.length - cut, {
        kind: "send",
        bytes: ENC.encode(
          rng.pick(["AUTH CRAM-MD5\r\n", "AUTH PLAIN\r\n", "AUTH LOGIN\r\n", "AUTH PLAIN AGFiYw", "AUTH"]),
        ),
      }, { kind: "read", ms: rng.int(0, 300) });
    } else if (kind === 6 || kind === 7) {
      tags.push("mutate");
      rewrite((bytes) => ({ kind: "send", bytes: mutate(rng, bytes) }));
    } else if (kind === 8) {
      tags.push("drip");
      rewrite((bytes) => ({ kind: "send", bytes: bytes.subarray(0, 40), dripMs: 2 }));
    } else if (kind === 9) {
      tags.push("early-talk");
      if (steps[0]?.kind === "read") steps.shift();
    } else if (kind === 10) {
      tags.push("pipelined");
      // Drop every wait: the whole session goes out as fast as it can be written.
      for (let i = steps.length - 1; i >= 0; i--) if (steps[i]!.kind === "read" && i > 0) steps.splice(i, 1);
    } else {
      tags.push("nul-8bit");
      steps.splice(at(), 0, {
        kind: "send",
        bytes: ENC.encode(
          rng.pick([
            "EHLO a\u0000b\r\n",
            "MAIL FROM:<\u00e9@x>\r\n",
            "RCPT TO:<a@b\u0000>\r\n",
            "\u0000\u0000\r\n",
            "NOOP \u00ff\r\n",
          ]),
        ),
      });
    }
  }
  if (listener === "odmrs" && rng.chance(0.3)) {
    // The implicit-TLS port spoken to in plaintext.
    tags.push("plaintext-on-tls");
    steps.unshift({ kind: "send", bytes: ENC.encode("EHLO plain\r\n") });
  }
}

function mixLineEnds(rng: Rng, bytes: Uint8Array): Uint8Array {
  const text = new TextDecoder("latin1").decode(bytes);
  const ends = ["\n", "\r", "\r\r\n", "\n\r", "\u0000\r\n", "\r\u0000\n", "\r\n\r\n"];
  let out = "";
  for (const part of text.split(CRLF)) out += part + (rng.chance(0.5) ? rng.pick(ends) : CRLF);
  return latin1(out);
}

function latin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** Byte-level mutations: flips, insertions, deletions, duplicated runs. */
function mutate(rng: Rng, bytes: Uint8Array): Uint8Array {
  const out = [...bytes];
  for (let n = rng.int(1, 8); n > 0 && out.length > 0; n--) {
    const i = rng.int(0, out.length - 1);
    const op = rng.int(0, 3);
    if (op === 0) out[i] = out[i]! ^ (1 << rng.int(0, 7));
    else if (op === 1) out.splice(i, 0, rng.int(0, 255));
    else if (op === 2) out.splice(i, rng.int(1, 8));
    else out.splice(i, 0, ...out.slice(i, i + rng.int(1, 64)));
  }
  return new Uint8Array(out);
}

/** A TLS handshake record header with a random (mostly invalid) body. */
function clientHelloish(rng: Rng): Uint8Array {
  const body = rng.bytes(rng.int(4, 512));
  body[0] = 0x01; // handshake type: ClientHello
  return new Uint8Array([0x16, 0x03, rng.pick([0x01, 0x03]), body.length >> 8, body.length & 0xff, ...body]);
}
