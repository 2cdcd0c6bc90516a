// Which node answers, and the cluster's nodes, in /status, the status page and /metrics (SQLite: the
// cluster is this one node). test/queue/pg_new_mail_test.ts covers clusterNodes on PostgreSQL.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { createApp } from "../../src/http/app.ts";
import type { StatusReport } from "../../src/http/status.ts";
import { Logger } from "../../src/log/logger.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";
import { seed, type Seeded, T0 } from "./_helpers.ts";

function appWithNode(s: Seeded, node?: string) {
  return createApp({
    store: new SqliteQueue(s.store, s.clock, node === undefined ? {} : { node }),
    state: s.state,
    logger: new Logger({ level: "info", sink: (line) => s.logLines.push(line) }),
    token: null,
    listenerIsLoopback: true,
    version: "9.9.9-test",
    clock: s.clock,
  });
}

describe("node and cluster (SQLite)", () => {
  test("/status names this node, its backend and queue file, and lists it as the whole cluster", async () => {
    const s = seed();
    const report = await (await appWithNode(s, "relay-1").request("/status")).json() as StatusReport;
    assert.equal(report.node.name, "relay-1");
    assert.equal(report.node.backend, "sqlite");
    assert.ok(report.node.location.startsWith(s.dataDir), report.node.location);
    assert.equal(report.cluster.nodes.length, 1);
    const [self] = report.cluster.nodes;
    assert.deepEqual(self, {
      name: "relay-1",
      hostname: hostname(),
      self: true,
      // The queue was opened at the clock's time (T0 in the seed).
      startedAt: new Date(T0).toISOString(),
      lastHeartbeatAt: null,
      heartbeatAgeSeconds: null,
    });
  });

  test("without a name the node is the OS hostname", async () => {
    const report = await (await appWithNode(seed()).request("/status")).json() as StatusReport;
    assert.equal(report.node.name, hostname());
    assert.deepEqual(report.cluster.nodes.map((n) => [n.name, n.self]), [[hostname(), true]]);
  });

  test("/metrics has the node info and the number of live nodes", async () => {
    const text = await (await appWithNode(seed(), 'odd"name').request("/metrics")).text();
    assert.match(text, /^# TYPE odmr_relay_node_info gauge$/m);
    assert.match(text, /^odmr_relay_node_info\{node="odd\\"name",backend="sqlite"\} 1$/m);
    assert.match(text, /^# TYPE odmr_relay_cluster_nodes gauge$/m);
    assert.match(text, /^odmr_relay_cluster_nodes 1$/m);
  });

  test("the status page shows the node's name and the cluster's nodes, escaped", async () => {
    const page = await (await appWithNode(seed(), "<relay-1>").request("/")).text();
    assert.match(page, /<span class="muted" id="node-name">&lt;relay-1&gt;<\/span>/);
    assert.match(page, /sqlite queue/);
    assert.match(page, /Cluster \(1 node\)/);
    assert.match(
      page,
      /<ul id="cluster">\s*<li><b>&lt;relay-1&gt;<\/b>\s*<span class="muted">\(this node\)<\/span>/,
    );
    assert.ok(!page.includes("<relay-1>"));
  });
});
