import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BareLineEndingError,
  ConnectionClosedError,
  LineFloodError,
  LineTooLongError,
  ReadTimeoutError,
  WriteTimeoutError,
} from "../../src/net/line_connection.ts";
import { send, sleep, socketPair } from "./_helpers.ts";

test("readLine reassembles lines across arbitrary chunk splits", async () => {
  const p = await socketPair();
  try {
    const wire = "EHLO example.org\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n\r\nNOOP\r\n";
    // split at every boundary pattern: 1-byte, 2-byte, and between CR and LF
    for (const size of [1, 2, 3, 7, 17]) {
      for (let i = 0; i < wire.length; i += size) {
        await send(p.client, wire.slice(i, i + size));
        if (size < 3) await sleep(0);
      }
      assert.equal(await p.server.readLine(), "EHLO example.org");
      assert.equal(await p.server.readLine(), "MAIL FROM:<a@b.example>");
      assert.equal(await p.server.readLine(), "RCPT TO:<c@d.example>");
      assert.equal(await p.server.readLine(), "");
      assert.equal(await p.server.readLine(), "NOOP");
      assert.equal(p.server.hasBufferedInput(), false);
    }
  } finally {
    await p.done();
  }
});

test("readLine decodes UTF-8 and readLineBytes returns raw octets", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\n\xff\r\n");
    assert.equal(await p.server.readLine(), "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8");
    const raw = await p.server.readLineBytes();
    assert.deepEqual([...raw], [0xc3, 0xbf]);
  } finally {
    await p.done();
  }
});

test("bare LF and bare CR raise BareLineEndingError, then reading can continue", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "EHLO x\nNOOP\r\n");
    await assert.rejects(
      p.server.readLine(),
      (e) => e instanceof BareLineEndingError && e.character === "LF",
    );
    assert.equal(await p.server.readLine(), "NOOP");

    await send(p.client, "MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n");
    await assert.rejects(
      p.server.readLine(),
      (e) => e instanceof BareLineEndingError && e.character === "CR",
    );
    assert.equal(await p.server.readLine(), "RCPT TO:<c@d>");

    // a bare LF at the very start, then a CR split from its LF across writes is fine
    await send(p.client, "\n");
    await assert.rejects(p.server.readLine(), BareLineEndingError);
    await send(p.client, "QUIT\r");
    await sleep(20);
    await send(p.client, "\n");
    assert.equal(await p.server.readLine(), "QUIT");
  } finally {
    await p.done();
  }
});

test("a too-long line is discarded whole and the next line is read", async () => {
  const p = await socketPair();
  try {
    await send(
      p.client,
      "a".repeat(510) + "\r\n" + "b".repeat(511) + "\r\n" + "c".repeat(5000) + "\r\nNOOP\r\n",
    );
    assert.equal(await p.server.readLine({ maxLength: 512 }), "a".repeat(510));
    await assert.rejects(
      p.server.readLine({ maxLength: 512 }),
      (e) => e instanceof LineTooLongError && e.length === 513 && e.maxLength === 512,
    );
    await assert.rejects(
      p.server.readLine({ maxLength: 512 }),
      (e) => e instanceof LineTooLongError && e.length === 5002,
    );
    assert.equal(await p.server.readLine({ maxLength: 512 }), "NOOP");
    // the same, arriving in pieces
    for (let i = 0; i < 4; i++) await send(p.client, "x".repeat(300));
    await send(p.client, "\r\nRSET\r\n");
    await assert.rejects(p.server.readLine(), LineTooLongError);
    assert.equal(await p.server.readLine(), "RSET");
  } finally {
    await p.done();
  }
});

test("no CRLF within the flood limit raises LineFloodError without buffering the flood", async () => {
  const p = await socketPair({ floodLimit: 64 * 1024 });
  try {
    const mib = "z".repeat(1024 * 1024);
    p.client.write(mib);
    await assert.rejects(p.server.readLine(), (e) => e instanceof LineFloodError && e.limit === 64 * 1024);
    assert.ok(p.server.bufferedByteCount() < 1024 * 1024, "the flood must not be buffered whole");
  } finally {
    await p.done();
  }
});

test("reads time out with ReadTimeoutError and the connection stays usable", async () => {
  const p = await socketPair();
  try {
    await assert.rejects(p.server.readLine({ timeoutMs: 50 }), ReadTimeoutError);
    await send(p.client, "HELO par");
    await assert.rejects(p.server.readLine({ timeoutMs: 50 }), ReadTimeoutError);
    await send(p.client, "tial\r\n");
    assert.equal(await p.server.readLine({ timeoutMs: 1000 }), "HELO partial");
    await assert.rejects(p.server.readChunk({ timeoutMs: 50 }), ReadTimeoutError);
  } finally {
    await p.done();
  }
});

test("readChunk returns buffered bytes and unread puts leftovers back in front", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    await sleep(20);
    let data = new Uint8Array(0);
    const want = "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n".length;
    while (data.length < want) {
      const chunk = await p.server.readChunk({ timeoutMs: 1000 });
      const next = new Uint8Array(data.length + chunk.length);
      next.set(data);
      next.set(chunk, data.length);
      data = next;
    }
    const text = new TextDecoder().decode(data);
    const eod = text.indexOf("\r\n.\r\n") + 5;
    p.server.unread(data.subarray(eod));
    assert.equal(p.server.bufferedByteCount(), 6);
    assert.equal(await p.server.readLine(), "QUIT");

    await send(p.client, "tail\r\n");
    await p.server.waitForInput(1000);
    p.server.unread(new TextEncoder().encode("head "));
    assert.equal(await p.server.readLine(), "head tail");

    await send(p.client, "0123456789");
    assert.equal(await p.server.waitForInput(1000), true);
    const first = await p.server.readChunk({ maxBytes: 4 });
    assert.equal(new TextDecoder().decode(first), "0123");
    const rest = await p.server.readChunk();
    assert.equal(new TextDecoder().decode(rest), "456789");
  } finally {
    await p.done();
  }
});

test("readChunk results belong to the caller: later input never overwrites them", async () => {
  const p = await socketPair();
  try {
    const got: Uint8Array[] = [];
    const copies: string[] = [];
    let total = 0;
    for (let round = 0; round < 20; round++) {
      const piece = String.fromCharCode(65 + round).repeat(5000 + round);
      await send(p.client, piece);
      total += piece.length;
      let received = got.reduce((n, c) => n + c.length, 0);
      while (received < total) {
        const chunk = await p.server.readChunk({ timeoutMs: 1000 });
        got.push(chunk);
        copies.push(new TextDecoder().decode(chunk));
        received += chunk.length;
      }
    }
    // Every chunk handed out earlier still holds what it held when it was returned.
    assert.deepEqual(got.map((c) => new TextDecoder().decode(c)), copies);
    assert.equal(p.server.bytesIn, total);
  } finally {
    await p.done();
  }
});

test("readLine and readChunk interleave in order (line buffer first, then queued input)", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "DATA\r\nfirst ");
    assert.equal(await p.server.readLine(), "DATA");
    await send(p.client, "second ");
    await sleep(20);
    await send(p.client, "third\r\nNOOP\r\n");
    await sleep(20);
    let data = "";
    while (!data.includes("\r\n")) {
      data += new TextDecoder().decode(await p.server.readChunk({ timeoutMs: 1000, maxBytes: 5 }));
    }
    const cut = data.indexOf("\r\n") + 2;
    p.server.unread(new TextEncoder().encode(data.slice(cut)));
    assert.equal(data.slice(0, cut), "first second third\r\n");
    assert.equal(await p.server.readLine(), "NOOP");
    assert.equal(p.server.hasBufferedInput(), false);
    assert.equal(p.server.bufferedByteCount(), 0);
  } finally {
    await p.done();
  }
});

test("waitForInput reports early talkers and times out quietly", async () => {
  const p = await socketPair();
  try {
    assert.equal(await p.server.waitForInput(50), false);
    assert.equal(p.server.hasBufferedInput(), false);
    await send(p.client, "EHLO early\r\n");
    assert.equal(await p.server.waitForInput(1000), true);
    assert.equal(p.server.hasBufferedInput(), true);
    assert.equal(p.server.bufferedByteCount(), 12);
  } finally {
    await p.done();
  }
});

test("peer close gives ConnectionClosedError and resolves closed", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "QUIT\r\npartial");
    p.client.end();
    assert.equal(await p.server.readLine(), "QUIT");
    await assert.rejects(p.server.readLine(), ConnectionClosedError);
    // the unterminated tail is still there for a chunk reader, then the end is reported
    assert.equal(new TextDecoder().decode(await p.server.readChunk()), "partial");
    await assert.rejects(p.server.readChunk(), ConnectionClosedError);
    await p.server.closed;
    assert.equal(p.server.isClosed, true);
    await assert.rejects(p.server.write("221 bye\r\n"), ConnectionClosedError);
  } finally {
    await p.done();
  }
});

test("write, writeNoWait and counters; close() ends the connection", async () => {
  const p = await socketPair();
  try {
    await p.server.write("220 mx.example ESMTP\r\n");
    p.server.writeNoWait("250-first\r\n");
    p.server.writeNoWait(new TextEncoder().encode("250 second\r\n"));
    await p.peer.waitFor("250 second\r\n");
    assert.equal(p.server.bytesOut, 22 + 11 + 12);
    await send(p.client, "NOOP\r\n");
    assert.equal(await p.server.readLine(), "NOOP");
    assert.equal(p.server.bytesIn, 6);
    assert.equal(p.server.remoteAddress, "127.0.0.1");
    assert.ok(p.server.remotePort > 0 && p.server.localPort > 0);
    assert.equal(p.server.isTls, false);
    assert.equal(p.server.tlsInfo(), null);
    await p.server.close(500);
    await p.peer.waitClosed();
  } finally {
    await p.done();
  }
});

test("large writes respect backpressure and a stuck peer hits the write timeout", async () => {
  const p = await socketPair();
  try {
    p.client.pause();
    const block = new Uint8Array(1024 * 1024).fill(0x41);
    let error: unknown;
    for (let i = 0; i < 256 && error === undefined; i++) {
      try {
        await p.server.write(block, { timeoutMs: 200 });
      } catch (err) {
        error = err;
      }
    }
    assert.ok(error instanceof WriteTimeoutError, `expected WriteTimeoutError, got ${error}`);
    await p.server.closed;
  } finally {
    await p.done();
  }
});

test("role reversal: after ATRN the same connection reads the customer's 220", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "ATRN customer.example\r\n");
    assert.equal(await p.server.readLine(), "ATRN customer.example");
    await p.server.write("250 OK now reversing the connection\r\n");
    await p.peer.waitFor("reversing");
    await send(p.client, "220 hi\r\n");
    assert.equal(await p.server.readLine(), "220 hi");

    // the customer's greeting pipelined behind ATRN is visible and read by the same buffer
    await send(p.client, "ATRN b.example\r\n220-already\r\n220 buffered\r\n");
    assert.equal(await p.server.readLine(), "ATRN b.example");
    await sleep(10);
    assert.equal(p.server.hasBufferedInput(), true);
    assert.equal(await p.server.readLine(), "220-already");
    assert.equal(await p.server.readLine(), "220 buffered");
  } finally {
    await p.done();
  }
});

test("concurrent reads are refused", async () => {
  const p = await socketPair();
  try {
    const first = p.server.readLine({ timeoutMs: 200 });
    await assert.rejects(p.server.readLine(), /Concurrent reads/);
    await assert.rejects(first, ReadTimeoutError);
  } finally {
    await p.done();
  }
});
