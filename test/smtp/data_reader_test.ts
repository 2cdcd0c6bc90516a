import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  DataReader,
  type DataReaderOptions,
  dataRejection,
  type DataStats,
} from "../../src/smtp/data_reader.ts";
import { DotStuffer } from "../../src/smtp/dot_stuff.ts";
import { bytes, concat, seededRandom, splitAt, text } from "./helpers.ts";

interface Run {
  status: "more" | "done" | "abort";
  body: string;
  leftover: string;
  stats: DataStats;
}

/**
 * Feeds `chunks` one by one, collecting body and everything handed back as leftover. Each body is
 * copied before the next push: it is a view of the reader's reused buffer (see DataReader.push).
 */
function run(chunks: readonly Uint8Array[], options: DataReaderOptions = { maxSize: 1_000_000 }): Run {
  const reader = new DataReader(options);
  const body: Uint8Array[] = [];
  const leftover: Uint8Array[] = [];
  let status: Run["status"] = "more";
  for (const chunk of chunks) {
    const result = reader.push(chunk);
    body.push(result.body.slice());
    leftover.push(result.leftover);
    status = result.status;
  }
  return { status, body: text(concat(body)), leftover: text(concat(leftover)), stats: reader.stats };
}

/** Every way to cut `data` once and twice (plus byte by byte). */
function* everySplit(data: Uint8Array): Generator<{ label: string; chunks: Uint8Array[] }> {
  yield { label: "whole", chunks: [data] };
  yield { label: "byte by byte", chunks: [...data].map((b) => new Uint8Array([b])) };
  for (let a = 0; a <= data.length; a++) {
    yield { label: `split ${a}`, chunks: splitAt(data, [a]) };
    for (let b = a; b <= data.length; b++) yield { label: `split ${a},${b}`, chunks: splitAt(data, [a, b]) };
  }
}

interface Case {
  name: string;
  input: string;
  status: "more" | "done";
  body: string;
  leftover: string;
  bareLf?: boolean;
  bareCr?: boolean;
  nul?: boolean;
  eightBit?: boolean;
}

const CASES: Case[] = [
  // Conforming input.
  { name: "empty message", input: ".\r\n", status: "done", body: "", leftover: "" },
  {
    name: "empty message, pipelined QUIT",
    input: ".\r\nQUIT\r\n",
    status: "done",
    body: "",
    leftover: "QUIT\r\n",
  },
  { name: "one empty line", input: "\r\n.\r\n", status: "done", body: "\r\n", leftover: "" },
  { name: "two empty lines", input: "\r\n\r\n.\r\n", status: "done", body: "\r\n\r\n", leftover: "" },
  {
    name: "simple message with pipelined commands",
    input: "Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<a@b>\r\n",
    status: "done",
    body: "Subject: x\r\n\r\nhi\r\n",
    leftover: "MAIL FROM:<a@b>\r\n",
  },
  { name: "stuffed dot line", input: "..\r\n.\r\n", status: "done", body: ".\r\n", leftover: "" },
  { name: "stuffed dots", input: "a\r\n...x\r\n.\r\n", status: "done", body: "a\r\n..x\r\n", leftover: "" },
  {
    name: "unstuffed leading dot is dropped",
    input: ".x\r\n.\r\n",
    status: "done",
    body: "x\r\n",
    leftover: "",
  },
  {
    name: "dot not at line start kept",
    input: "a.b\r\nc.\r\n.\r\n",
    status: "done",
    body: "a.b\r\nc.\r\n",
    leftover: "",
  },
  { name: "dot space is not the end", input: ". \r\n.\r\n", status: "done", body: " \r\n", leftover: "" },
  { name: "no terminator yet", input: "a\r\nb\r\n", status: "more", body: "a\r\nb\r\n", leftover: "" },
  {
    name: "terminator without CRLF is pending",
    input: "a\r\n.",
    status: "more",
    body: "a\r\n",
    leftover: "",
  },
  {
    name: "terminator without LF is pending",
    input: "a\r\n.\r",
    status: "more",
    body: "a\r\n",
    leftover: "",
  },
  {
    name: "NUL is flagged",
    input: "a\0b\r\n.\r\n",
    status: "done",
    body: "a\0b\r\n",
    leftover: "",
    nul: true,
  },
  {
    name: "8-bit is flagged",
    input: "caf\xc3\xa9\r\n.\r\n",
    status: "done",
    body: "caf\xc3\xa9\r\n",
    leftover: "",
    eightBit: true,
  },

  // SMTP smuggling look-alikes (PROTOCOL 6, hostile input 2): none of these end the data, and the
  // text after them stays body.
  {
    name: "smuggling LF.CRLF",
    input: "x\n.\r\nMAIL FROM:<evil@a>\r\n.\r\nNEXT",
    status: "done",
    body: "x\n.\r\nMAIL FROM:<evil@a>\r\n",
    leftover: "NEXT",
    bareLf: true,
  },
  {
    name: "smuggling LF.LF",
    input: "x\n.\nMAIL FROM:<evil@a>\r\n.\r\nNEXT",
    status: "done",
    body: "x\n.\nMAIL FROM:<evil@a>\r\n",
    leftover: "NEXT",
    bareLf: true,
  },
  {
    name: "smuggling CRLF.LF",
    input: "x\r\n.\nMAIL FROM:<evil@a>\r\n.\r\nNEXT",
    status: "done",
    body: "x\r\n\nMAIL FROM:<evil@a>\r\n",
    leftover: "NEXT",
    bareLf: true,
  },
  {
    name: "smuggling CR.CRLF",
    input: "x\r.\r\nMAIL FROM:<evil@a>\r\n.\r\nNEXT",
    status: "done",
    body: "x\r.\r\nMAIL FROM:<evil@a>\r\n",
    leftover: "NEXT",
    bareCr: true,
  },
  {
    name: "smuggling CRLF.CR",
    input: "x\r\n.\rMAIL FROM:<evil@a>\r\n.\r\nNEXT",
    status: "done",
    body: "x\r\n\rMAIL FROM:<evil@a>\r\n",
    leftover: "NEXT",
    bareCr: true,
  },
  {
    name: "smuggling CRLF.CRCR",
    input: "x\r\n.\r\rMAIL\r\n.\r\n",
    status: "done",
    body: "x\r\n\r\rMAIL\r\n",
    leftover: "",
    bareCr: true,
  },
  {
    name: "smuggling at message start LF",
    input: ".\nMAIL FROM:<evil@a>\r\n.\r\n",
    status: "done",
    body: "\nMAIL FROM:<evil@a>\r\n",
    leftover: "",
    bareLf: true,
  },
  {
    name: "bare LF line then real end",
    input: "a\n\r\n.\r\n",
    status: "done",
    body: "a\n\r\n",
    leftover: "",
    bareLf: true,
  },
  { name: "CR CR LF", input: "a\r\r\n.\r\n", status: "done", body: "a\r\r\n", leftover: "", bareCr: true },
  {
    name: "lone LF.LF never ends",
    input: "a\n.\n",
    status: "more",
    body: "a\n.\n",
    leftover: "",
    bareLf: true,
  },
  {
    name: "lone CR.CR never ends",
    input: "a\r.\r",
    status: "more",
    body: "a\r.",
    leftover: "",
    bareCr: true,
  },
];

describe("DataReader", () => {
  for (const c of CASES) {
    test(`${c.name}, at every split point`, () => {
      const input = bytes(c.input);
      for (const { label, chunks } of everySplit(input)) {
        const result = run(chunks);
        const where = `${c.name} (${label})`;
        assert.equal(result.status, c.status, where);
        assert.equal(result.body, c.body, where);
        assert.equal(result.leftover, c.leftover, where);
        assert.equal(result.stats.bareLf, c.bareLf ?? false, `${where}: bareLf`);
        assert.equal(result.stats.bareCr, c.bareCr ?? false, `${where}: bareCr`);
        assert.equal(result.stats.nul, c.nul ?? false, `${where}: nul`);
        assert.equal(result.stats.eightBit, c.eightBit ?? false, `${where}: eightBit`);
        assert.equal(result.stats.size, c.body.length, `${where}: size counts decoded octets`);
        const consumed = c.status === "done" ? input.length - c.leftover.length : input.length;
        assert.equal(result.stats.rawBytes, consumed, `${where}: rawBytes`);
      }
    });
  }

  test("smuggled tail never comes back as leftover, even with pipelined real commands", () => {
    const input = bytes("a\n.\r\nRCPT TO:<victim@x>\r\nDATA\r\n\r\n.\r\nQUIT\r\n");
    for (const { label, chunks } of everySplit(input)) {
      const result = run(chunks);
      assert.equal(result.leftover, "QUIT\r\n", label);
      assert.equal(dataRejection(result.stats)?.code, 550, label);
    }
  });

  test("pushes after done return the chunk untouched", () => {
    const reader = new DataReader({ maxSize: 100 });
    assert.equal(reader.push(bytes(".\r\n")).status, "done");
    assert.equal(reader.finished, true);
    const after = reader.push(bytes("MAIL"));
    assert.equal(after.status, "done");
    assert.equal(text(after.leftover), "MAIL");
    assert.equal(after.body.length, 0);
  });

  describe("line length", () => {
    const table = [
      { name: "998 + CRLF fits", line: "x".repeat(998), longest: 1000, tooLong: false },
      { name: "999 + CRLF is too long", line: "x".repeat(999), longest: 1001, tooLong: true },
      { name: "stuffing dot not counted", line: "." + "x".repeat(998), longest: 1000, tooLong: false },
      { name: "stuffed dot line counted once", line: ".." + "x".repeat(997), longest: 1000, tooLong: false },
    ];
    for (const row of table) {
      test(row.name, () => {
        const result = run([bytes(`short\r\n${row.line}\r\n.\r\n`)]);
        assert.equal(result.status, "done");
        assert.equal(result.stats.longestLine, row.longest);
        assert.equal(result.stats.lineTooLong, row.tooLong);
        assert.equal(dataRejection(result.stats)?.code ?? null, row.tooLong ? 554 : null);
      });
    }
    test("configurable and flagged before the line ends", () => {
      const result = run([bytes("abcdefgh")], { maxSize: 100, maxLineLength: 5 });
      assert.equal(result.status, "more");
      assert.equal(result.stats.lineTooLong, true);
    });
  });

  describe("size cap", () => {
    test("exactly maxSize is accepted", () => {
      const result = run([bytes("12345678\r\n.\r\n")], { maxSize: 10 });
      assert.equal(result.stats.size, 10);
      assert.equal(result.stats.sizeExceeded, false);
      assert.equal(result.body, "12345678\r\n");
    });
    test("one more octet is flagged, body stops, end is still found", () => {
      const input = bytes("123456789\r\nmore lines\r\n.\r\nQUIT\r\n");
      for (const { label, chunks } of everySplit(input)) {
        const result = run(chunks, { maxSize: 10 });
        assert.equal(result.status, "done", label);
        assert.equal(result.stats.sizeExceeded, true, label);
        assert.equal(result.stats.size, 23, label);
        assert.ok(result.body.length <= 10, label);
        assert.equal(result.leftover, "QUIT\r\n", label);
        assert.equal(dataRejection(result.stats)?.code, 552, label);
      }
    });
  });

  describe("hard byte cap", () => {
    const input = bytes("abc\r\n.\r\nNEXT");
    test("terminator within the cap is done", () => {
      const result = run([input], { maxSize: 100, hardByteCap: 8 });
      assert.equal(result.status, "done");
      assert.equal(result.leftover, "NEXT");
    });
    test("cap reached before the terminator aborts, at every split", () => {
      for (const { label, chunks } of everySplit(input)) {
        const result = run(chunks, { maxSize: 100, hardByteCap: 7 });
        assert.equal(result.status, "abort", label);
        assert.equal(result.leftover, "", label);
      }
    });
    test("stays aborted", () => {
      const reader = new DataReader({ maxSize: 1, hardByteCap: 2 });
      assert.equal(reader.push(bytes("abc")).status, "abort");
      assert.equal(reader.push(bytes(".\r\n")).status, "abort");
      assert.equal(reader.finished, true);
    });
  });

  test("body is a view of one reused buffer, valid until the next push (no allocation per chunk)", () => {
    const reader = new DataReader({ maxSize: 1_000_000 });
    const first = reader.push(bytes("hello\r\n"));
    assert.equal(text(first.body), "hello\r\n");
    const buffer = first.body.buffer;
    const second = reader.push(bytes("..dot\r\nab"));
    assert.equal(second.body.buffer, buffer, "same output buffer reused");
    assert.equal(text(second.body), ".dot\r\nab");
    assert.equal(text(first.body).startsWith(".dot"), true, "the earlier body was overwritten: copy to keep");
    // A bigger chunk grows the buffer once; the body is still exact.
    const big = bytes("x".repeat(10_000));
    assert.equal(reader.push(big).body.length, 10_000);
    const done = reader.push(bytes("\r\n.\r\nQUIT\r\n"));
    assert.equal(done.status, "done");
    assert.equal(text(done.body), "\r\n");
    assert.equal(text(done.leftover), "QUIT\r\n");
    assert.equal(reader.stats.size, 7 + 8 + 10_000 + 2);
  });

  test("the pushed chunk is only read: leftover is a view of it, the input is never written", () => {
    const reader = new DataReader({ maxSize: 1_000_000 });
    const chunk = bytes("a\r\n..b\r\n.\r\nNOOP\r\n");
    const copy = chunk.slice();
    const result = reader.push(chunk);
    assert.deepEqual(chunk, copy);
    assert.equal(result.leftover.buffer, chunk.buffer);
    assert.equal(text(result.body), "a\r\n.b\r\n");
  });

  test("bounded output: body per push never exceeds chunk + 1", () => {
    const reader = new DataReader({ maxSize: 1_000_000 });
    const random = seededRandom(7);
    const alphabet = "ab.\r\n";
    for (let i = 0; i < 2000; i++) {
      const chunk = bytes(alphabet[Math.floor(random() * alphabet.length)] ?? "a");
      const result = reader.push(chunk);
      assert.ok(result.body.length <= chunk.length + 1);
      if (result.status !== "more") break;
    }
  });
});

describe("dataRejection", () => {
  const clean: DataStats = {
    size: 10,
    rawBytes: 13,
    bareLf: false,
    bareCr: false,
    nul: false,
    eightBit: false,
    longestLine: 10,
    lineTooLong: false,
    sizeExceeded: false,
  };
  const table: {
    name: string;
    stats: Partial<DataStats>;
    rejectEightBit?: boolean;
    expect: string | null;
  }[] = [
    { name: "clean", stats: {}, expect: null },
    { name: "bare LF", stats: { bareLf: true }, expect: "550 5.6.0" },
    { name: "bare CR", stats: { bareCr: true }, expect: "550 5.6.0" },
    { name: "bare LF wins over size", stats: { bareLf: true, sizeExceeded: true }, expect: "550 5.6.0" },
    { name: "NUL", stats: { nul: true }, expect: "554 5.6.0" },
    { name: "size", stats: { sizeExceeded: true }, expect: "552 5.3.4" },
    { name: "long line", stats: { lineTooLong: true }, expect: "554 5.6.0" },
    { name: "8-bit allowed by default", stats: { eightBit: true }, expect: null },
    {
      name: "8-bit refused on request",
      stats: { eightBit: true },
      rejectEightBit: true,
      expect: "554 5.6.0",
    },
  ];
  for (const row of table) {
    test(row.name, () => {
      const reply = dataRejection({ ...clean, ...row.stats }, {
        rejectEightBit: row.rejectEightBit ?? false,
      });
      assert.equal(reply === null ? null : `${reply.code} ${reply.enhanced}`, row.expect);
    });
  }
});

describe("dot-stuffing round trip (DotStuffer then DataReader is the identity)", () => {
  const random = seededRandom(20240101);
  const pieces = ["", ".", "..", "a", "abc", ". ", ".\r", "x.y", "\xff", "MAIL FROM:<a@b>"];

  function randomBody(): string {
    const lines: string[] = [];
    const count = Math.floor(random() * 8);
    for (let i = 0; i < count; i++) {
      let line = "";
      const parts = Math.floor(random() * 4);
      for (let p = 0; p < parts; p++) line += pieces[Math.floor(random() * pieces.length)] ?? "";
      lines.push(line.replace(/\r/g, "") + "\r\n");
    }
    return lines.join("");
  }

  function randomSplits(length: number): number[] {
    const splits: number[] = [];
    for (let i = 1; i < length; i++) if (random() < 0.3) splits.push(i);
    return splits;
  }

  test("500 random CRLF bodies at random splits", () => {
    for (let i = 0; i < 500; i++) {
      const body = randomBody();
      const stuffer = new DotStuffer();
      const encoded = concat([
        ...splitAt(bytes(body), randomSplits(body.length)).map((c) => stuffer.push(c)),
        stuffer.finish(),
        bytes("NEXT\r\n"),
      ]);
      const result = run(splitAt(encoded, randomSplits(encoded.length)));
      assert.equal(result.status, "done", JSON.stringify(body));
      assert.equal(result.body, body, JSON.stringify(body));
      assert.equal(result.leftover, "NEXT\r\n");
      assert.equal(result.stats.bareLf || result.stats.bareCr, false);
      assert.equal(result.stats.size, body.length);
    }
  });

  test("hostile stored content is neutralised by the encoder", () => {
    const hostile = [
      "x\n.\r\nMAIL FROM:<e@a>",
      "x\r.\r\nRCPT",
      "x\r\n.\nDATA",
      "\n.\n",
      "\r",
      "end without CRLF",
    ];
    for (const body of hostile) {
      const stuffer = new DotStuffer();
      const encoded = concat([stuffer.push(bytes(body)), stuffer.finish()]);
      const result = run([encoded, bytes("TAIL")]);
      assert.equal(result.status, "done", JSON.stringify(body));
      assert.equal(result.leftover, "TAIL", JSON.stringify(body));
      assert.equal(result.stats.bareLf || result.stats.bareCr, false, JSON.stringify(body));
      assert.equal(
        result.stats.rawBytes,
        encoded.length,
        `${JSON.stringify(body)} ends exactly at the terminator`,
      );
    }
  });
});

test("whole-chunk, random-split and byte-at-a-time feeding give identical results (differential)", () => {
  // The reader copies plain runs inside a line in bulk; this pins it to the byte-by-byte state
  // machine on bodies rich in CR, LF, dots, NUL and 8-bit octets, with random size/line limits.
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const alphabet = [13, 10, 46, 0, 200, 65, 66, 32, 13, 10];
  for (let t = 0; t < 1500; t++) {
    const n = Math.floor(rnd() * 300);
    const bytes = new Uint8Array(n + 5);
    for (let i = 0; i < n; i++) {
      bytes[i] = rnd() < 0.6 ? 97 + Math.floor(rnd() * 3) : alphabet[Math.floor(rnd() * alphabet.length)]!;
    }
    bytes.set([13, 10, 46, 13, 10], n);
    const maxSize = Math.floor(rnd() * 200) + 1;
    const maxLineLength = Math.floor(rnd() * 50) + 3;
    const feed = (split: (i: number) => boolean) => {
      const reader = new DataReader({ maxSize, maxLineLength });
      const out: number[] = [];
      let start = 0;
      let status = "more";
      let left: number[] = [];
      for (let i = 1; i <= bytes.length && status === "more"; i++) {
        if (i === bytes.length || split(i)) {
          const res = reader.push(bytes.subarray(start, i));
          out.push(...res.body);
          status = res.status;
          left = [...res.leftover, ...bytes.subarray(i)];
          start = i;
        }
      }
      return JSON.stringify({ out, status, left, stats: reader.stats });
    };
    const byteByByte = feed(() => true);
    assert.equal(feed(() => rnd() < 0.05), byteByByte, `random split, case ${t}`);
    assert.equal(feed(() => false), byteByByte, `whole chunk, case ${t}`);
  }
});
