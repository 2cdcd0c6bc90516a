import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readOriginal, type ReadOriginalOptions, scanMimeData } from "../../src/dsn/original.ts";
import { bytes, splitAt, text } from "../smtp/helpers.ts";

const HEADER = "From: a@b.example\r\nSubject: hi\r\n\tthere\r\n";
const MESSAGE = bytes(`${HEADER}\r\nbody line\r\n\r\nmore\r\n`);
const headersOnly: ReadOriginalOptions = { full: false, maxFullBytes: 1 << 20, maxHeaderBytes: 1 << 16 };
const full: ReadOriginalOptions = { ...headersOnly, full: true };

describe("readOriginal: header section", () => {
  test("at every split point, in two and three chunks", () => {
    for (let i = 0; i <= MESSAGE.length; i++) {
      const two = readOriginal(splitAt(MESSAGE, [i]), headersOnly);
      assert.equal(text(two.bytes), HEADER, `split at ${i}`);
      for (let j = i; j <= MESSAGE.length; j += 3) {
        assert.equal(
          text(readOriginal(splitAt(MESSAGE, [i, j]), headersOnly).bytes),
          HEADER,
          `split ${i},${j}`,
        );
      }
    }
  });

  const table: [string, string, string][] = [
    ["no empty line: all header section", "A: 1\r\nB: 2\r\n", "A: 1\r\nB: 2\r\n"],
    ["empty line first: no header section", "\r\nbody\r\n", ""],
    ["empty message", "", ""],
    ["a lone LF empty line, leniently", "A: 1\n\nbody\n", "A: 1\n"],
    ["a CR at a line start that is not followed by LF", "A: 1\r\n\rB: 2\r\n\r\nx", "A: 1\r\n\rB: 2\r\n"],
  ];
  for (const [name, input, expected] of table) {
    test(name, () => {
      const result = readOriginal([bytes(input)], headersOnly);
      assert.equal(result.kind, "headers");
      assert.equal(text(result.bytes), expected);
      assert.equal(result.truncated, false);
    });
  }

  test("a header section over the cap is cut at a line end", () => {
    const long = bytes(`A: ${"a".repeat(50)}\r\nB: ${"b".repeat(50)}\r\n\r\nbody\r\n`);
    const result = readOriginal(splitAt(long, [10, 30]), { ...headersOnly, maxHeaderBytes: 80 });
    assert.equal(text(result.bytes), `A: ${"a".repeat(50)}\r\n`);
    assert.equal(result.truncated, true);
  });

  test("stops reading once the header section has ended", () => {
    let pulled = 0;
    function* source(): Generator<Uint8Array> {
      for (const chunk of splitAt(MESSAGE, [5, HEADER.length + 2, HEADER.length + 5])) {
        pulled++;
        yield chunk;
      }
    }
    assert.equal(text(readOriginal(source(), headersOnly).bytes), HEADER);
    assert.equal(pulled, 2);
  });

  test("copies what it keeps: chunks may be views of one reused buffer", () => {
    const buffer = new Uint8Array(8);
    function* reused(): Generator<Uint8Array> {
      for (let i = 0; i < MESSAGE.length; i += buffer.length) {
        const piece = MESSAGE.subarray(i, i + buffer.length);
        buffer.set(piece);
        yield buffer.subarray(0, piece.length);
      }
    }
    assert.equal(text(readOriginal(reused(), headersOnly).bytes), HEADER);
    assert.equal(text(readOriginal(reused(), full).bytes), text(MESSAGE));
  });
});

describe("readOriginal: full message", () => {
  test("returned whole from 256 KiB chunks", () => {
    const chunk = new Uint8Array(256 * 1024).fill(0x61);
    // 512-octet lines, so every chunk ends with CRLF.
    for (let i = 510; i < chunk.length; i += 512) chunk.set([0x0d, 0x0a], i);
    const parts = [MESSAGE, chunk, chunk, chunk];
    const result = readOriginal(parts, full);
    assert.equal(result.kind, "full");
    assert.equal(result.bytes.length, MESSAGE.length + 3 * chunk.length);
    assert.deepEqual(result.bytes.subarray(0, MESSAGE.length), MESSAGE);
    assert.equal(result.eightBit, false);
    assert.equal(result.needsEncoding, false);
  });

  const table: [string, string, Partial<ReadOriginalOptions>, ReturnType<typeof readOriginal>["fallback"]][] =
    [
      ["over the cap", `${HEADER}\r\n${"x".repeat(100)}\r\n`, { maxFullBytes: 100 }, "too-large"],
      ["a line over 998 octets", `${HEADER}\r\n${"x".repeat(999)}\r\n`, {}, "unsafe"],
      ["a bare LF", `${HEADER}\r\nx\ny\r\n`, {}, "unsafe"],
      ["a NUL", `${HEADER}\r\nx\u0000y\r\n`, {}, "unsafe"],
    ];
  for (const [name, input, options, fallback] of table) {
    test(`falls back to the header section: ${name}`, () => {
      const result = readOriginal(splitAt(bytes(input), [3, 50]), { ...full, ...options });
      assert.equal(result.kind, "headers");
      assert.equal(result.fallback, fallback);
      assert.equal(text(result.bytes), HEADER);
    });
  }

  test("exactly at the cap is returned", () => {
    const result = readOriginal([MESSAGE], { ...full, maxFullBytes: MESSAGE.length });
    assert.equal(result.kind, "full");
  });
});

describe("scanMimeData", () => {
  const table: [string, string, { eightBit: boolean; needsEncoding: boolean }][] = [
    ["plain", "a\r\nb\r\n", { eightBit: false, needsEncoding: false }],
    ["8-bit", "\u00e9\r\n", { eightBit: true, needsEncoding: false }],
    ["998 octets", `${"a".repeat(998)}\r\n`, { eightBit: false, needsEncoding: false }],
    ["999 octets", `${"a".repeat(999)}\r\n`, { eightBit: false, needsEncoding: true }],
    ["bare CR", "a\rb\r\n", { eightBit: false, needsEncoding: true }],
    ["bare LF", "a\nb", { eightBit: false, needsEncoding: true }],
    ["NUL", "a\u0000\r\n", { eightBit: false, needsEncoding: true }],
  ];
  for (const [name, input, expected] of table) {
    test(name, () => assert.deepEqual(scanMimeData(bytes(input)), expected));
  }
});
