import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BareLineEndingError,
  ConnectionClosedError,
  ReadTimeoutError,
  TlsHandshakeError,
} from "../../src/net/errors.ts";
import { memoryPipe } from "../../src/net/memory_connection.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("memoryPipe", () => {
  it("carries lines both ways, in order, and counts bytes", async () => {
    const [server, client] = memoryPipe();
    await client.write("EHLO a.test\r\nMAIL FROM:<a@a.test>\r\n");
    assert.equal(await server.readLine(), "EHLO a.test");
    assert.equal(await server.readLine(), "MAIL FROM:<a@a.test>");
    assert.equal(server.writeNoWait("250 ok\r\n"), true);
    assert.equal(await client.readLine(), "250 ok");
    assert.equal(server.bytesIn, client.bytesOut);
    assert.equal(client.bytesIn, server.bytesOut);
  });

  it("delivers later, as a socket does: nothing is readable in the same tick as the write", async () => {
    const [server, client] = memoryPipe();
    void client.write("x");
    assert.equal(server.hasBufferedInput(), false);
    assert.equal(await server.waitForInput(1000), true);
    assert.equal(server.bufferedByteCount(), 1);
  });

  it("copies what it sends, so the writer may reuse its buffer", async () => {
    const [server, client] = memoryPipe();
    const buf = new TextEncoder().encode("abc\r\n");
    await client.write(buf);
    buf.fill(0x7a);
    assert.equal(await server.readLine(), "abc");
  });

  it("applies the line rules of the shared reader (bare LF, unread, chunks)", async () => {
    const [server, client] = memoryPipe();
    await client.write("DATA\r\nhello\r\n.\r\nQUIT\r\n");
    assert.equal(await server.readLine(), "DATA");
    const chunk = await server.readChunk();
    assert.equal(text(chunk), "hello\r\n.\r\nQUIT\r\n");
    server.unread(chunk.subarray(10));
    assert.equal(await server.readLine(), "QUIT");
    await client.write("bad\nline\r\n");
    await assert.rejects(server.readLine(), BareLineEndingError);
  });

  it("closing one end lets the other read what was sent, then end of input; writes then fail", async () => {
    const [server, client] = memoryPipe();
    await server.write("221 bye\r\n");
    await server.close();
    assert.equal(await client.readLine(), "221 bye");
    await assert.rejects(client.readLine(), ConnectionClosedError);
    await client.closed;
    assert.equal(client.isClosed, true);
    await assert.rejects(client.write("QUIT\r\n"), ConnectionClosedError);
    assert.equal(client.writeNoWait("x"), false);
  });

  it("destroy wakes a waiting reader on the other end", async () => {
    const [server, client] = memoryPipe();
    const pending = server.readLine({ timeoutMs: 5000 });
    client.destroy();
    await assert.rejects(pending, ConnectionClosedError);
  });

  it("read deadlines hold", async () => {
    const [server] = memoryPipe();
    await assert.rejects(server.readLine({ timeoutMs: 20 }), ReadTimeoutError);
    assert.equal(await server.waitForInput(20), false);
  });

  it("reports the addresses it was given and refuses TLS", async () => {
    const [server, client] = memoryPipe({ clientAddress: "127.0.0.9" });
    assert.equal(server.remoteAddress, "127.0.0.9");
    assert.equal(client.localAddress, "127.0.0.9");
    assert.equal(server.isTls, false);
    assert.equal(server.tlsInfo(), null);
    await assert.rejects(server.startTlsClient(), TlsHandshakeError);
  });
});
