/**
 * Intake limits and failure paths: timeouts, connection limits, low disk, storage errors and
 * graceful shutdown. Each test starts its own relay with tiny limits (config overrides applied
 * after loadConfig, below the production minimums). Real sockets, real SQLite.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it, test } from "node:test";
import { databasePath, openDatabase } from "../../src/queue/db.ts";
import { startTestRelay } from "../support/relay.ts";
import { playTranscript, runTranscript, TranscriptPeer } from "../support/transcript.ts";
import { messageCount, OPEN, query } from "./intake_helpers.ts";

/** Opens a greeted, EHLO'd session. */
async function session(port: number, options: { localAddress?: string } = {}): Promise<TranscriptPeer> {
  const peer = await TranscriptPeer.connect(port, options);
  await peer.expect("220 *");
  await peer.sendLine("EHLO client.test");
  await peer.readReply();
  return peer;
}

/** Starts a transaction and leaves the peer inside DATA after the 354. */
async function intoData(peer: TranscriptPeer, rcpt = "user@example.test"): Promise<void> {
  await peer.sendLine("MAIL FROM:<a@remote.test>");
  await peer.expect("250 *");
  await peer.sendLine(`RCPT TO:<${rcpt}>`);
  await peer.expect("250 *");
  await peer.sendLine("DATA");
  await peer.expect("354 *");
}

function countMessagesIn(dataDir: string): number {
  const db = openDatabase(databasePath(dataDir));
  try {
    return (db.raw.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe("intake: limits and failures", () => {
  it("idle timeout: 421 4.4.2 and close", async () => {
    const relay = await startTestRelay({ odmr: false, config: { smtpIdleTimeout: 300 } });
    try {
      await runTranscript(
        relay.smtpPort,
        `${OPEN}
        < 421 4.4.2 mx.relay.test Error: timeout exceeded
        <close
      `,
      );
    } finally {
      await relay.stop();
    }
  });

  it("session time cap: 421 4.4.2 even for a busy client", async () => {
    const relay = await startTestRelay({ odmr: false, config: { smtpSessionTimeout: 400 } });
    try {
      const peer = await session(relay.smtpPort);
      // Bounded: at most 100 NOOPs, 20 ms apart; the cap must end it long before.
      let got421 = false;
      for (let i = 0; i < 100 && !got421; i++) {
        await new Promise((r) => setTimeout(r, 20));
        if (!peer.closed) await peer.sendLine("NOOP").catch(() => {});
        const line = await peer.readLine();
        if (line === null) break;
        got421 = line.startsWith("421 4.4.2");
      }
      assert.ok(got421, peer.log.join("\n"));
      await peer.expectClose();
      peer.close();
    } finally {
      await relay.stop();
    }
  });

  it("DATA timeout: 421, nothing queued", async () => {
    const relay = await startTestRelay({ odmr: false, config: { smtpDataTimeout: 300 } });
    try {
      const peer = await session(relay.smtpPort);
      await intoData(peer);
      await peer.send("Subject: stalled\r\n\r\nhalf a body");
      await peer.expect("421 4.4.2 *");
      await peer.expectClose();
      peer.close();
      assert.equal(messageCount(relay), 0);
    } finally {
      await relay.stop();
    }
  });

  it("per-IP connection limit: the next connection from that IP gets 421 4.7.0; another IP still gets in", async () => {
    const relay = await startTestRelay({ odmr: false, config: { smtpMaxConnectionsPerIp: 2 } });
    const peers: TranscriptPeer[] = [];
    try {
      peers.push(await session(relay.smtpPort), await session(relay.smtpPort));
      await runTranscript(
        relay.smtpPort,
        `
        < 421 4.7.0 mx.relay.test Error: too many connections
        <close
      `,
      );
      await runTranscript(
        relay.smtpPort,
        `
        < 220 *
        > QUIT
        < 221 *
      `,
        { localAddress: "127.0.0.2" },
      );
      // The existing sessions were not disturbed.
      await peers[0]!.sendLine("NOOP");
      await peers[0]!.expect("250 *");
    } finally {
      for (const p of peers) p.close();
      await relay.stop();
    }
  });

  it("total connection limit: 421 4.7.0 at connect", async () => {
    const relay = await startTestRelay({
      odmr: false,
      config: { smtpMaxConnections: 2, smtpMaxConnectionsPerIp: 10 },
    });
    const peers: TranscriptPeer[] = [];
    try {
      peers.push(await session(relay.smtpPort), await session(relay.smtpPort, { localAddress: "127.0.0.3" }));
      await runTranscript(
        relay.smtpPort,
        `
        < 421 4.7.0 *too many connections
        <close
      `,
        { localAddress: "127.0.0.4" },
      );
      await peers[1]!.sendLine("QUIT");
      await peers[1]!.expect("221 *");
      await peers[1]!.expectClose();
      // A slot is free again (bounded retry: the server notices the close asynchronously).
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        const peer = await TranscriptPeer.connect(relay.smtpPort);
        ok = (await peer.readLine())?.startsWith("220 ") ?? false;
        peer.close();
        if (!ok) await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(ok);
    } finally {
      for (const p of peers) p.close();
      await relay.stop();
    }
  });

  it("low disk (free space under the floor): MAIL gets 452 4.3.1", async () => {
    const relay = await startTestRelay({ odmr: false, config: { smtpMinFreeSpace: 1e15 } });
    try {
      await runTranscript(
        relay.smtpPort,
        `${OPEN}
        > MAIL FROM:<a@remote.test>
        < 452 4.3.1 Error: insufficient system storage
        > QUIT
        < 221 *
      `,
      );
      assert.equal(messageCount(relay), 0);
    } finally {
      await relay.stop();
    }
  });

  it("storage error at commit: 451 4.3.0, nothing half-written, no spool file left; later mail works", async () => {
    const relay = await startTestRelay({ odmr: false });
    try {
      // The message row is inserted first, then a recipient insert fails inside the same transaction.
      relay.store.database.raw.exec(
        "CREATE TRIGGER test_fail BEFORE INSERT ON recipients BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
      );
      const big = Array.from({ length: 600 }, (_, i) => `        > line ${i} ${"b".repeat(900)}`).join("\n");
      await runTranscript(
        relay.smtpPort,
        `${OPEN}
        > MAIL FROM:<a@remote.test>
        < 250 *
        > RCPT TO:<user@example.test>
        < 250 *
        > DATA
        < 354 *
${big}
        > .
        < 451 4.3.0 Error: local error in processing
        > QUIT
        < 221 *
      `,
      );
      assert.equal(messageCount(relay), 0);
      assert.equal(query<{ n: number }>(relay, "SELECT count(*) AS n FROM message_chunks")[0]!.n, 0);
      assert.equal(query<{ n: number }>(relay, "SELECT count(*) AS n FROM recipients")[0]!.n, 0);
      let spool: string[] = [];
      try {
        spool = readdirSync(`${relay.dataDir}/spool`);
      } catch { /* never created */ }
      assert.deepEqual(spool, []);
      relay.store.database.raw.exec("DROP TRIGGER test_fail");
      await runTranscript(
        relay.smtpPort,
        `${OPEN}
        > MAIL FROM:<a@remote.test>
        < 250 *
        > RCPT TO:<user@example.test>
        < 250 *
        > DATA
        < 354 *
        > Subject: after
        > .
        < 250 2.0.0 Ok: queued as *
      `,
      );
      assert.equal(messageCount(relay), 1);
    } finally {
      await relay.stop();
    }
  });

  it("storage error: a read-only database gives 451 4.3.0 and the session goes on", async () => {
    const relay = await startTestRelay({ odmr: false });
    try {
      relay.store.database.raw.exec("PRAGMA query_only = ON");
      await runTranscript(
        relay.smtpPort,
        `${OPEN}
        > MAIL FROM:<a@remote.test>
        < 250 *
        > RCPT TO:<user@example.test>
        < 250 *
        > DATA
        < 354 *
        > Subject: ro
        > .
        < 451 4.3.0 *
        > NOOP
        < 250 *
      `,
      );
      relay.store.database.raw.exec("PRAGMA query_only = OFF");
      assert.equal(messageCount(relay), 0);
    } finally {
      await relay.stop();
    }
  });

  it("graceful shutdown: idle sessions and new connections get 421 4.3.2; DATA in flight completes with 250", async () => {
    const relay = await startTestRelay({ odmr: false, config: { shutdownGrace: 5000 } });
    const inData = await session(relay.smtpPort);
    const idle = await session(relay.smtpPort);
    await intoData(inData);
    await inData.send("Subject: in flight\r\n\r\nfirst half\r\n");
    // Wait until the relay has read the first half (bounded).
    for (let i = 0; i < 100 && !relay.relay.services[0]!.activeSessions(); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const stopping = relay.stop();
    try {
      await idle.expect("421 4.3.2 mx.relay.test Service shutting down*");
      await idle.expectClose();
      await runTranscript(
        relay.smtpPort,
        `
        < 421 4.3.2 *
        <close
      `,
      );
      await inData.send("second half\r\n.\r\n");
      await inData.expect("250 2.0.0 Ok: queued as *");
      await inData.expect("421 4.3.2 *");
      await inData.expectClose();
    } finally {
      inData.close();
      idle.close();
      await stopping;
    }
    assert.equal(countMessagesIn(relay.dataDir), 1);
  });

  it("graceful shutdown: DATA that does not finish within the grace period is not acknowledged, nothing queued", async () => {
    const relay = await startTestRelay({ odmr: false, config: { shutdownGrace: 300 } });
    const peer = await session(relay.smtpPort);
    await intoData(peer);
    await peer.send("Subject: too slow\r\n\r\npartial");
    await relay.stop();
    // The peer sees no 250: either nothing and a close, or a 421.
    const line = await peer.readLine();
    assert.ok(line === null || line.startsWith("421"), `unexpected ${line}`);
    peer.close();
    assert.equal(countMessagesIn(relay.dataDir), 0);
  });
});

test("DATA cannot outlive the session cap by dripping one byte at a time", async () => {
  // Each byte arrives well within smtpDataTimeout, so only the session cap can end this.
  const relay = await startTestRelay({
    odmr: false,
    config: { smtpSessionTimeout: 1500, smtpDataTimeout: 5000 },
  });
  try {
    const peer = await TranscriptPeer.open(relay.smtp);
    await playTranscript(
      peer,
      `${OPEN}\n> MAIL FROM:<a@remote.test>\n< 250 *\n> RCPT TO:<u@example.test>\n< 250 *\n> DATA\n< 354 *`,
    );
    let reply: string | null = null;
    for (let i = 0; i < 40 && !peer.closed; i++) {
      await peer.send(new TextEncoder().encode("x"), "x").catch(() => {});
      await new Promise((r) => setTimeout(r, 150));
    }
    reply = await peer.readLine(2000).catch(() => null);
    assert.match(reply ?? "", /^421 4\.4\.2 /, "the session cap ends the drip with 421");
    assert.equal(messageCount(relay), 0);
    peer.close();
  } finally {
    await relay.stop();
  }
});
