/**
 * Regression tests for the ODMR port's abuse resistance (docs/security.md), over real sockets from
 * several 127.0.0.x source addresses (Linux routes the whole 127/8 to loopback):
 * - AUTH throttling cannot be sprayed through by logging into one's own account, and cannot lock a
 *   customer out from another address (neither with a name that does not exist nor with the real one);
 * - 100 idle unauthenticated connections (plain and half-open TLS) do not keep a real customer out;
 * - the pre-AUTH deadline frees slots held by strangers;
 * - an ATRN flood is rate-limited and leaves the database small.
 */
import { after, before, describe, it, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { statSync } from "node:fs";
import { join } from "node:path";
import { makeTestCert } from "../support/certs.ts";
import { startTestRelay, type TestRelay } from "../support/relay.ts";
import type { TranscriptPeer } from "../support/transcript.ts";
import {
  cramAuth,
  cramResponse,
  enqueue,
  openOdmr,
  playCustomer,
  queuedAddresses,
  startOdmrRelay,
  waitFor,
  waitForAtrnAfter,
} from "./odmr_helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One AUTH attempt from `ip` on a fresh connection; the reply line (the connection is closed). */
async function attempt(port: number, ip: string, user: string, secret: string): Promise<string> {
  const peer = await openOdmr(port, { localAddress: ip });
  try {
    await peer.sendLine("AUTH CRAM-MD5");
    const challenge = (await peer.readLine()) ?? "";
    // A blocked address is refused before any challenge (454 4.7.0).
    if (!challenge.startsWith("334 ")) return challenge;
    await peer.sendLine(cramResponse(challenge.slice(4), user, secret));
    return (await peer.readLine()) ?? "";
  } finally {
    peer.close();
  }
}

/** Opens `count` raw connections from `ip` that read the greeting and then say nothing. */
async function idleConnections(port: number, ip: string, count: number, tls = false): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: ip });
    s.on("error", () => {});
    sockets.push(s);
    await new Promise<void>((resolve, reject) => {
      // Plaintext: wait for the greeting, so the session really holds its slot. TLS: never send a
      // ClientHello, the handshake stays half-open.
      if (tls) s.once("connect", () => resolve());
      else s.once("data", () => resolve());
      s.once("error", reject);
    });
  }
  return sockets;
}

describe("AUTH throttling", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startTestRelayWithLimits({
      authMaxFailuresPerIp: "10",
      authMaxFailuresPerAccountIp: "5",
    });
  });
  after(() => relay.stop());

  it("logging into one's own account does not reset the IP's failures (no password spraying)", async () => {
    const ip = "127.0.10.1";
    const replies: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) {
        replies.push(await attempt(relay.odmrPort, ip, i % 2 ? "alice" : "dave", `guess-${round}-${i}`));
      }
      // The sprayer's own account: a success between rounds.
      const own = await attempt(relay.odmrPort, ip, "eve2", "eve2-secret");
      if (!own.startsWith("235 ")) replies.push(own);
    }
    // 12 wrong guesses were tried; the 11th and later must be refused before any verification.
    const verified = replies.filter((r) => r.startsWith("535 ")).length;
    assert.equal(verified, 10, replies.join("\n"));
    assert.ok(replies.slice(10).every((r) => r.startsWith("454 4.7.0")), replies.join("\n"));
  });

  it("failures naming an account that does not exist never touch the real one", async () => {
    for (let i = 0; i < 20; i++) {
      const reply = await attempt(relay.odmrPort, `127.0.11.${1 + (i % 2)}`, "DAVE", `guess-${i}`);
      assert.match(reply, /^(535 5\.7\.8|454 4\.7\.0) /);
    }
    const started = Date.now();
    assert.match(await attempt(relay.odmrPort, "127.0.11.9", "dave", "dave-secret"), /^235 /);
    assert.ok(Date.now() - started < 1000, "no delay for the owner");
  });

  it("failures against the real account from two IPs do not lock the owner out of a third", async () => {
    for (let i = 0; i < 20; i++) {
      await attempt(relay.odmrPort, `127.0.12.${1 + (i % 2)}`, "dave", `guess-${i}`);
    }
    assert.match(await attempt(relay.odmrPort, "127.0.12.9", "dave", "dave-secret"), /^235 /);
  });

  it("the (account, IP) pair is locked: the right secret from the guessing IP gets the same 535", async () => {
    const ip = "127.0.13.1";
    for (let i = 0; i < 5; i++) assert.match(await attempt(relay.odmrPort, ip, "alice", "nope"), /^535 /);
    assert.match(await attempt(relay.odmrPort, ip, "alice", "alice-secret"), /^535 5\.7\.8 /);
    assert.match(await attempt(relay.odmrPort, "127.0.13.2", "alice", "alice-secret"), /^235 /);
  });

  it("challenges fetched in parallel cannot overrun the per-IP budget (checked again at verification)", async () => {
    const ip = "127.0.15.1";
    for (let i = 0; i < 9; i++) {
      assert.match(await attempt(relay.odmrPort, ip, "alice", `nope-${i}`), /^535 /);
    }
    const peers = await Promise.all(
      Array.from({ length: 8 }, () => openOdmr(relay.odmr, { localAddress: ip })),
    );
    try {
      const challenges = await Promise.all(peers.map(async (p) => {
        await p.sendLine("AUTH CRAM-MD5");
        return (await p.readLine()) ?? "";
      }));
      assert.ok(challenges.every((c) => c.startsWith("334 ")), "all were given a challenge");
      const replies: string[] = [];
      for (const [i, p] of peers.entries()) {
        await p.sendLine(cramResponse(challenges[i]!.slice(4), "dave", `spray-${i}`));
        replies.push((await p.readLine()) ?? "");
      }
      assert.equal(replies.filter((r) => r.startsWith("535 ")).length, 1, replies.join("\n"));
      assert.ok(replies.slice(1).every((r) => r.startsWith("454 4.7.0 ")), replies.join("\n"));
    } finally {
      for (const p of peers) p.close();
    }
  });

  it("a locked pair answers and counts the right secret exactly like a wrong one (no oracle)", async () => {
    const outcomes: string[] = [];
    for (const [ip, last] of [["127.0.16.1", "wrong-again"], ["127.0.16.2", "alice-secret"]] as const) {
      for (let i = 0; i < 5; i++) await attempt(relay.odmrPort, ip, "alice", `nope-${i}`);
      assert.match(await attempt(relay.odmrPort, ip, "alice", last), /^535 5\.7\.8 /);
      // Both were counted: four more failures reach the IP limit of 10 alike.
      for (let i = 0; i < 4; i++) await attempt(relay.odmrPort, ip, "dave", `x-${i}`);
      outcomes.push(await attempt(relay.odmrPort, ip, "alice", "alice-secret"));
    }
    assert.deepEqual(outcomes.map((o) => o.slice(0, 3)), ["454", "454"]);
  });

  it("usernames match exactly everywhere: ALICE is not alice", async () => {
    assert.match(await attempt(relay.odmrPort, "127.0.14.1", "ALICE", "alice-secret"), /^535 /);
    assert.match(await attempt(relay.odmrPort, "127.0.14.1", "alice", "alice-secret"), /^235 /);
  });
});

describe("AUTH delays come before verification", () => {
  it("a right secret waits like a wrong one, and unknown names wait like real ones", async () => {
    const relay = await startOdmrRelay({ authThrottle: { baseDelayMs: 300, maxDelayMs: 600 } });
    try {
      for (const name of ["dave", "zed"]) {
        for (let i = 0; i < 2; i++) await attempt(relay.odmrPort, `127.0.17.${i + 1}`, name, "wrong");
      }
      const timed = async (ip: string, name: string, secret: string) => {
        const started = Date.now();
        const reply = await attempt(relay.odmrPort, ip, name, secret);
        return { reply, ms: Date.now() - started };
      };
      // Two failures naming each: the next attempt with that name waits 600 ms from any address.
      const right = await timed("127.0.17.9", "dave", "dave-secret");
      assert.match(right.reply, /^235 /);
      assert.ok(right.ms >= 550, `the owner waited ${right.ms} ms too: hanging up early gains nothing`);
      const unknown = await timed("127.0.17.10", "zed", "x");
      assert.ok(unknown.ms >= 550, `an unknown name waits alike (${unknown.ms} ms)`);
    } finally {
      await relay.stop();
    }
  });
});

describe("pre-authentication starvation", () => {
  const cert = makeTestCert();
  let relay: TestRelay;
  before(async () => {
    relay = await startOdmrRelay({
      cert,
      config: { odmrMaxConnections: 100, odmrMaxConnectionsPerIp: 10, tlsHandshakeTimeout: 60_000 },
    });
  });
  after(() => relay.stop());

  it("100 idle connections from 10 IPs: a customer from a fresh address still does AUTH and ATRN", async () => {
    const sockets: net.Socket[] = [];
    try {
      for (let ip = 1; ip <= 10; ip++) {
        sockets.push(...await idleConnections(relay.odmrPort, `127.0.20.${ip}`, 10));
      }
      enqueue(relay.store, ["flood@example.test"], "Subject: during the flood\r\n\r\nbody\r\n");
      const id0 = relay.store.recentAtrnSessions(1)[0]?.id ?? 0;
      const peer = await openOdmr(relay.odmrPort, { localAddress: "127.0.21.1", user: "alice" });
      await peer.sendLine("ATRN example.test");
      await peer.expect("250 *");
      const log = await playCustomer(peer);
      assert.equal(log.messages.length, 1);
      assert.equal((await waitForAtrnAfter(relay, id0)).delivered, 1);
      assert.deepEqual(queuedAddresses(relay).filter((a) => a === "flood@example.test"), []);
      // One stranger was told why its slot went.
      const closed = sockets.filter((s) => s.destroyed || s.readableEnded).length;
      assert.ok(closed >= 1, "an idle stranger made room");
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("100 half-open TLS handshakes from 10 IPs: a customer's implicit-TLS session still works", async () => {
    const sockets: net.Socket[] = [];
    try {
      for (let ip = 1; ip <= 10; ip++) {
        sockets.push(...await idleConnections(relay.odmrsPort, `127.0.22.${ip}`, 10, true));
      }
      await sleep(50); // let the relay accept them all
      const peer = await openOdmr(relay.odmrsPort, {
        localAddress: "127.0.23.1",
        implicitTls: true,
        ca: cert.caPem,
        user: "alice",
      });
      await peer.sendLine("ATRN a.test");
      await peer.expect("453 *");
      peer.close();
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("a single address cannot evict its own connections: the 11th from one IP is refused", async () => {
    const sockets = await idleConnections(relay.odmrPort, "127.0.24.1", 10);
    try {
      const extra = await openRaw(relay.odmrPort, "127.0.24.1");
      assert.match(extra, /^421 4\.7\.0 /);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("an authenticated customer is never evicted to make room", async () => {
    const small = await startOdmrRelay({ config: { odmrMaxConnections: 3, odmrMaxConnectionsPerIp: 3 } });
    const sockets: net.Socket[] = [];
    let customer: TranscriptPeer | undefined;
    try {
      // 127.0.25.1 holds two slots: the customer's (oldest, authenticated) and an idle one.
      customer = await openOdmr(small.odmrPort, { localAddress: "127.0.25.1", user: "alice" });
      sockets.push(...await idleConnections(small.odmrPort, "127.0.25.1", 1));
      sockets.push(...await idleConnections(small.odmrPort, "127.0.25.2", 1));
      // Full: the newcomer takes the oldest EVICTABLE slot of the biggest holder, not the customer's.
      assert.match(await openRaw(small.odmrPort, "127.0.25.3"), /^220 /);
      await customer.sendLine("NOOP");
      await customer.expect("250 *");
      await waitFor(() => sockets[0]!.readableEnded || sockets[0]!.destroyed, "the idle slot to go");
    } finally {
      customer?.close();
      for (const s of sockets) s.destroy();
      await small.stop();
    }
  });
});

describe("TLS handshake time limit", () => {
  it("tlsHandshakeTimeout closes a half-open implicit-TLS handshake", async () => {
    const relay = await startOdmrRelay({ cert: makeTestCert(), config: { tlsHandshakeTimeout: 300 } });
    try {
      const [socket] = await idleConnections(relay.odmrsPort, "127.0.31.1", 1, true);
      const started = Date.now();
      await new Promise<void>((resolve) => socket!.once("close", () => resolve()));
      const waited = Date.now() - started;
      assert.ok(waited < 3000, `closed after ${waited} ms`);
    } finally {
      await relay.stop();
    }
  });
});

describe("pre-AUTH deadline", () => {
  it("a connection that does not authenticate in time gets 421 4.7.0 and is closed", async () => {
    const relay = await startOdmrRelay({ config: { odmrPreAuthTimeout: 300 } });
    try {
      const idle = await openOdmr(relay.odmr, { localAddress: "127.0.30.1" });
      const started = Date.now();
      await idle.expect("421 4.7.0 *authentication time limit*");
      await idle.expectClose();
      assert.ok(Date.now() - started < 2000);
      // Authenticated sessions are not bound by it.
      const customer = await openOdmr(relay.odmr, { localAddress: "127.0.30.2", user: "alice" });
      await sleep(400);
      await customer.sendLine("NOOP");
      await customer.expect("250 *");
      customer.close();
    } finally {
      await relay.stop();
    }
  });
});

describe("ATRN polling flood", () => {
  it("polls over atrnMaxPerMinute get 450 4.7.0; no-mail polls add no history rows", async () => {
    const relay = await startOdmrRelay({ flags: { atrnMaxPerMinute: "10" } });
    try {
      const walBefore = databaseBytes(relay);
      const replies: string[] = [];
      // A bounded flood: 200 polls in 20 sessions of 10 (the session's error cap ends each one).
      for (let session = 0; session < 20; session++) {
        const peer = await openOdmr(relay.odmr, { user: "alice" });
        try {
          for (let i = 0; i < 10; i++) {
            await peer.sendLine("ATRN a.test");
            const line = await peer.readLine();
            if (line === null) break;
            replies.push(line);
            if (line.startsWith("421")) break;
          }
        } finally {
          peer.close();
        }
      }
      assert.equal(replies.filter((r) => r.startsWith("453 ")).length, 10);
      assert.ok(
        replies.filter((r) => r.startsWith("450 4.7.0 ")).length >= 150,
        replies.slice(0, 20).join("\n"),
      );
      assert.equal(relay.store.recentAtrnSessions(100).length, 0, "no history rows for polls");
      // The database did not grow with the flood (WAL pages reused; well under 1 MB).
      assert.ok(databaseBytes(relay) - walBefore < 1_000_000);
      // Another account is not affected.
      const dave = await openOdmr(relay.odmr, { user: "dave" });
      await dave.sendLine("ATRN other.test");
      await dave.expect("453 *");
      dave.close();
    } finally {
      await relay.stop();
    }
  });
});

/** Bytes of the queue database and its WAL. */
function databaseBytes(relay: TestRelay): number {
  let total = 0;
  for (const name of ["queue.db", "queue.db-wal"]) {
    try {
      total += statSync(join(relay.dataDir, name)).size;
    } catch { /* not there */ }
  }
  return total;
}

/** Connects from `ip` and returns the first line the server says. */
function openRaw(port: number, ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: ip });
    let text = "";
    s.on("data", (d) => {
      text += d.toString("latin1");
      if (text.includes("\r\n")) {
        s.destroy();
        resolve(text.split("\r\n")[0]!);
      }
    });
    s.on("error", reject);
    s.on("close", () => resolve(text));
  });
}

/** An ODMR relay with real (not test-relaxed) AUTH limits, and one more account for the sprayer. */
function startTestRelayWithLimits(flags: Record<string, string>): Promise<TestRelay> {
  return startOdmrRelay({ flags: { ...flags, atrnMaxPerMinute: "1000" } }, [
    { username: "alice", password: "alice-secret", domains: ["example.test", "a.test", "b.test"] },
    { username: "dave", password: "dave-secret", domains: ["other.test"] },
    { username: "eve2", password: "eve2-secret", domains: ["eve2.test"] },
  ]);
}

test("a locked account answers the right secret exactly like a wrong one (no oracle)", async () => {
  const relay = await startOdmrRelay({ flags: { authMaxFailuresPerAccountIp: "3" } });
  try {
    for (let i = 0; i < 3; i++) {
      const peer = await openOdmr(relay.odmr);
      assert.match(await cramAuth(peer, "alice", "wrong-secret"), /^535 5\.7\.8 /);
      peer.close();
    }
    const peer = await openOdmr(relay.odmr);
    assert.match(await cramAuth(peer, "alice", "alice-secret"), /^535 5\.7\.8 /);
    peer.close();
  } finally {
    await relay.stop();
  }
});

test("implicit-TLS handshakes count against the connection limit", async () => {
  const cert = makeTestCert();
  const relay = await startTestRelay({ cert, config: { odmrMaxConnections: 2, odmrMaxConnectionsPerIp: 2 } });
  const sockets: net.Socket[] = [];
  try {
    const closed: Promise<void>[] = [];
    for (let i = 0; i < 6; i++) {
      const s = net.connect({ host: "127.0.0.1", port: relay.odmrsPort });
      s.on("error", () => {});
      sockets.push(s);
      closed.push(new Promise((resolve) => s.once("close", () => resolve())));
      await new Promise((r) => s.once("connect", r));
    }
    // Never sending a ClientHello: the first two wait in their handshake, the others are closed.
    const settled = await Promise.race([
      Promise.all(closed.slice(2)).then(() => "closed"),
      sleep(5000).then(() => "still open"),
    ]);
    assert.equal(settled, "closed");
  } finally {
    for (const s of sockets) s.destroy();
    await relay.stop();
  }
});
