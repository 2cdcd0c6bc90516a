/**
 * How the content goes on the wire after 354 (src/client/body_writer.ts): dot-stuffed, canonical CRLF,
 * the final CRLF.CRLF, in 64 KB slices with the last written together with the terminator (bulk), or one
 * write per line and the dot alone (line by line); a failing body never gets its final dot.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { toAsyncIterator, writeBody, writeRecord, type WriteTarget } from "../../src/client/body_writer.ts";
import { BodyReadError } from "../../src/client/errors.ts";
import { memoryPipe } from "../../src/net/memory_connection.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A write target that keeps each write (as text) and the options it came with. */
function recorder(): WriteTarget & { writes: string[]; timeouts: (number | undefined)[] } {
  const writes: string[] = [];
  const timeouts: (number | undefined)[] = [];
  return {
    writes,
    timeouts,
    write(data, options) {
      writes.push(typeof data === "string" ? data : decoder.decode(data));
      timeouts.push(options?.timeoutMs);
      return Promise.resolve();
    },
  };
}

/** Streams `chunks` through writeBody into a recorder. */
async function written(chunks: (string | Uint8Array)[], lineByLine = false) {
  const target = recorder();
  const body = toAsyncIterator(chunks.map((c) => (typeof c === "string" ? encoder.encode(c) : c)));
  const first = await body.next();
  let terminatorAfter = -1;
  await writeBody(target, body, first, {
    timeoutMs: 1234,
    lineByLine,
    beforeTerminator: () => (terminatorAfter = target.writes.length),
  });
  return { ...target, text: target.writes.join(""), terminatorAfter };
}

describe("writeBody, bulk", () => {
  test("small content leaves in one write together with the terminator", async () => {
    const out = await written(["Subject: x\r\n\r\nHello.\r\n"]);
    assert.deepEqual(out.writes, ["Subject: x\r\n\r\nHello.\r\n.\r\n"]);
  });

  test("empty content: the terminator alone", async () => {
    assert.deepEqual((await written([])).writes, [".\r\n"]);
  });

  test("a line starting with a dot gets another, also when the dot starts a chunk", async () => {
    const out = await written([".a\r\n", "..b\r\nc.", "\r\n", ".", "\r\n"]);
    assert.equal(out.text, "..a\r\n...b\r\nc.\r\n..\r\n.\r\n");
  });

  test("an unterminated last line gets its CRLF before the dot", async () => {
    assert.equal((await written(["one\r\ntwo"])).text, "one\r\ntwo\r\n.\r\n");
  });

  test("a CRLF split across chunks stays one line end", async () => {
    assert.equal((await written(["one\r", "\n.two\r", "\n"])).text, "one\r\n..two\r\n.\r\n");
  });

  test("bare LF and bare CR become CRLF, so nothing can look like an early end of data", async () => {
    assert.equal((await written(["a\n.\nb\rc\r"])).text, "a\r\n..\r\nb\r\nc\r\n.\r\n");
  });

  test("large content goes in 64 KB slices; every write gets the data block timeout", async () => {
    const line = `${"x".repeat(98)}\r\n`;
    const content = line.repeat(2000); // 200 000 octets in one chunk
    const out = await written([content]);
    assert.equal(out.text, `${content}.\r\n`);
    assert.equal(out.writes.length, 4);
    for (const w of out.writes.slice(0, -1)) assert.equal(w.length, 64 * 1024);
    assert.ok(out.writes.at(-1)!.endsWith("\r\n.\r\n"));
    assert.deepEqual(out.timeouts, [1234, 1234, 1234, 1234]);
  });

  test("beforeTerminator runs once, after the content and before the write that holds the dot", async () => {
    const content = "y".repeat(70 * 1024);
    const out = await written([content]);
    assert.equal(out.writes.length, 2);
    assert.equal(out.terminatorAfter, 1);
  });

  test("a body that fails mid-way throws BodyReadError and never writes the final dot", async () => {
    const target = recorder();
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield encoder.encode("z".repeat(100 * 1024));
      yield encoder.encode("more\r\n");
      throw new Error("disk gone");
    }
    const body = failing();
    const first = await body.next();
    let terminator = false;
    await assert.rejects(
      writeBody(target, body, first, {
        timeoutMs: 1000,
        lineByLine: false,
        beforeTerminator: () => (terminator = true),
      }),
      (err: unknown) =>
        err instanceof BodyReadError && /disk gone/.test(err.message) && err.cause instanceof Error,
    );
    assert.equal(terminator, false);
    assert.ok(!target.writes.join("").includes(".\r\n"), "no final dot");
  });

  test("over a memory pipe the peer receives exactly the stuffed content and CRLF.CRLF", async () => {
    const [server, client] = memoryPipe();
    const body = toAsyncIterator([encoder.encode(".x\r\nend")]);
    await writeBody(client, body, await body.next(), { timeoutMs: 1000, lineByLine: false });
    const lines: string[] = [];
    for (let i = 0; i < 10 && lines.at(-1) !== "."; i++) {
      lines.push(await server.readLine({ timeoutMs: 1000 }));
    }
    assert.deepEqual(lines, ["..x", "end", "."]);
  });
});

describe("writeBody, line by line", () => {
  test("every line is its own write, and the final dot is alone in the last", async () => {
    const out = await written(["a\r\n.b\r", "\nc\r\n"], true);
    assert.deepEqual(out.writes, ["a\r\n", "..b\r\n", "c\r\n", ".\r\n"]);
  });

  test("lines split across chunks are written whole", async () => {
    const out = await written(["sp", "lit\r\nwh", "ole\r\n"], true);
    assert.deepEqual(out.writes, ["split\r\n", "whole\r\n", ".\r\n"]);
  });

  test("an unterminated last line is completed and written before the dot", async () => {
    const out = await written(["one\r\ntwo"], true);
    assert.deepEqual(out.writes, ["one\r\n", "two\r\n", ".\r\n"]);
  });

  test("empty content: the dot alone", async () => {
    assert.deepEqual((await written([], true)).writes, [".\r\n"]);
  });
});

describe("writeRecord", () => {
  test("line by line: resolves only after a later turn of the event loop", async () => {
    let turned = false;
    setImmediate(() => (turned = true));
    await writeRecord(recorder(), "x\r\n", 1000, true);
    assert.equal(turned, true);
  });

  test("otherwise: a plain awaited write with the timeout", async () => {
    const target = recorder();
    let turned = false;
    setImmediate(() => (turned = true));
    await writeRecord(target, "x\r\n", 777, false);
    assert.equal(turned, false);
    assert.deepEqual([target.writes, target.timeouts], [["x\r\n"], [777]]);
  });
});

describe("toAsyncIterator", () => {
  test("a synchronous iterable is read in order and its return() reaches the source", async () => {
    let closed = false;
    function* source(): Generator<Uint8Array> {
      try {
        yield encoder.encode("a");
        yield encoder.encode("b");
      } finally {
        closed = true;
      }
    }
    const it = toAsyncIterator(source());
    assert.equal(decoder.decode((await it.next()).value), "a");
    await it.return?.();
    assert.equal(closed, true);
  });

  test("an async iterable is used as it is", async () => {
    async function* source(): AsyncGenerator<Uint8Array> {
      yield encoder.encode("a");
      yield encoder.encode("b");
    }
    const it = toAsyncIterator(source());
    const seen: string[] = [];
    for (let r = await it.next(), i = 0; !r.done && i < 10; r = await it.next(), i++) {
      seen.push(decoder.decode(r.value));
    }
    assert.deepEqual(seen, ["a", "b"]);
  });

  test("an array of chunks ends after its last chunk", async () => {
    const it = toAsyncIterator([encoder.encode("only")]);
    assert.equal((await it.next()).done, false);
    assert.equal((await it.next()).done, true);
  });
});
