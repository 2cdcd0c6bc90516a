/**
 * Streaming dot-stuffing encoder for sending message content (client side, docs/protocol.md#client-commands).
 *
 * Output is canonical: every line ends in CRLF, and every line that starts with "." gets another "."
 * in front (RFC 5321 4.5.2). A bare CR or bare LF in the input becomes CRLF. Stored messages are
 * already CRLF-only because intake refuses bare line endings (data_reader.ts), so the conversion is
 * defence in depth: it guarantees we never send `\n.\r\n` or similar to a customer MTA that might
 * take it for end of data (outbound SMTP smuggling). CRLF was chosen over replacing with a space
 * because it keeps the line structure the author saw.
 *
 * Input may be split at any octet; at most one CR is held between calls.
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/** The terminator line (RFC 5321 4.1.1.4). */
const TERMINATOR = new Uint8Array([DOT, CR, LF]);

/** Encodes a message body for the DATA phase; call {@link push} per chunk, then {@link finish} once. */
export class DotStuffer {
  #atLineStart = true;
  #crHeld = false;
  #finished = false;

  /** Encodes one chunk; the result is a fresh array (possibly empty). */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#finished) throw new Error("Dot-stuffer already finished");
    // Worst case each octet doubles (a dot at line start, or a bare LF/CR becoming CRLF).
    const out = new Uint8Array(chunk.length * 2 + 2);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (this.#crHeld) {
        this.#crHeld = false;
        out[o++] = CR;
        out[o++] = LF;
        this.#atLineStart = true;
        // CRLF consumed as a unit; a CR followed by anything else was bare and is now CRLF too.
        if (byte === LF) continue;
      }
      if (byte === CR) {
        this.#crHeld = true;
      } else if (byte === LF) {
        // Bare LF (RFC 5321 2.3.8 forbids it on the wire): emit CRLF.
        out[o++] = CR;
        out[o++] = LF;
        this.#atLineStart = true;
      } else {
        // RFC 5321 4.5.2: double a leading period.
        if (this.#atLineStart && byte === DOT) out[o++] = DOT;
        out[o++] = byte;
        this.#atLineStart = false;
      }
    }
    return out.slice(0, o);
  }

  /**
   * Ends the content: flushes a held CR as CRLF, adds CRLF if the last line is unterminated (RFC 5321
   * 4.1.1.4: the terminator's first CRLF ends the last line) and appends ".\r\n".
   */
  finish(): Uint8Array {
    if (this.#finished) throw new Error("Dot-stuffer already finished");
    this.#finished = true;
    if (this.#crHeld || !this.#atLineStart) return new Uint8Array([CR, LF, ...TERMINATOR]);
    return TERMINATOR.slice();
  }
}

/** Convenience for a whole message in memory: stuffed content plus terminator. */
export function dotStuff(message: Uint8Array): Uint8Array {
  const stuffer = new DotStuffer();
  const body = stuffer.push(message);
  const tail = stuffer.finish();
  const out = new Uint8Array(body.length + tail.length);
  out.set(body);
  out.set(tail, body.length);
  return out;
}
