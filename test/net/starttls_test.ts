import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as net from "node:net";
import * as tls from "node:tls";
import { ConnectionClosedError, LineConnection, TlsHandshakeError } from "../../src/net/line_connection.ts";
import { loadSecureContext } from "../../src/net/tls.ts";
import { makeTestCert } from "../support/certs.ts";
import { send, socketPair } from "./_helpers.ts";

const cert = makeTestCert();
const ctx = loadSecureContext(cert);

/** Upgrades a raw client socket with node:tls and returns the TLS socket once it is secure. */
function tlsClient(socket: net.Socket): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket, servername: "localhost", ca: cert.caPem });
    t.on("error", reject);
    t.once("secureConnect", () => resolve(t));
  });
}

/** Reads lines from a TLS socket until `needle` is seen. */
function tlsReadUntil(t: tls.TLSSocket, needle: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Uint8Array): void => {
      text += new TextDecoder().decode(chunk);
      if (text.includes(needle)) {
        t.off("data", onData);
        resolve(text);
      }
    };
    t.on("data", onData);
    t.once("close", () => reject(new Error(`closed before ${needle}; got ${text}`)));
  });
}

test("STARTTLS server upgrade with a node:tls client", async () => {
  const p = await socketPair();
  try {
    await p.server.write("220 mx.example ESMTP\r\n");
    await p.peer.waitFor("220 mx");
    await send(p.client, "EHLO client.example\r\n");
    assert.equal(await p.server.readLine(), "EHLO client.example");
    await p.server.write("250-mx.example\r\n250 STARTTLS\r\n");
    await p.peer.waitFor("250 STARTTLS");
    await send(p.client, "STARTTLS\r\n");
    assert.equal(await p.server.readLine(), "STARTTLS");
    const [result, t] = await Promise.all([
      p.server.startTlsServer(ctx, {
        readyReply: "220 2.0.0 Ready to start TLS\r\n",
        handshakeTimeoutMs: 5000,
      }),
      p.peer.waitFor("220 2.0.0 Ready").then(() => tlsClient(p.client)),
    ]);
    assert.equal(result.discardedBytes, 0);
    assert.equal(p.server.isTls, true);
    const info = p.server.tlsInfo();
    assert.ok(info);
    t.write("EHLO again.example\r\n");
    assert.equal(await p.server.readLine({ timeoutMs: 5000 }), "EHLO again.example");
    const replies = tlsReadUntil(t, "250 8BITMIME");
    await p.server.write("250-mx.example\r\n250 8BITMIME\r\n");
    await replies;
    // a peer that ends the TLS session is seen as closed, without us destroying anything
    t.end();
    await assert.rejects(p.server.readLine({ timeoutMs: 5000 }), ConnectionClosedError);
    await p.server.closed;
  } finally {
    await p.done();
  }
});

test("STARTTLS discards plaintext injected behind the command (CVE-2011-0411)", async () => {
  const p = await socketPair();
  try {
    await send(p.client, "STARTTLS\r\nEHLO evil\r\n");
    assert.equal(await p.server.readLine(), "STARTTLS");
    // give the injected line time to be buffered before the upgrade
    assert.equal(await p.server.waitForInput(1000), true);
    const [result, t] = await Promise.all([
      p.server.startTlsServer(ctx, { readyReply: "220 2.0.0 Ready to start TLS\r\n" }),
      p.peer.waitFor("220 2.0.0").then(() => tlsClient(p.client)),
    ]);
    assert.equal(result.discardedBytes, "EHLO evil\r\n".length);
    assert.equal(p.server.hasBufferedInput(), false);
    t.write("EHLO good\r\n");
    assert.equal(await p.server.readLine({ timeoutMs: 5000 }), "EHLO good");
    t.destroy();
  } finally {
    await p.done();
  }
});

test("STARTTLS driven by openssl s_client -starttls smtp", async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const session = new Promise<string[]>((resolve, reject) => {
    server.once("connection", (socket) => {
      const conn = new LineConnection(socket);
      const seen: string[] = [];
      (async () => {
        await conn.write("220 mx.example ESMTP test\r\n");
        for (;;) {
          const line = await conn.readLine({ timeoutMs: 10_000 });
          seen.push(line);
          const verb = line.split(" ")[0]?.toUpperCase();
          if (verb === "EHLO" && !conn.isTls) {
            await conn.write("250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
          } else if (verb === "STARTTLS") {
            await conn.startTlsServer(ctx, { readyReply: "220 2.0.0 Ready to start TLS\r\n" });
          } else if (verb === "EHLO") {
            await conn.write("250-mx.example\r\n250 AFTER-TLS-OK\r\n");
          } else if (verb === "QUIT") {
            await conn.write("221 2.0.0 Bye\r\n");
            await conn.close(200);
            return seen;
          } else {
            await conn.write("502 5.5.2 Unknown\r\n");
          }
        }
      })().then(resolve, (err) => {
        conn.destroy();
        reject(err);
      });
    });
  });
  const child = spawn("openssl", [
    "s_client",
    "-starttls",
    "smtp",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
    "-CAfile",
    cert.caFile,
    "-verify_return_error",
    "-crlf",
    "-nocommands", // otherwise a line starting with "Q" makes s_client quit instead of sending QUIT
  ], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  child.stderr.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const waitOut = async (needle: string): Promise<void> => {
    for (let i = 0; i < 500 && !out.includes(needle); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(out.includes(needle), `s_client output lacks ${needle}:\n${out}`);
  };
  try {
    await waitOut("Verify return code");
    child.stdin.write("EHLO after.example\n");
    await waitOut("250 AFTER-TLS-OK");
    child.stdin.write("QUIT\n");
    const seen = await session;
    assert.deepEqual(seen.slice(1), ["STARTTLS", "EHLO after.example", "QUIT"]);
    assert.match(seen[0] ?? "", /^EHLO /);
    assert.match(out, /Verify return code: 0 \(ok\)/);
    assert.match(out, /Cipher is /);
  } finally {
    child.stdin.end();
    if (child.exitCode === null) child.kill();
    await exited;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test("startTlsClient against startTlsServer, discarding server bytes after the 220", async () => {
  const p = await socketPair();
  const client = new LineConnection(p.client);
  try {
    await client.write("STARTTLS\r\n");
    assert.equal(await p.server.readLine(), "STARTTLS");
    const serverSide = p.server.startTlsServer(ctx, { readyReply: "220 2.0.0 Ready\r\n250 injected\r\n" });
    assert.equal(await client.readLine(), "220 2.0.0 Ready");
    await client.waitForInput(1000);
    const [s, c] = await Promise.all([
      serverSide,
      client.startTlsClient({ servername: "localhost", ca: cert.caPem }),
    ]);
    assert.equal(s.discardedBytes, 0);
    assert.equal(c.discardedBytes, "250 injected\r\n".length);
    assert.equal(client.isTls, true);
    assert.equal(client.tlsInfo()?.authorized, true);
    // both sides speak over TLS, and the role can reverse on the same connection objects
    await client.write("ATRN customer.example\r\n");
    assert.equal(await p.server.readLine({ timeoutMs: 5000 }), "ATRN customer.example");
    await p.server.write("250 OK now reversing the connection\r\n");
    assert.equal(await client.readLine({ timeoutMs: 5000 }), "250 OK now reversing the connection");
    await client.write("220 customer.example ESMTP\r\n");
    assert.equal(await p.server.readLine({ timeoutMs: 5000 }), "220 customer.example ESMTP");
    const proto = p.server.tlsInfo()?.protocol;
    if (proto !== null && proto !== undefined) assert.match(proto, /^TLSv1\.[23]$/);
  } finally {
    client.destroy();
    await p.done();
  }
});

test("startTlsClient rejects an untrusted certificate", async () => {
  const p = await socketPair();
  const client = new LineConnection(p.client);
  try {
    const serverSide = p.server.startTlsServer(ctx, {
      readyReply: "220 Ready\r\n",
      handshakeTimeoutMs: 3000,
    });
    serverSide.catch(() => {});
    assert.equal(await client.readLine(), "220 Ready");
    await assert.rejects(client.startTlsClient({ servername: "localhost" }), TlsHandshakeError);
    assert.equal(client.isClosed, true);
    await assert.rejects(serverSide);
  } finally {
    client.destroy();
    await p.done();
  }
});

test("a peer that never handshakes hits the handshake timeout", async () => {
  const p = await socketPair();
  try {
    await assert.rejects(
      p.server.startTlsServer(ctx, { readyReply: "220 Ready\r\n", handshakeTimeoutMs: 100 }),
      TlsHandshakeError,
    );
    assert.equal(p.server.isClosed, true);
    await p.peer.waitClosed();
  } finally {
    await p.done();
  }
});
