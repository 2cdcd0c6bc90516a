// The daemon's timing as data: waits after success and failures, jitter bounds, the two-step stop,
// and the one-shot exit code over several providers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EXIT_CODES,
  oneShotExitCode,
  type PollOutcome,
  type PollResult,
} from "../../src/customer/outcome.ts";
import { nextWaitMs, sleep } from "../../src/customer/schedule.ts";
import { GracefulStop } from "../../src/customer/stop.ts";

const schedule = { everyMs: 300_000, jitter: 0.1, backoffMs: 30_000, backoffMaxMs: 900_000 };

describe("nextWaitMs", () => {
  it("after a poll that worked: every, lengthened by up to the jitter, never shortened", () => {
    assert.equal(nextWaitMs(schedule, 0, () => 0), 300_000);
    assert.equal(nextWaitMs(schedule, 0, () => 0.999999), 330_000);
    for (let i = 0; i < 100; i++) {
      const wait = nextWaitMs(schedule, 0);
      assert.ok(wait >= 300_000 && wait <= 330_000, String(wait));
    }
  });

  it("after failures in a row: the backoff doubles up to its cap, jitter included", () => {
    const waits = [1, 2, 3, 4, 5, 6, 10, 100].map((n) => nextWaitMs(schedule, n, () => 0));
    assert.deepEqual(waits, [30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000]);
    assert.equal(nextWaitMs(schedule, 5, () => 0.999999), 528_000);
    assert.equal(nextWaitMs(schedule, 6, () => 0.999999), 900_000);
  });

  it("sleep ends early when the stop fires", async () => {
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 20);
    const started = Date.now();
    await sleep(60_000, stop.signal);
    assert.ok(Date.now() - started < 30_000);
  });
});

describe("GracefulStop", () => {
  it("stopping fires at once, abandon after the grace", async () => {
    const stop = new GracefulStop(50);
    stop.request();
    assert.deepEqual([stop.stopping.aborted, stop.abandon.aborted], [true, false]);
    await new Promise((resolve) => stop.abandon.addEventListener("abort", resolve));
    assert.equal(stop.abandon.aborted, true);
  });

  it("a second request cuts at once", () => {
    const stop = new GracefulStop(60_000);
    stop.request();
    stop.request();
    assert.equal(stop.abandon.aborted, true);
    stop.dispose();
  });
});

describe("oneShotExitCode", () => {
  const r = (outcome: PollOutcome): PollResult => ({
    provider: "p:366",
    outcome,
    message: "",
    messages: 0,
    refused: 0,
    counted: true,
    bytesToLocal: 0,
    bytesToProvider: 0,
    durationMs: 0,
  });
  const cases: [PollOutcome[], number][] = [
    [["turned"], 0],
    [["no-mail"], 1],
    [["no-mail", "turned"], 0],
    [["no-mail", "no-mail"], 1],
    [["turned", "connect-failed", "auth-failed"], EXIT_CODES["connect-failed"]],
    [["auth-failed"], 3],
    [["refused"], 4],
    [["local-unreachable"], 5],
    [["interrupted"], 7],
  ];
  for (const [outcomes, code] of cases) {
    it(`${outcomes.join(", ")} -> ${code}`, () => assert.equal(oneShotExitCode(outcomes.map(r)), code));
  }
});
