import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import type { LineConnection } from "../../src/net/line_connection.ts";
import { bindError, type ConnectionInfo, startListener } from "../../src/net/listener.ts";
import { loadSecureContext } from "../../src/net/tls.ts";
import { makeTestCert } from "../support/certs.ts";
import { PeerReader, send } from "./_helpers.ts";

const cert = makeTestCert();

async function connect(port: number): Promise<{ socket: net.Socket; peer: PeerReader }> {
  const socket = net.connect({ host: "127.0.0.1", port });
  const peer = new PeerReader(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return { socket, peer };
}

/** A tiny session: greet, echo one line back as "250 <line>", then wait for QUIT. */
async function echoSession(conn: LineConnection): Promise<void> {
  await conn.write("220 test ESMTP\r\n");
  for (;;) {
    const line = await conn.readLine({ timeoutMs: 5000 });
    if (line === "QUIT") {
      await conn.write("221 bye\r\n");
      return;
    }
    await conn.write(`250 ${line}\r\n`);
  }
}

test("listener on port 0 reports the real port and runs sessions", async () => {
  const infos: ConnectionInfo[] = [];
  const listener = await startListener({
    host: "127.0.0.1",
    port: 0,
    onConnection: async (conn, info) => {
      infos.push(info);
      await echoSession(conn);
    },
  });
  try {
    const { port, host } = listener.address();
    assert.ok(port > 0);
    assert.equal(host, "127.0.0.1");
    const c = await connect(port);
    await c.peer.waitFor("220 test");
    await send(c.socket, "NOOP\r\n");
    await c.peer.waitFor("250 NOOP\r\n");
    assert.equal(listener.connectionCount(), 1);
    await send(c.socket, "QUIT\r\n");
    await c.peer.waitFor("221 bye");
    await c.peer.waitClosed(); // the listener closes the connection when the session returns
    assert.equal(infos.length, 1);
    assert.equal(infos[0]?.remoteAddress, "127.0.0.1");
    assert.equal(infos[0]?.localPort, port);
    assert.equal(infos[0]?.tls, false);
    for (let i = 0; i < 50 && listener.connectionCount() > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(listener.connectionCount(), 0);
  } finally {
    await listener.closeAll();
  }
});

test("implicit TLS listener hands over an encrypted connection", async () => {
  const listener = await startListener({
    host: "127.0.0.1",
    port: 0,
    tls: loadSecureContext(cert),
    handshakeTimeoutMs: 5000,
    onConnection: async (conn, info) => {
      assert.equal(info.tls, true);
      assert.equal(conn.isTls, true);
      await echoSession(conn);
    },
  });
  try {
    const t = tls.connect({
      host: "127.0.0.1",
      port: listener.address().port,
      servername: "localhost",
      ca: cert.caPem,
    });
    let text = "";
    const done = new Promise<void>((resolve, reject) => {
      t.on("data", (d: Uint8Array) => {
        text += new TextDecoder().decode(d);
        if (text.includes("220 test") && !text.includes("250")) t.write("EHLO tls.example\r\n");
        if (text.includes("250 EHLO tls.example")) t.write("QUIT\r\n");
        if (text.includes("221 bye")) resolve();
      });
      t.on("error", reject);
    });
    await done;
    t.destroy();
  } finally {
    await listener.closeAll();
  }
});

test("implicit TLS listener survives a plaintext client", async () => {
  const errors: unknown[] = [];
  let sessions = 0;
  const listener = await startListener({
    host: "127.0.0.1",
    port: 0,
    tls: loadSecureContext(cert),
    handshakeTimeoutMs: 2000,
    onConnection: () => {
      sessions++;
    },
    onError: (err) => errors.push(err),
  });
  try {
    const c = await connect(listener.address().port);
    await send(c.socket, "EHLO plaintext.example\r\n");
    await c.peer.waitClosed();
    assert.equal(sessions, 0);
    for (let i = 0; i < 50 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(errors.length, 1);
  } finally {
    await listener.closeAll();
  }
});

test("per-IP and total connection limits reject with a 421 and free slots on close", async () => {
  const rejected: string[] = [];
  const listener = await startListener({
    host: "127.0.0.1",
    port: 0,
    maxConnectionsPerIp: 2,
    onConnection: echoSession,
    onRejected: async (conn, reason) => {
      rejected.push(reason);
      await conn.write("421 4.7.0 Too many connections\r\n");
    },
  });
  const port = listener.address().port;
  try {
    const a = await connect(port);
    const b = await connect(port);
    await a.peer.waitFor("220");
    await b.peer.waitFor("220");
    const c = await connect(port);
    await c.peer.waitFor("421 4.7.0 Too many connections");
    await c.peer.waitClosed();
    assert.deepEqual(rejected, ["per-ip"]);
    assert.equal(listener.connectionCount(), 2);
    await send(a.socket, "QUIT\r\n");
    await a.peer.waitClosed();
    for (let i = 0; i < 50 && listener.connectionCount() > 1; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const d = await connect(port);
    await d.peer.waitFor("220 test");
    b.socket.destroy();
    d.socket.destroy();
  } finally {
    await listener.closeAll({ graceMs: 100 });
  }

  const total = await startListener({
    host: "127.0.0.1",
    port: 0,
    maxConnections: 1,
    onConnection: echoSession,
    onRejected: async (conn, reason) => {
      rejected.push(reason);
      await conn.write("421 4.7.0 Too many connections\r\n");
    },
  });
  try {
    const a = await connect(total.address().port);
    await a.peer.waitFor("220");
    const b = await connect(total.address().port);
    await b.peer.waitFor("421 4.7.0");
    await b.peer.waitClosed();
    assert.deepEqual(rejected, ["per-ip", "total"]);
    a.socket.destroy();
  } finally {
    await total.closeAll({ graceMs: 100 });
  }
});

test("closeAll ends live sessions; close stops accepting", async () => {
  const listener = await startListener({ host: "127.0.0.1", port: 0, onConnection: echoSession });
  const port = listener.address().port;
  const a = await connect(port);
  await a.peer.waitFor("220");
  await listener.close();
  const refused = net.connect({ host: "127.0.0.1", port });
  const outcome = await new Promise<string>((resolve) => {
    refused.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
    refused.once("connect", () => resolve("connected"));
  });
  refused.destroy();
  assert.notEqual(outcome, "connected");
  assert.equal(listener.connectionCount(), 1);
  await listener.closeAll({ graceMs: 200 });
  await a.peer.waitClosed();
  assert.equal(listener.connectionCount(), 0);
});

test("binding a busy port fails with a clear message", async () => {
  const first = await startListener({ host: "127.0.0.1", port: 0, onConnection: () => {} });
  try {
    await assert.rejects(
      startListener({ host: "127.0.0.1", port: first.address().port, onConnection: () => {} }),
      /already in use/,
    );
  } finally {
    await first.closeAll();
  }
});

test("binding a privileged port without permission explains CAP_NET_BIND_SERVICE", {
  skip: typeof process.getuid === "function" && process.getuid() === 0 ? "running as root" : false,
}, async () => {
  await assert.rejects(
    startListener({ host: "127.0.0.1", port: 25, onConnection: () => {} }),
    /CAP_NET_BIND_SERVICE/,
  );
});

test("bind errors are explained", () => {
  const eacces = Object.assign(new Error("listen EACCES: permission denied 0.0.0.0:25"), { code: "EACCES" });
  const e1 = bindError(eacces, "0.0.0.0", 25);
  assert.match(e1.message, /0\.0\.0\.0:25: permission denied/);
  assert.match(e1.message, /Ports below 1024 need root or CAP_NET_BIND_SERVICE/);
  assert.match(e1.message, /port >= 1024/);
  assert.equal(e1.cause, eacces);
  const inUse = Object.assign(new Error("listen EADDRINUSE"), { code: "EADDRINUSE" });
  assert.match(bindError(inUse, "127.0.0.1", 366).message, /127\.0\.0\.1:366: the address is already in use/);
});
