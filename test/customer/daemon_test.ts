// The pull daemon against the real relay and Postfix's real smtp-sink, in-process with short
// intervals: the provider restarted between polls, the local MTA down for a poll, several providers
// polled in turn, and one log line per poll with the message count.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, describe, it } from "node:test";
import { enqueue, queuedAddresses, startOdmrRelay, waitFor } from "../server/odmr_helpers.ts";
import { freePort, type Sink, startSink } from "../support/fetchmail.ts";
import type { TestRelay } from "../support/relay.ts";
import { tempDir } from "../support/temp.ts";
import { pollOptions, pullArgs, runCliCaptured, startDaemon } from "./_helpers.ts";

const sinkMissing = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"].some(existsSync)
  ? null
  : "skipped: smtp-sink not installed (apt-get install postfix)";
if (sinkMissing) console.error(`pull daemon: ${sinkMissing}`);

const local = (port: number) => ({ host: "127.0.0.1", port });

describe("pull daemon", { skip: sinkMissing ?? false }, () => {
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  });
  const sink = async (port?: number): Promise<Sink> => {
    const s = await startSink(port === undefined ? {} : { port });
    cleanup.push(() => s.stop());
    return s;
  };
  const relayOn = async (port: number, dataDir: string, seed = true): Promise<TestRelay> => {
    const r = await startOdmrRelay(
      { dataDir, flags: { odmrListen: `127.0.0.1:${port}` } },
      seed ? undefined : [],
    );
    cleanup.push(() => r.stop());
    return r;
  };

  it("survives the provider restarting between polls: same port, same data, mail before and after collected", async () => {
    const port = await freePort();
    const dataDir = tempDir("odmr-pull-restart-");
    let relay = await relayOn(port, dataDir);
    const mta = await sink();
    enqueue(relay.store, ["before@example.test"], "Subject: before\r\n\r\nbefore the restart\r\n");
    const daemon = startDaemon([local(port)], pollOptions(mta.port));
    try {
      await daemon.waitForResult((r) => r.outcome === "turned" && r.messages === 1, "the first collection");
      await relay.stop();
      await daemon.waitForResult((r) => r.outcome === "connect-failed", "a poll while the provider is down");
      relay = await relayOn(port, dataDir, false); // the accounts are in the data directory already
      enqueue(relay.store, ["after@example.test"], "Subject: after\r\n\r\nafter the restart\r\n");
      await waitFor(() => mta.count() === 2, "the message queued after the restart", 10_000);
    } finally {
      await daemon.stop();
    }
    assert.deepEqual(queuedAddresses(relay), []);
    const outcomes = daemon.results.map((r) => r.outcome);
    assert.ok(outcomes.indexOf("connect-failed") > outcomes.indexOf("turned"), outcomes.join(","));
    assert.ok(outcomes.lastIndexOf("turned") > outcomes.indexOf("connect-failed"), outcomes.join(","));
  });

  it("local MTA down for a poll: nothing is lost, everything is collected on a later poll", async () => {
    const relay = await relayOn(await freePort(), tempDir("odmr-pull-mta-"));
    const mtaPort = await freePort(); // nothing listens there yet
    for (let i = 0; i < 3; i++) {
      enqueue(relay.store, [`m${i}@example.test`], `Subject: ${i}\r\n\r\nbody ${i}\r\n`);
    }
    const daemon = startDaemon([local(relay.odmrPort)], pollOptions(mtaPort));
    let mta: Sink;
    try {
      const down = await daemon.waitForResult(
        (r) => r.outcome === "local-unreachable",
        "a poll with the MTA down",
      );
      assert.match(down.message, /provider keeps the mail/);
      // The relay puts them back when it sees the connection go, right after the turn.
      const all = ["m0@example.test", "m1@example.test", "m2@example.test"].join();
      await waitFor(() => queuedAddresses(relay).join() === all, "all three queued again", 10_000);
      mta = await sink(mtaPort);
      await daemon.waitForResult(
        (r) => r.outcome === "turned" && r.messages === 3,
        "the collection once it is up",
      );
    } finally {
      await daemon.stop();
    }
    assert.equal(mta.count(), 3);
    assert.deepEqual(queuedAddresses(relay), []);
    // One line per poll, with the outcome, the messages, the bytes and the duration.
    const turned = daemon.logs.find((l) => l.includes("msg=poll") && l.includes("outcome=turned"));
    assert.match(turned ?? "", /messages=3 bytes=\d+ bytesToProvider=\d+ durationMs=\d+ nextIn=\d+s/);
    const failed = daemon.logs.find((l) => l.includes("outcome=local-unreachable"));
    assert.match(failed ?? "", /level=warn .*messages=0 .*detail=/);
  });

  it("several providers: each polled on its own, a provider that is down does not keep the other's mail", async () => {
    const a = await relayOn(await freePort(), tempDir("odmr-pull-a-"));
    const b = await relayOn(await freePort(), tempDir("odmr-pull-b-"));
    const down = await freePort();
    const mta = await sink();
    enqueue(a.store, ["x@example.test"], "Subject: a\r\n\r\nfrom a\r\n");
    enqueue(b.store, ["y@example.test", "z@example.test"], "Subject: b\r\n\r\nfrom b\r\n");
    const providers = [local(a.odmrPort), local(down), local(b.odmrPort)];
    const daemon = startDaemon(providers, pollOptions(mta.port));
    try {
      await waitFor(() => daemon.results.length >= 3, "the first round", 10_000);
      await waitFor(() => mta.count() === 2, "both providers' mail", 10_000);
    } finally {
      await daemon.stop();
    }
    // One loop per provider, concurrently: the first result of each, whatever order they finished in.
    const firstOf = (port: number) => daemon.results.find((r) => r.provider === `127.0.0.1:${port}`)?.outcome;
    assert.deepEqual(providers.map((p) => firstOf(p.port)), ["turned", "connect-failed", "turned"]);
    assert.deepEqual([...queuedAddresses(a), ...queuedAddresses(b)], []);
  });

  it("one-shot with --server a,b: each provider once, the exit code of the first failure", async () => {
    const a = await relayOn(await freePort(), tempDir("odmr-pull-1a-"));
    const b = await relayOn(await freePort(), tempDir("odmr-pull-1b-"));
    const mta = await sink();
    enqueue(a.store, ["p@example.test"], "Subject: a\r\n\r\nfrom a\r\n");
    enqueue(b.store, ["q@example.test"], "Subject: b\r\n\r\nfrom b\r\n");
    const both = await runCliCaptured(pullArgs(`127.0.0.1:${a.odmrPort},127.0.0.1:${b.odmrPort}`, mta.port));
    assert.equal(both.code, 0, both.out);
    assert.equal(mta.count(), 2);
    assert.match(both.out, new RegExp(`127\\.0\\.0\\.1:${a.odmrPort}: session ended, 1 message `));
    assert.match(both.out, new RegExp(`127\\.0\\.0\\.1:${b.odmrPort}: session ended, 1 message `));
    // A provider that is down (6) wins over the other's "no mail" (1); both are still polled.
    const down = await freePort();
    const oneDown = await runCliCaptured(pullArgs(`127.0.0.1:${down},127.0.0.1:${a.odmrPort}`, mta.port));
    assert.equal(oneDown.code, 6, oneDown.out);
    assert.match(oneDown.out, new RegExp(`127\\.0\\.0\\.1:${a.odmrPort}: no mail`));
  });
});
