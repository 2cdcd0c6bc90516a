/**
 * Push delivery across nodes: two real relays on one PostgreSQL queue. The customer's `pull --watch`
 * holds its session open on node B; mail accepted by node A's intake is pushed on that session (the
 * enqueue's NOTIFY wakes B's watcher), and B's /status names both nodes.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/load.ts";
import { pull } from "../../src/customer/pull.ts";
import type { StatusReport } from "../../src/http/status.ts";
import { Logger } from "../../src/log/logger.ts";
import { type Relay, startRelay } from "../../src/relay.ts";
import { startFakeMx } from "../support/fake_mx.ts";
import { postgresSkipReason, startPostgres, type TestPostgres } from "../support/postgres.ts";
import { testSecrets } from "../support/store.ts";
import { tempDir } from "../support/temp.ts";
import { TranscriptPeer } from "../support/transcript.ts";
import { servicePort } from "../support/relay.ts";
import { waitFor } from "../server/odmr_helpers.ts";
import { pollOptions } from "./_helpers.ts";

/** A relay node on the shared queue, every listener on a free loopback port. */
async function startNode(database: string, nodeName: string, logs: string[]): Promise<Relay> {
  const { config } = loadConfig({
    flags: {
      dataDir: tempDir("odmr-cluster-node-"),
      database,
      nodeName,
      hostname: "mx.relay.test",
      smtpListen: "127.0.0.1:0",
      odmrListen: "127.0.0.1:0",
      odmrsListen: "off",
      httpListen: "127.0.0.1:0",
      smtpMinFreeSpace: "0",
      shutdownGrace: "5s",
      smarthost: "127.0.0.1:1",
      atrnMaxPerMinute: "1000",
    },
    env: {},
  });
  Object.assign(config, { atrnWatchKeepalive: 60_000, atrnWatchMaxDuration: 60_000 });
  const logger = new Logger({ level: "info", format: "logfmt", sink: (line) => logs.push(line) });
  return await startRelay(config, logger);
}

/** Sends one message to `rcpt` through an intake. */
async function send(port: number, rcpt: string, subject: string): Promise<void> {
  const peer = await TranscriptPeer.connect(port);
  try {
    await peer.expect("220 *");
    await peer.sendLine("EHLO sender.test");
    await peer.readReply();
    await peer.sendLine("MAIL FROM:<s@remote.test>");
    await peer.expect("250 *");
    await peer.sendLine(`RCPT TO:<${rcpt}>`);
    await peer.expect("250 *");
    await peer.sendLine("DATA");
    await peer.expect("354 *");
    await peer.send(`Subject: ${subject}\r\n\r\nbody\r\n.\r\n`);
    await peer.expect("250 *");
    await peer.sendLine("QUIT");
  } finally {
    peer.close();
  }
}

describe("push delivery across relay nodes (PostgreSQL)", { skip: postgresSkipReason() }, () => {
  let cluster: TestPostgres | undefined;
  before(async () => {
    cluster = await startPostgres();
  });
  after(async () => {
    await cluster?.stop();
  });

  it("mail accepted on node A goes out on the session watching on node B", async () => {
    const url = await cluster!.createDatabase("watch_cluster");
    const logs: string[] = [];
    const local = await startFakeMx({ name: "local.test" });
    const a = await startNode(url, "node-a", logs);
    let b: Relay | undefined;
    try {
      b = await startNode(url, "node-b", logs);
      await a.queue.addAccount("alice", testSecrets("alice-secret"));
      await a.queue.addDomain("example.test", "alice");
      const session = pull({
        host: "127.0.0.1",
        port: servicePort(b, "odmr"),
        ...pollOptions(local.port, { watch: true }),
      });
      await waitFor(() => b!.watching().length === 1, "the session to watch on B", 10_000);
      assert.equal(a.watching().length, 0);
      for (let i = 0; i < 2; i++) {
        await send(servicePort(a, "smtp"), `u${i}@example.test`, `cross-node ${i}`);
        // Well under the keepalive (60 s): only the NOTIFY can have woken B this fast.
        await waitFor(() => local.messages.length === i + 1, `message ${i} pushed by B`, 10_000);
      }
      assert.match(local.messages[1]!.data, /Subject: cross-node 1/);

      const status = await (await fetch(`http://127.0.0.1:${b.http!.port}/status`)).json() as StatusReport;
      assert.match(status.node.name, /^node-b#/);
      assert.equal(status.node.backend, "postgres");
      assert.ok(!status.node.location.includes(cluster!.password), "no password in /status");
      const names = status.cluster.nodes.map((n) => n.name).sort();
      assert.equal(names.length, 2, JSON.stringify(status.cluster));
      assert.match(names[0]!, /^node-a#/);
      assert.deepEqual(status.cluster.nodes.filter((n) => n.self).map((n) => n.name), [status.node.name]);
      assert.equal(status.watching.length, 1, "B's watcher is B's");
      const metrics = await (await fetch(`http://127.0.0.1:${b.http!.port}/metrics`)).text();
      assert.match(metrics, /^odmr_relay_cluster_nodes 2$/m);
      assert.match(metrics, /^odmr_relay_node_info\{node="node-b#[0-9a-f]+",backend="postgres"\} 1$/m);

      await b.stop();
      const result = await session;
      assert.equal(result.outcome, "turned", result.message);
      assert.equal(result.messages, 2);
    } finally {
      await b?.stop();
      await a.stop();
      await local.close();
    }
  });
});
