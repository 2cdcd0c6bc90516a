import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LineBuffer, LineSplitter } from "../../src/net/line_buffer.ts";
import { BareLineEndingError, LineFloodError, LineTooLongError } from "../../src/net/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (text: string): Uint8Array => enc.encode(text);

/** Every complete line in the buffer, as text. */
function lines(buffer: LineBuffer, maxLength = 512): string[] {
  const out: string[] = [];
  for (let line = buffer.readLine(maxLength); line !== undefined; line = buffer.readLine(maxLength)) {
    out.push(dec.decode(line));
  }
  return out;
}

describe("LineBuffer.readLine", () => {
  test("reassembles lines across every chunk split, including between CR and LF", () => {
    const wire = "EHLO example.org\r\nMAIL FROM:<a@b.example>\r\n\r\nNOOP\r\n";
    for (const size of [1, 2, 3, 7, 17, wire.length]) {
      const buffer = new LineBuffer();
      const got: string[] = [];
      for (let i = 0; i < wire.length; i += size) {
        buffer.push(bytes(wire.slice(i, i + size)));
        got.push(...lines(buffer));
      }
      assert.deepEqual(got, ["EHLO example.org", "MAIL FROM:<a@b.example>", "", "NOOP"], `size ${size}`);
      assert.equal(buffer.hasInput(), false);
      assert.equal(buffer.byteCount, 0);
    }
  });

  test("an incomplete line stays buffered until its CRLF", () => {
    const buffer = new LineBuffer();
    buffer.push(bytes("QUIT\r"));
    assert.equal(buffer.readLine(512), undefined);
    assert.equal(buffer.byteCount, 5);
    buffer.push(bytes("\n"));
    assert.equal(dec.decode(buffer.readLine(512)), "QUIT");
  });

  test("returns raw octets (no decoding)", () => {
    const buffer = new LineBuffer();
    buffer.push(new Uint8Array([0xff, 0x00, 0xc3, 0x0d, 0x0a]));
    assert.deepEqual([...buffer.readLine(512)!], [0xff, 0x00, 0xc3]);
  });

  test("a bare LF or CR throws, consumes up to it, and reading goes on (RFC 5321 2.3.8)", () => {
    const buffer = new LineBuffer();
    buffer.push(bytes("EHLO x\nNOOP\r\nMAIL\rRSET\r\n"));
    assert.throws(
      () => buffer.readLine(512),
      (e) => e instanceof BareLineEndingError && e.character === "LF",
    );
    assert.equal(dec.decode(buffer.readLine(512)), "NOOP");
    assert.throws(
      () => buffer.readLine(512),
      (e) => e instanceof BareLineEndingError && e.character === "CR",
    );
    assert.equal(dec.decode(buffer.readLine(512)), "RSET");
  });

  test("a line over maxLength (CRLF included) is dropped whole and reported once", () => {
    const buffer = new LineBuffer();
    buffer.push(bytes(`${"x".repeat(9)}\r\nOK\r\n`));
    assert.throws(
      () => buffer.readLine(10),
      (e) => e instanceof LineTooLongError && e.length === 11 && e.maxLength === 10,
    );
    assert.equal(dec.decode(buffer.readLine(10)), "OK");
    // Exactly maxLength octets with the CRLF fits.
    buffer.push(bytes(`${"y".repeat(8)}\r\n`));
    assert.equal(dec.decode(buffer.readLine(10)), "y".repeat(8));
  });

  test("an over-long line arriving in pieces is discarded as it comes, never buffered", () => {
    const buffer = new LineBuffer();
    for (let i = 0; i < 10; i++) {
      buffer.push(bytes("z".repeat(100)));
      assert.equal(buffer.readLine(50), undefined);
      assert.ok(buffer.byteCount <= 100, "the dropped part is not kept");
    }
    buffer.push(bytes("\r\nNEXT\r\n"));
    assert.throws(() => buffer.readLine(50), (e) => e instanceof LineTooLongError && e.length === 1002);
    assert.equal(dec.decode(buffer.readLine(50)), "NEXT");
  });

  test("no CRLF within the flood limit throws LineFloodError", () => {
    const buffer = new LineBuffer({ floodLimit: 1000 });
    buffer.push(bytes("a".repeat(900)));
    assert.equal(buffer.readLine(512), undefined);
    buffer.push(bytes("a".repeat(200)));
    assert.throws(() => buffer.readLine(512), (e) => e instanceof LineFloodError);
  });
});

describe("LineBuffer.readChunk and unread", () => {
  test("hands out a queued chunk itself, or a piece of it, without copying", () => {
    const buffer = new LineBuffer();
    const chunk = bytes("0123456789");
    buffer.push(chunk);
    const first = buffer.readChunk(4)!;
    assert.equal(dec.decode(first), "0123");
    assert.equal(first.buffer, chunk.buffer);
    const rest = buffer.readChunk()!;
    assert.equal(dec.decode(rest), "456789");
    assert.equal(rest.buffer, chunk.buffer);
    assert.equal(buffer.readChunk(), undefined);
    assert.equal(buffer.readChunk(0), undefined);
  });

  test("bytes left after a line come first, then the queued chunks, in order", () => {
    const buffer = new LineBuffer();
    buffer.push(bytes("DATA\r\nbody"));
    assert.equal(dec.decode(buffer.readLine(512)), "DATA");
    buffer.push(bytes(" more"));
    assert.equal(dec.decode(buffer.readChunk()), "body");
    assert.equal(dec.decode(buffer.readChunk()), " more");
  });

  test("unread puts bytes back in front of everything, in every buffer state", () => {
    const empty = new LineBuffer();
    empty.push(bytes("later\r\n"));
    empty.unread(bytes("first\r\n"));
    assert.deepEqual(lines(empty), ["first", "later"]);

    const partlyRead = new LineBuffer();
    partlyRead.push(bytes("AAAA\r\nBBBB\r\n"));
    assert.equal(dec.decode(partlyRead.readLine(512)), "AAAA");
    partlyRead.unread(bytes("X\r\n"));
    assert.deepEqual(lines(partlyRead), ["X", "BBBB"]);

    const big = new LineBuffer();
    big.push(bytes("tail\r\nend\r\n"));
    assert.equal(dec.decode(big.readLine(512)), "tail");
    big.unread(bytes(`${"u".repeat(10_000)}\r\n`)); // more than fits in front: the buffer grows
    assert.deepEqual(lines(big, 20_000), ["u".repeat(10_000), "end"]);
  });

  test("clear drops everything and says how much", () => {
    const buffer = new LineBuffer();
    buffer.push(bytes("STARTTLS\r\nEHLO"));
    assert.equal(dec.decode(buffer.readLine(512)), "STARTTLS");
    buffer.push(bytes(" evil\r\n"));
    assert.equal(buffer.clear(), 11);
    assert.equal(buffer.hasInput(), false);
    assert.equal(buffer.readLine(512), undefined);
  });
});

describe("LineSplitter", () => {
  test("cuts CRLF content into whole lines, carrying a partial line over", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(splitter.push(bytes("a\r\nbb")).map((l) => dec.decode(l)), ["a\r\n"]);
    assert.deepEqual(splitter.push(bytes("b\r\nc\r\nd")).map((l) => dec.decode(l)), ["bbb\r\n", "c\r\n"]);
    assert.equal(dec.decode(splitter.rest()!), "d");
    assert.equal(splitter.rest(), null);
  });
});
