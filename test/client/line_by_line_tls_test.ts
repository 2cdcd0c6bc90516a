/**
 * Over TLS to a line-relaying customer (fetchmail with `ssl`, PROTOCOL.md Appendix A) every command,
 * content line and the final dot must travel in its own TLS record: fetchmail reads one line per
 * select() wake-up and never looks at SSL_pending(), so a second line in the last record before we wait
 * for a reply would never be read. A TCP proxy between the client and a TLS fake customer counts the
 * application-data records (TLS 1.2, so no encrypted handshake or ticket records are mixed in).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import { deliverQueued } from "../../src/client/deliver_session.ts";
import { LineSplitter } from "../../src/net/line_buffer.ts";
import { LineConnection } from "../../src/net/line_connection.ts";
import { makeTestCert } from "../support/certs.ts";
import { sleep } from "../support/fake_customer.ts";
import { customerStore, DOMAIN, enqueue, testConfig } from "./_helpers.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

const TLS_APPLICATION_DATA = 23;

interface Customer {
  port: number;
  /** Lines received (commands, content lines, final dots), CRLF stripped. */
  lines: string[];
  close(): Promise<void>;
}

/**
 * A TLS SMTP server. `lineRelay`: multi-line replies are written a line at a time with a pause (what
 * fetchmail's relay looks like); otherwise each reply is one write.
 */
async function startTlsCustomer(lineRelay: boolean): Promise<Customer> {
  const cert = makeTestCert();
  const lines: string[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ cert: cert.certPem, key: cert.keyPem, maxVersion: "TLSv1.2" }, (s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.setNoDelay(true);
    const reply = async (...reply: string[]) => {
      if (!lineRelay) return void s.write(reply.map((l) => `${l}\r\n`).join(""));
      for (const l of reply) {
        s.write(`${l}\r\n`);
        await sleep(15);
      }
    };
    let inData = false;
    let buf = "";
    s.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      for (let i = buf.indexOf("\r\n"); i !== -1; i = buf.indexOf("\r\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        lines.push(line);
        if (inData) {
          if (line === ".") {
            inData = false;
            void reply("250 2.0.0 Ok: queued");
          }
        } else if (/^EHLO/i.test(line)) {
          void reply("250-customer.test", "250-PIPELINING", "250-8BITMIME", "250 SIZE 10000000");
        } else if (/^DATA/i.test(line)) {
          inData = true;
          void reply("354 End data with <CR><LF>.<CR><LF>");
        } else if (/^QUIT/i.test(line)) {
          s.end("221 2.0.0 Bye\r\n");
        } else {
          void reply("250 2.0.0 Ok");
        }
      }
    });
    void reply("220-customer.test ESMTP", "220 ready");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    lines,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP proxy to `port` counting the client-to-server TLS application-data records. */
async function startRecordCounter(
  port: number,
): Promise<{ port: number; records: () => number; close(): Promise<void> }> {
  let records = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(port, "127.0.0.1");
    sockets.add(down).add(up);
    down.on("error", () => up.destroy());
    up.on("error", () => down.destroy());
    up.pipe(down);
    let pending = Buffer.alloc(0);
    down.on("data", (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        if (pending[0] === TLS_APPLICATION_DATA) records++;
        pending = pending.subarray(5 + pending.readUInt16BE(3));
      }
      up.write(d);
    });
    down.on("end", () => up.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    records: () => records,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function drainOverTls(lineRelay: boolean, pipelining: "auto" | "always" | "never") {
  const cert = makeTestCert();
  const customer = await startTlsCustomer(lineRelay);
  const proxy = await startRecordCounter(customer.port);
  try {
    const store = customerStore();
    const body = "Subject: t\r\n\r\n" + Array.from({ length: 40 }, (_, i) => `${i % 3 ? "" : "."}line ${i}`)
      .join("\r\n") +
      "\r\n";
    for (let i = 0; i < 3; i++) enqueue(store, [`u${i}@${DOMAIN}`, `v${i}@${DOMAIN}`], body);
    const socket = tls.connect({
      host: "127.0.0.1",
      port: proxy.port,
      ca: cert.caPem,
      servername: "localhost",
    });
    socket.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", () => resolve());
      socket.once("error", reject);
    });
    const conn = new LineConnection(socket, { closeGraceMs: 200 });
    const result = await deliverQueued({
      conn,
      store: new SqliteQueue(store),
      domains: [DOMAIN],
      hostname: "relay.test",
      config: testConfig({ atrnPipelining: pipelining }),
    });
    await conn.closed;
    for (let i = 0; i < 50 && proxy.records() < customer.lines.length; i++) await sleep(10);
    return { result, lines: customer.lines.length, records: proxy.records(), store, text: customer.lines };
  } finally {
    await proxy.close();
    await customer.close();
  }
}

describe("one line per TLS record to a line-relaying customer", () => {
  for (const pipelining of ["auto", "always", "never"] as const) {
    test(`line relay over TLS (pipelining ${pipelining}): records == lines, everything delivered`, async () => {
      const { result, lines, records, store, text } = await drainOverTls(true, pipelining);
      assert.equal(result.outcome, "completed", result.detail ?? "");
      assert.equal(result.delivered, 6);
      assert.equal(result.pipelining, pipelining === "always");
      assert.equal(store.totals().messages, 0);
      // EHLO + 3 x (MAIL, 2 RCPT, DATA, 42 content lines, dot) + QUIT
      assert.equal(lines, 1 + 3 * (4 + 42 + 1) + 1);
      assert.equal(records, lines, "each line must be its own TLS record");
      assert.ok(text.includes("..line 0"), "dot-stuffing kept");
    });
  }

  test("a prompt customer over TLS keeps the fast path (content in few records)", async () => {
    const { result, lines, records } = await drainOverTls(false, "auto");
    assert.equal(result.delivered, 6);
    assert.equal(result.pipelining, true);
    assert.ok(records < lines / 4, `${records} records for ${lines} lines`);
  });
});

describe("LineSplitter", () => {
  test("splits at LF, carries partial lines over calls", () => {
    const enc = new TextEncoder();
    const dec = (a: Uint8Array[]) => a.map((x) => new TextDecoder().decode(x));
    const s = new LineSplitter();
    assert.deepEqual(dec(s.push(enc.encode("a\r\nb"))), ["a\r\n"]);
    assert.deepEqual(dec(s.push(enc.encode("c\r"))), []);
    assert.deepEqual(dec(s.push(enc.encode("\nd\r\ne\r\n"))), ["bc\r\n", "d\r\n", "e\r\n"]);
    assert.equal(s.rest(), null);
    s.push(enc.encode("tail"));
    assert.deepEqual(dec([s.rest()!]), ["tail"]);
  });
});
