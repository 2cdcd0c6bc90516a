// A listening service (src/server/smtp_service.ts) with a tiny real protocol behind the session loop:
// sessions over real sockets on 127.0.0.1 and over in-memory pipes through `accept`, the session count,
// the listener's limits, and the graceful stop (421 4.3.2 for idle sessions and for newcomers while a
// message is still being received).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { Logger } from "../../src/log/logger.ts";
import type { Connection } from "../../src/net/connection.ts";
import { memoryPipe } from "../../src/net/memory_connection.ts";
import { RelayState } from "../../src/relay_state.ts";
import { type HandlerResult, type Protocol, SessionLoop } from "../../src/server/session.ts";
import {
  newConnectionId,
  type ServiceOptions,
  type SmtpService,
  startSmtpService,
} from "../../src/server/smtp_service.ts";
import {
  C220Greeting,
  C221Bye,
  C250Ok,
  C354StartInput,
  C500SyntaxError,
  type Reply,
} from "../../src/smtp/reply_codes.ts";
import { TranscriptPeer } from "../support/transcript.ts";

const HOST = "mx.relay.test";
const GREETING = "220 mx.relay.test ESMTP tiny";
const SHUTTING_DOWN = "421 4.3.2 mx.relay.test Service shutting down, closing transmission channel";
const TIMEOUT = 5_000;

/**
 * The smallest protocol worth serving: NOOP, QUIT, and DATA that reads lines up to the final dot.
 * `dataLines` collects what DATA received.
 */
class TinyProtocol implements Protocol {
  readonly unknownCommand: Reply = C500SyntaxError;
  readonly handlers: Protocol["handlers"];

  constructor(conn: Connection, dataLines: string[]) {
    this.handlers = {
      NOOP: () => ({ reply: C250Ok }),
      QUIT: () => ({ reply: C221Bye, effect: { kind: "close" } }),
      DATA: () => ({
        reply: C354StartInput,
        effect: {
          kind: "data",
          receive: async (budget): Promise<HandlerResult> => {
            for (let i = 0; i < 1_000; i++) {
              const line = await conn.readLine({ timeoutMs: Math.max(1, budget.remainingMs()) });
              if (line === ".") return { reply: C250Ok };
              dataLines.push(line);
            }
            return { reply: C500SyntaxError };
          },
        },
      }),
    };
  }

  mustEndBatch(): boolean {
    return true;
  }
  pipeliningAllowed(): boolean {
    return false;
  }
  isJunk(verb: string): boolean {
    return verb === "NOOP";
  }
  afterTls(): void {}
}

interface Harness {
  service: SmtpService;
  state: RelayState;
  logs: string[];
  /** Every session the factory built: its connection and cid. */
  made: { conn: Connection; cid: string }[];
  dataLines: string[];
  port: number;
}

async function start(options: Partial<ServiceOptions> = {}): Promise<Harness> {
  const logs: string[] = [];
  const logger = new Logger({ level: "debug", sink: (line) => logs.push(line) });
  const state = new RelayState();
  const made: Harness["made"] = [];
  const dataLines: string[] = [];
  const service = await startSmtpService({
    name: "smtp",
    listen: { host: "127.0.0.1", port: 0 },
    hostname: HOST,
    tlsHandshakeTimeoutMs: 1_000,
    maxConnections: 20,
    maxConnectionsPerIp: 20,
    maxLineLength: 1_000,
    logger,
    state,
    createSession: (conn, cid, sessionLogger) => {
      made.push({ conn, cid });
      return new SessionLoop({
        conn,
        logger: sessionLogger,
        protocol: new TinyProtocol(conn, dataLines),
        greeting: C220Greeting(HOST, "ESMTP tiny"),
        startTls: null,
        limits: {
          hostname: HOST,
          maxLineLength: 1_000,
          idleTimeoutMs: 10_000,
          sessionTimeoutMs: 30_000,
          maxErrors: 10,
          maxJunkCommands: 10,
          greetingDelayMs: 0,
          enhancedCodes: true,
          wireTrace: false,
        },
      });
    },
    ...options,
  });
  return { service, state, logs, made, dataLines, port: service.address().port };
}

/** A socket session that has read its greeting (so the service holds it as a session). */
async function socketSession(port: number, localAddress?: string): Promise<TranscriptPeer> {
  const peer = await TranscriptPeer.connect(port, {
    timeoutMs: TIMEOUT,
    ...(localAddress ? { localAddress } : {}),
  });
  await peer.expect(GREETING);
  return peer;
}

/** An in-memory session through `accept`: the peer, the server end, and the promise of `accept`. */
async function memorySession(
  service: SmtpService,
  clientAddress = "127.0.0.1",
): Promise<{ peer: TranscriptPeer; server: Connection; served: Promise<void> }> {
  const [server, client] = memoryPipe({ clientAddress });
  const served = service.accept(server);
  const peer = new TranscriptPeer(client, { timeoutMs: TIMEOUT });
  await peer.expect(GREETING);
  return { peer, server, served };
}

/** Waits (bounded) until `cond` holds. */
async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + TIMEOUT;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Resolves with the promise's value, or rejects after TIMEOUT. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), TIMEOUT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** True when a TCP connect to the port is refused (nothing listens any more). */
function connectRefused(port: number): Promise<boolean> {
  return within(
    new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(false);
      });
      socket.once("error", () => resolve(true));
    }),
    "connect attempt",
  );
}

describe("SmtpService sessions", () => {
  test("a socket on 127.0.0.1 gets a session: greeting, commands, QUIT closes it", async () => {
    const h = await start();
    try {
      const peer = await socketSession(h.port);
      await peer.sendLine("NOOP");
      await peer.expect("250 2.0.0 Ok");
      await peer.sendLine("FROB");
      await peer.expect("500 5.5.2 *");
      await peer.sendLine("QUIT");
      await peer.expect("221 2.0.0 Bye");
      await peer.expectClose();
      assert.equal(h.state.connections.get("smtp-accepted"), 1);
      assert.equal(h.made.length, 1);
    } finally {
      await h.service.stop(0);
    }
  });

  test("accept serves an in-memory connection the same way, then resolves and leaves it closed", async () => {
    const h = await start();
    try {
      const { peer, server, served } = await memorySession(h.service, "192.0.2.5");
      assert.equal(h.made[0]!.conn, server, "the factory got the connection handed to accept");
      await peer.sendLine("DATA");
      await peer.expect("354 *");
      await peer.sendLine("hello");
      await peer.sendLine(".");
      await peer.expect("250 2.0.0 Ok");
      assert.deepEqual(h.dataLines, ["hello"]);
      await peer.sendLine("QUIT");
      await peer.expect("221 2.0.0 Bye");
      await within(served, "accept to resolve");
      assert.equal(server.isClosed, true);
      await peer.expectClose();
      assert.equal(h.state.connections.get("smtp-accepted"), 1);
      const connect = h.logs.find((l) => l.includes("msg=connect"));
      assert.ok(connect?.includes("ip=192.0.2.5") && connect.includes("listener=smtp"), connect);
    } finally {
      await h.service.stop(0);
    }
  });

  test("accept resolves when the peer hangs up, and closes its end", async () => {
    const h = await start();
    try {
      const { peer, server, served } = await memorySession(h.service);
      peer.close();
      await within(served, "accept to resolve");
      assert.equal(server.isClosed, true);
      assert.equal(h.service.activeSessions(), 0);
    } finally {
      await h.service.stop(0);
    }
  });

  test("each session gets its own connection id", async () => {
    const h = await start();
    try {
      const a = await memorySession(h.service);
      const b = await memorySession(h.service);
      const [first, second] = h.made.map((m) => m.cid);
      assert.match(first!, /^[A-Za-z0-9_-]{8}$/);
      assert.notEqual(first, second);
      a.peer.close();
      b.peer.close();
      await within(Promise.all([a.served, b.served]), "both sessions to end");
    } finally {
      await h.service.stop(0);
    }
    assert.notEqual(newConnectionId(), newConnectionId());
  });
});

describe("SmtpService session counts", () => {
  test("activeSessions counts sessions from the port and from accept, and drops as they end", async () => {
    const h = await start();
    try {
      assert.equal(h.service.activeSessions(), 0);
      const onSocket = await socketSession(h.port);
      assert.equal(h.service.activeSessions(), 1);
      const inMemory = await memorySession(h.service);
      assert.equal(h.service.activeSessions(), 2);
      assert.equal(h.state.activeSmtpSessions, 2);
      assert.equal(h.state.activeOdmrSessions, 0);

      await inMemory.peer.sendLine("QUIT");
      await within(inMemory.served, "the in-memory session to end");
      assert.equal(h.service.activeSessions(), 1);
      assert.equal(h.state.activeSmtpSessions, 1);

      await onSocket.sendLine("QUIT");
      await onSocket.expect("221 *");
      await onSocket.expectClose();
      await waitFor(() => h.service.activeSessions() === 0, "the socket session to end");
      assert.equal(h.state.activeSmtpSessions, 0);
      assert.equal(h.state.connections.get("smtp-accepted"), 2);
    } finally {
      await h.service.stop(0);
    }
  });

  test("an ODMR service counts its sessions as ODMR sessions", async () => {
    const h = await start({ name: "odmr" });
    try {
      const { peer, served } = await memorySession(h.service);
      assert.equal(h.state.activeOdmrSessions, 1);
      assert.equal(h.state.activeSmtpSessions, 0);
      assert.equal(h.state.connections.get("odmr-accepted"), 1);
      await peer.sendLine("QUIT");
      await within(served, "the session to end");
      assert.equal(h.state.activeOdmrSessions, 0);
    } finally {
      await h.service.stop(0);
    }
  });
});

describe("SmtpService listener limits", () => {
  test("a socket over the per-IP limit gets 421 4.7.0 and is closed; accept is not limited", async () => {
    const h = await start({ maxConnectionsPerIp: 1 });
    try {
      const first = await socketSession(h.port);
      const second = await TranscriptPeer.connect(h.port, { timeoutMs: TIMEOUT });
      await second.expect("421 4.7.0 mx.relay.test Error: too many connections");
      await second.expectClose();
      assert.equal(h.state.connections.get("smtp-rejected-per-ip"), 1);
      const inMemory = await memorySession(h.service);
      assert.equal(h.service.activeSessions(), 2);
      await inMemory.peer.sendLine("QUIT");
      await within(inMemory.served, "the in-memory session to end");
      first.close();
    } finally {
      await h.service.stop(0);
    }
  });

  test("when full, an idle session makes room for a newcomer with 421 4.7.0; a session in DATA does not", async () => {
    const h = await start({ maxConnections: 2 });
    try {
      const inData = await socketSession(h.port);
      await inData.sendLine("DATA");
      await inData.expect("354 *");
      const idle = await socketSession(h.port);
      // The newcomer comes from another address; 127.0.0.1 holds both slots.
      const newcomer = await socketSession(h.port, "127.0.0.2");
      await idle.expect("421 4.7.0 mx.relay.test Error: too many connections, closing an idle one");
      await idle.expectClose();
      assert.equal(h.state.connections.get("smtp-evicted"), 1);
      await inData.sendLine(".");
      await inData.expect("250 2.0.0 Ok");
      await newcomer.sendLine("NOOP");
      await newcomer.expect("250 2.0.0 Ok");
      inData.close();
      newcomer.close();
    } finally {
      await h.service.stop(0);
    }
  });
});

describe("SmtpService stop", () => {
  test("idle sessions, on the port and from accept, get 421 4.3.2 at once and are closed", async () => {
    const h = await start();
    const onSocket = await socketSession(h.port);
    const inMemory = await memorySession(h.service);
    const grace = 10_000;
    const started = Date.now();
    const stopped = h.service.stop(grace);
    await onSocket.expect(SHUTTING_DOWN);
    await onSocket.expectClose();
    await inMemory.peer.expect(SHUTTING_DOWN);
    await inMemory.peer.expectClose();
    await within(inMemory.served, "accept to resolve");
    await within(stopped, "stop to resolve");
    assert.ok(Date.now() - started < grace / 2, "stop did not wait out the grace period");
    assert.equal(h.service.activeSessions(), 0);
    assert.equal(await connectRefused(h.port), true, "the port is closed after stop");
  });

  test("while a message is received, newcomers get 421 4.3.2 on the port and through accept", async () => {
    const h = await start();
    const sender = await memorySession(h.service);
    await sender.peer.sendLine("DATA");
    await sender.peer.expect("354 *");
    await sender.peer.sendLine("first line");
    await waitFor(() => h.dataLines.length === 1, "the first line to arrive");
    const stopped = h.service.stop(10_000);
    let stopDone = false;
    void stopped.then(() => (stopDone = true));

    // The grace period: the port still answers, with 421 4.3.2, and no session is started.
    const late = await TranscriptPeer.connect(h.port, { timeoutMs: TIMEOUT });
    await late.expect(SHUTTING_DOWN);
    await late.expectClose();
    const [server, client] = memoryPipe();
    const lateMemory = new TranscriptPeer(client, { timeoutMs: TIMEOUT });
    await within(h.service.accept(server), "accept of a late connection");
    await lateMemory.expect(SHUTTING_DOWN);
    await lateMemory.expectClose();
    assert.equal(server.isClosed, true);
    assert.equal(h.state.connections.get("smtp-refused-shutdown"), 2);
    assert.equal(h.state.connections.get("smtp-accepted"), 1, "no session for the late ones");
    assert.equal(h.made.length, 1);
    assert.equal(h.service.activeSessions(), 1);
    assert.equal(stopDone, false, "stop waits for the message");

    // The message finishes and is acknowledged; then the session gets its 421.
    await sender.peer.sendLine("last line");
    await sender.peer.sendLine(".");
    await sender.peer.expect("250 2.0.0 Ok");
    await sender.peer.expect(SHUTTING_DOWN);
    await sender.peer.expectClose();
    assert.deepEqual(h.dataLines, ["first line", "last line"]);
    await within(stopped, "stop to resolve");
    assert.equal(h.service.activeSessions(), 0);
    assert.equal(await connectRefused(h.port), true, "the port is closed after stop");
  });

  test("a socket session still in DATA when the grace period ends is dropped without a reply", async () => {
    const h = await start();
    const sender = await socketSession(h.port);
    await sender.sendLine("DATA");
    await sender.expect("354 *");
    await sender.sendLine("never finished");
    await waitFor(() => h.dataLines.length === 1, "the line to arrive");
    await within(h.service.stop(200), "stop to resolve");
    await sender.expectClose();
    assert.ok(
      h.logs.some((l) =>
        l.includes("dropping sessions at the end of the grace period") && l.includes("count=1")
      ),
      "the drop is logged",
    );
    await waitFor(() => h.service.activeSessions() === 0, "the dropped session to end");
    assert.equal(h.state.activeSmtpSessions, 0);
  });

  test("a session from accept still in DATA when the grace period ends is dropped too", async () => {
    const h = await start();
    const { peer, server, served } = await memorySession(h.service);
    await peer.sendLine("DATA");
    await peer.expect("354 *");
    await peer.sendLine("never finished");
    await waitFor(() => h.dataLines.length === 1, "the line to arrive");
    await within(h.service.stop(200), "stop to resolve");
    await peer.expectClose();
    await within(served, "accept to resolve");
    assert.equal(server.isClosed, true);
    assert.equal(h.service.activeSessions(), 0);
  });
});
