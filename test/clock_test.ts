import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type Clock, ManualClock, systemClock } from "../src/clock.ts";
import { Logger } from "../src/log/logger.ts";

/** Spins (bounded) until the real clock has moved past `ms`. */
function untilRealTimePasses(ms: number): void {
  for (let i = 0; i < 100_000_000; i++) if (Date.now() > ms) return;
  throw new Error("the real clock did not move");
}

describe("systemClock", () => {
  test("reads the real time", () => {
    const before = Date.now();
    const now = systemClock.now();
    const after = Date.now();
    assert.ok(before <= now && now <= after, `${before} <= ${now} <= ${after}`);
  });

  test("moves with real time", () => {
    const first = systemClock.now();
    untilRealTimePasses(first);
    assert.ok(systemClock.now() > first);
  });
});

describe("ManualClock", () => {
  test("starts where it is told", () => {
    assert.equal(new ManualClock(1_234).now(), 1_234);
    assert.equal(new ManualClock(0).now(), 0);
  });

  test("starts at the real time by default, so dates stay plausible", () => {
    const before = Date.now();
    const clock = new ManualClock();
    const after = Date.now();
    assert.ok(before <= clock.now() && clock.now() <= after);
  });

  test("stays put while real time passes", () => {
    const clock = new ManualClock();
    const start = clock.now();
    untilRealTimePasses(start);
    assert.equal(clock.now(), start);
  });

  test("set moves to an exact time, forward or back", () => {
    const clock = new ManualClock(1_000);
    clock.set(5_000);
    assert.equal(clock.now(), 5_000);
    clock.set(2_000);
    assert.equal(clock.now(), 2_000);
  });

  test("advance moves forward by the amount and returns the new time", () => {
    const clock = new ManualClock(1_000);
    assert.equal(clock.advance(250), 1_250);
    assert.equal(clock.now(), 1_250);
    assert.equal(clock.advance(0), 1_250);
    assert.equal(clock.advance(750), 2_000);
    assert.equal(clock.now(), 2_000);
  });

  test("is a Clock: code that reads time through it sees only what the test sets", () => {
    const clock: Clock = new ManualClock(Date.UTC(2024, 0, 2, 3, 4, 5));
    const lines: string[] = [];
    const logger = new Logger({ clock, sink: (line) => lines.push(line) });
    logger.info("one");
    (clock as ManualClock).advance(60_000);
    logger.info("two");
    assert.match(lines[0]!, /^time=2024-01-02T03:04:05\.000Z /);
    assert.match(lines[1]!, /^time=2024-01-02T03:05:05\.000Z /);
  });
});
