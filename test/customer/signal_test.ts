// SIGTERM to a real `odmr-relay pull` process (the runtime running this test, src/main.ts): during the
// daemon's wait it exits 0 at once; during a session it lets the session finish within the grace, or
// cuts it after the grace; either way nothing the local server did not confirm leaves the relay's queue.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { enqueue, lastAtrn, queuedAddresses, startOdmrRelay, waitFor } from "../server/odmr_helpers.ts";
import type { TestRelay } from "../support/relay.ts";
import { pullArgs } from "./_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A running `pull` process and what it wrote. */
interface PullProcess {
  child: ChildProcess;
  /**
   * SIGTERM by pid: Deno's `child.kill()` reports any later exit as killed by the signal, hiding
   * the exit code the process chose.
   */
  terminate(): void;
  output(): string;
  exit: Promise<number | null>;
}

function spawnPull(args: string[]): PullProcess {
  const runtimeArgs = process.versions.bun ? [] : ["run", "-A"];
  const child = spawn(process.execPath, [...runtimeArgs, `${ROOT}src/main.ts`, "pull", ...args], {
    cwd: ROOT,
    env: { ...process.env, ODMR_RELAY_PULL_SECRET: "alice-secret" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Uint8Array) => (output += new TextDecoder().decode(d)));
  child.stderr!.on("data", (d: Uint8Array) => (output += new TextDecoder().decode(d)));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const exit = new Promise<number | null>((resolve) =>
    child.once("close", (code) => {
      clearTimeout(killer);
      resolve(code);
    })
  );
  return { child, terminate: () => process.kill(child.pid!, "SIGTERM"), output: () => output, exit };
}

/**
 * A local mail server that accepts everything except that it holds its reply to the end of the
 * first message's data until `release()` (or forever); `held` resolves when it starts holding.
 */
async function holdingMta(): Promise<
  { port: number; accepted: number; release(): void; held: Promise<void>; close(): void }
> {
  let release = () => {};
  let signalHeld = () => {};
  const held = new Promise<void>((r) => (signalHeld = r));
  const state = { accepted: 0 };
  let first = true;
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.write("220 local.test ESMTP\r\n");
    let buffer = "";
    let inData = false;
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      for (;;) {
        if (inData) {
          const end = buffer.indexOf("\r\n.\r\n");
          if (end < 0) return;
          buffer = buffer.slice(end + 5);
          inData = false;
          const reply = () => {
            state.accepted++;
            socket.write("250 2.0.0 queued\r\n");
          };
          if (first) {
            first = false;
            release = reply;
            signalHeld();
          } else reply();
          continue;
        }
        const i = buffer.indexOf("\r\n");
        if (i < 0) return;
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") socket.write("250-local.test\r\n250 8BITMIME\r\n");
        else if (verb === "DATA") {
          inData = true;
          buffer = "\r\n" + buffer; // the terminator's first CRLF may be the DATA line's own
          socket.write("354 go ahead\r\n");
        } else if (verb === "QUIT") socket.end("221 bye\r\n");
        else socket.write("250 Ok\r\n");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return state.accepted;
    },
    release: () => release(),
    held,
    close: () => server.close(),
  };
}

describe("pull and SIGTERM", () => {
  let relay: TestRelay;
  before(async () => {
    relay = await startOdmrRelay();
  });
  after(() => relay?.stop());

  const args = (mtaPort: number, extra: string[]) =>
    pullArgs(`127.0.0.1:${relay.odmrPort}`, mtaPort, ["--log-level", "info", ...extra]).slice(1);
  const queueThree = (tag: string) => {
    for (let i = 0; i < 3; i++) {
      enqueue(relay.store, [`${tag}${i}@example.test`], `Subject: ${i}\r\n\r\nbody\r\n`);
    }
  };

  it("during the daemon's wait: exits 0 at once", async () => {
    const mta = await holdingMta();
    try {
      const p = spawnPull(args(mta.port, ["--every", "1h"]));
      await waitFor(() => p.output().includes("msg=poll"), "the first poll's log line", 30_000);
      p.terminate();
      assert.equal(await p.exit, 0, p.output());
      assert.match(p.output(), /msg=stopping signal=SIGTERM/);
      assert.match(p.output(), /msg="pull daemon stopped"/);
    } finally {
      mta.close();
    }
  });

  it("during a session, within the grace: the session finishes, every message delivered, exit 0", async () => {
    const mta = await holdingMta();
    queueThree("g");
    try {
      const p = spawnPull(args(mta.port, ["--every", "1h", "--shutdown-grace", "30s"]));
      await Promise.race([mta.held, p.exit.then(() => assert.fail(`pull exited early: ${p.output()}`))]);
      p.terminate();
      await waitFor(() => p.output().includes("msg=stopping"), "the stop to be logged", 10_000);
      mta.release();
      assert.equal(await p.exit, 0, p.output());
      assert.equal(mta.accepted, 3);
      assert.match(p.output(), /msg=poll .*outcome=turned messages=3 /);
      assert.deepEqual(queuedAddresses(relay).filter((a) => a.startsWith("g")), []);
    } finally {
      mta.close();
    }
  });

  it("during a session, past the grace (one-shot): the session is cut, exit 7, nothing lost", async () => {
    const mta = await holdingMta();
    queueThree("c");
    const id0 = relay.store.recentAtrnSessions(1)[0]?.id ?? 0;
    try {
      const p = spawnPull(args(mta.port, ["--shutdown-grace", "200ms"]));
      await Promise.race([mta.held, p.exit.then(() => assert.fail(`pull exited early: ${p.output()}`))]);
      p.terminate();
      assert.equal(await p.exit, 7, p.output());
      assert.match(
        p.output(),
        /session cut by a stop; the provider keeps what the local server did not confirm/,
      );
      // The relay saw the connection go before any end-of-data reply: all three stay queued.
      await waitFor(
        () => lastAtrn(relay).id > id0 && lastAtrn(relay).endedAt !== null,
        "the relay to end its session",
      );
      assert.equal(mta.accepted, 0);
      assert.deepEqual(queuedAddresses(relay).filter((a) => a.startsWith("c")), [
        "c0@example.test",
        "c1@example.test",
        "c2@example.test",
      ]);
    } finally {
      mta.close();
    }
  });
});
