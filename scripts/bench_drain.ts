/**
 * Drain benchmark of the SMTP client alone (no ODMR front): fills a temporary queue with N 1 KB
 * messages for one domain, starts Postfix's `smtp-sink` on a free loopback port, connects, and hands the
 * socket to `deliverQueued` with pipelining forced on, then (after refilling) forced off. Prints msgs/s
 * for both. Loopback only; every loop is bounded by N.
 *
 *   bun run scripts/bench_drain.ts [N=2000] [sizeBytes=1024]
 *   deno run -A scripts/bench_drain.ts [N] [sizeBytes]
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { deliverQueued, type DeliveryConfig } from "../src/client/deliver_session.ts";
import { LineConnection } from "../src/net/line_connection.ts";
import { databasePath, openDatabase } from "../src/queue/db.ts";
import { QueueStore } from "../src/queue/store.ts";
import { SqliteQueue } from "../src/queue/sqlite_queue.ts";

const SMTP_SINK = "/usr/sbin/smtp-sink";
const DOMAIN = "bench.test";
const MAX_MESSAGES = 1_000_000;

const count = Math.min(Number(process.argv[2] ?? 2000) || 2000, MAX_MESSAGES);
const size = Math.max(64, Number(process.argv[3] ?? 1024) || 1024);

if (!existsSync(SMTP_SINK)) {
  console.error(`${SMTP_SINK} is missing (apt-get install postfix)`);
  process.exit(2);
}

const config: DeliveryConfig = {
  atrnGreetingTimeout: 30_000,
  atrnCommandTimeout: 60_000,
  atrnDataInitTimeout: 60_000,
  atrnDataBlockTimeout: 60_000,
  atrnDataTermTimeout: 60_000,
  atrnSessionTimeout: 3_600_000,
  atrnPipelining: "auto",
};

/** A ~`size`-byte message of CRLF lines. */
function body(i: number): Uint8Array {
  const head = `From: bench@origin.test\r\nTo: u${i}@${DOMAIN}\r\nSubject: bench ${i}\r\n\r\n`;
  const line = "x".repeat(70) + "\r\n";
  let text = head;
  while (text.length + line.length <= size) text += line;
  return new TextEncoder().encode(text);
}

function fill(store: QueueStore): void {
  for (let i = 0; i < count; i++) {
    const bytes = body(i);
    store.enqueue({
      mailFrom: "bench@origin.test",
      clientIp: "127.0.0.1",
      clientHelo: "bench",
      tls: false,
      bodyType: null,
      smtputf8: false,
      envid: null,
      ret: null,
      recipients: [{ address: `u${i}@${DOMAIN}`, domain: DOMAIN, notify: null, orcpt: null }],
    }, { size: bytes.length, eightBit: false, chunks: () => [bytes] });
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "odmr-bench-"));
  const port = await freePort();
  const args = [`127.0.0.1:${port}`, "1000"];
  if (process.getuid?.() === 0) args.unshift("-u", "nobody");
  const sink = spawn(SMTP_SINK, args, { stdio: "ignore" });
  const sinkExited = new Promise<void>((resolve) => sink.once("exit", () => resolve()));
  try {
    for (let i = 0;; i++) {
      try {
        (await connect(port)).destroy();
        break;
      } catch (err) {
        if (i >= 100) throw new Error("smtp-sink did not start", { cause: err });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const store = new QueueStore(openDatabase(databasePath(dir)));
    console.log(`drain benchmark: ${count} messages of ~${size} bytes -> smtp-sink 127.0.0.1:${port}`);
    for (const mode of ["always", "never"] as const) {
      const t0 = performance.now();
      fill(store);
      const fillSecs = (performance.now() - t0) / 1000;
      const conn = new LineConnection(await connect(port));
      const start = performance.now();
      const result = await deliverQueued({
        conn,
        store: new SqliteQueue(store),
        domains: [DOMAIN],
        hostname: "bench.relay.test",
        config: { ...config, atrnPipelining: mode },
      });
      const secs = (performance.now() - start) / 1000;
      const left = store.totals().queuedRecipients;
      console.log(
        `pipelining ${mode === "always" ? "on " : "off"}: ${result.delivered}/${count} delivered in ` +
          `${secs.toFixed(2)} s = ${(result.delivered / secs).toFixed(0)} msgs/s ` +
          `(outcome ${result.outcome}, ${left} left queued; fill took ${fillSecs.toFixed(2)} s)`,
      );
    }
    store.database.close();
  } finally {
    sink.kill("SIGTERM");
    await sinkExited;
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
