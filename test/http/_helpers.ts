/** A seeded relay for the HTTP tests: a REAL SQLite store filled through QueueStore, and its app. */
import { createApp } from "../../src/http/app.ts";
import { Logger } from "../../src/log/logger.ts";
import { CHUNK_SIZE } from "../../src/queue/spool.ts";
import type { QueueStore } from "../../src/queue/store.ts";
import { RelayState } from "../../src/relay_state.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";
import { ManualClock } from "../../src/clock.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

/** The token the tests configure when they configure one. */
export const TOKEN = "s3cret-token-for-tests";
/** The tests' fixed "now" (2026-01-02T03:04:05Z). */
export const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);

/** What a seeded relay holds. */
export interface Seeded {
  store: QueueStore;
  state: RelayState;
  dataDir: string;
  logLines: string[];
  clock: ManualClock;
  advance(ms: number): void;
  /** Message ids by name. */
  ids: { first: number; second: number; big: number; failed: number };
  /** The big message's body text. */
  bigBody: string;
}

/**
 * Accounts alice and bob; domains a.test (alice), b.test (bob, last ATRN failed with markup in
 * the text), c.test (alice, empty). Messages: `first` to a.test and b.test with folded headers
 * (an hour old), `second` to a.test (10 minutes old), `big` a multi-chunk body to b.test,
 * `failed` with its only recipient already failed.
 */
export function seed(): Seeded {
  const clock = new ManualClock(T0 - 3600_000);
  const { store, dataDir } = tempStore(clock);
  store.addAccount("alice", testSecrets("alice-pw"));
  store.addAccount("bob", testSecrets("bob-pw"));
  store.addDomain("a.test", "alice");
  store.addDomain("b.test", "bob");
  store.addDomain("c.test", "alice");
  const first = store.enqueue(
    incoming("sender@example.org", ["one@a.test", "Two@b.test"]),
    bodyOf(
      "Received: from client.test\r\n\tby relay.test; Fri, 2 Jan 2026 02:04:05 +0000\r\n" +
        "Subject: Hello <there>\r\nFrom: sender@example.org\r\n\r\nBody line\r\n",
    ),
  );
  clock.set(T0 - 600_000);
  const second = store.enqueue(incoming("", ["three@a.test"]), bodyOf("Subject: bounce\r\n\r\nx\r\n"));
  const bigBody = "Subject: big\r\n\r\n" + "0123456789abcdef".repeat((CHUNK_SIZE * 2) / 16 + 10);
  const bigBytes = new TextEncoder().encode(bigBody);
  const big = store.enqueue(incoming("big@example.org", ["big@b.test"]), {
    size: bigBytes.length,
    eightBit: false,
    // Stored as several chunk rows, as the intake stores a large DATA.
    chunks: function* () {
      for (let i = 0; i < bigBytes.length; i += CHUNK_SIZE) yield bigBytes.subarray(i, i + CHUNK_SIZE);
    },
  });
  const failed = store.enqueue(incoming("f@example.org", ["gone@c.test"]), bodyOf("Subject: f\r\n\r\nx\r\n"));
  store.bounceMessage(failed, "already failed");
  clock.set(T0 - 120_000);
  store.recordAtrnSession({
    accountId: store.findAccount("bob")!.id,
    username: "bob",
    domains: ["b.test"],
    peer: "203.0.113.9",
    tls: true,
    startedAt: clock.now() - 1000,
    endedAt: clock.now(),
    delivered: 0,
    deferred: 1,
    failed: 0,
    outcome: "turned",
    detail: '<script>alert("x")</script> & more',
  });
  clock.set(T0);
  const state = new RelayState(T0 - 90_000);
  state.listeners.push(
    { name: "smtp", host: "0.0.0.0", port: 25, tls: "starttls", bound: true },
    { name: "odmr", host: "::", port: 366, tls: "starttls", bound: true },
    { name: "http", host: "127.0.0.1", port: 8025, tls: "none", bound: true },
  );
  state.activeSmtpSessions = 2;
  state.activeOdmrSessions = 1;
  // Keys as src/server writes them.
  state.connections.inc("smtp-accepted");
  state.countConnection("smtp", "accepted");
  state.connections.inc("odmr-rejected-limit");
  state.connections.inc("odmrs-refused-shutdown");
  state.messages.inc("accepted", 3);
  state.messages.inc("rejected-size");
  state.messages.inc('rejected-weird "reason"\\with\nnewline');
  state.bytesReceived = 12345;
  state.atrnSessions.inc("turned");
  state.recipients.inc("delivered", 4);
  state.authFailures.inc("bad-credentials", 2);
  state.dsnsSent = 1;
  const logLines: string[] = [];
  return {
    store,
    state,
    dataDir,
    logLines,
    clock,
    advance: (ms) => clock.advance(ms),
    ids: { first, second, big, failed },
    bigBody,
  };
}

/** The app over a seeded relay. */
export function appFor(
  s: Seeded,
  options: { token?: string | null; listenerIsLoopback?: boolean } = {},
) {
  return createApp({
    store: new SqliteQueue(s.store),
    state: s.state,
    logger: new Logger({ level: "info", sink: (line) => s.logLines.push(line) }),
    token: options.token ?? null,
    listenerIsLoopback: options.listenerIsLoopback ?? true,
    version: "9.9.9-test",
    clock: s.clock,
  });
}

/** Authorization header with the test token. */
export const BEARER = { Authorization: `Bearer ${TOKEN}` };
