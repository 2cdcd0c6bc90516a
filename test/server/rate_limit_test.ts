import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { SlidingWindowLimit, type SlidingWindowOptions } from "../../src/server/rate_limit.ts";

function setup(options: SlidingWindowOptions): { clock: ManualClock; limit: SlidingWindowLimit } {
  const clock = new ManualClock(1_000_000);
  return { clock, limit: new SlidingWindowLimit(clock, options) };
}

/** `n` attempts for `key` now; what each answered. */
function takes(limit: SlidingWindowLimit, key: string, n: number): boolean[] {
  return Array.from({ length: n }, () => limit.tryTake(key));
}

describe("SlidingWindowLimit options", () => {
  test("refuses a limit below 1 or a window that is not positive", () => {
    const clock = new ManualClock(0);
    assert.throws(() => new SlidingWindowLimit(clock, { limit: 0, windowMs: 1000 }), RangeError);
    assert.throws(() => new SlidingWindowLimit(clock, { limit: -1, windowMs: 1000 }), RangeError);
    assert.throws(() => new SlidingWindowLimit(clock, { limit: NaN, windowMs: 1000 }), RangeError);
    assert.throws(() => new SlidingWindowLimit(clock, { limit: 1, windowMs: 0 }), RangeError);
    assert.throws(() => new SlidingWindowLimit(clock, { limit: 1, windowMs: NaN }), RangeError);
  });

  test("the smallest valid limits are accepted", () => {
    const { limit } = setup({ limit: 1, windowMs: 1 });
    assert.equal(limit.tryTake("k"), true);
    assert.equal(limit.tryTake("k"), false);
  });
});

describe("SlidingWindowLimit counting", () => {
  test("allows `limit` events within the window, then refuses", () => {
    const { limit } = setup({ limit: 3, windowMs: 60_000 });
    assert.deepEqual(takes(limit, "alice", 5), [true, true, true, false, false]);
  });

  test("each event counts until windowMs after it happened (sliding, not fixed)", () => {
    const { clock, limit } = setup({ limit: 2, windowMs: 1_000 });
    assert.equal(limit.tryTake("alice"), true); // t = 0
    clock.advance(400);
    assert.equal(limit.tryTake("alice"), true); // t = 400
    clock.advance(599);
    assert.equal(limit.tryTake("alice"), false, "t = 999: both still count");
    clock.advance(1);
    assert.equal(limit.tryTake("alice"), true, "t = 1000: the first has left the window");
    clock.advance(1);
    assert.equal(limit.tryTake("alice"), false, "t = 1001: the ones at 400 and 1000 count");
    clock.advance(399);
    assert.equal(limit.tryTake("alice"), true, "t = 1400: the one at 400 has left");
  });

  test("a refused attempt records nothing", () => {
    const { clock, limit } = setup({ limit: 2, windowMs: 1_000 });
    assert.deepEqual(takes(limit, "alice", 2), [true, true]);
    clock.advance(500);
    assert.deepEqual(takes(limit, "alice", 10), Array(10).fill(false));
    // Had the refusals at t = 500 counted, they would still fill the window at t = 1000.
    clock.advance(500);
    assert.deepEqual(takes(limit, "alice", 3), [true, true, false]);
  });

  test("keys are counted separately", () => {
    const { limit } = setup({ limit: 1, windowMs: 60_000 });
    assert.equal(limit.tryTake("alice"), true);
    assert.equal(limit.tryTake("alice"), false);
    assert.equal(limit.tryTake("dave"), true);
    assert.equal(limit.tryTake("dave"), false);
    assert.equal(limit.size, 2);
  });

  test("after a whole quiet window the full budget is back", () => {
    const { clock, limit } = setup({ limit: 3, windowMs: 60_000 });
    assert.deepEqual(takes(limit, "alice", 4), [true, true, true, false]);
    clock.advance(60_000);
    assert.deepEqual(takes(limit, "alice", 4), [true, true, true, false]);
  });
});

describe("SlidingWindowLimit memory", () => {
  test("keeps at most maxKeys keys, dropping the oldest", () => {
    const { limit } = setup({ limit: 1, windowMs: 60_000, maxKeys: 2 });
    assert.equal(limit.tryTake("a"), true);
    assert.equal(limit.tryTake("b"), true);
    assert.equal(limit.tryTake("c"), true);
    assert.equal(limit.size, 2);
    assert.equal(limit.tryTake("b"), false, "b is still tracked");
    assert.equal(limit.tryTake("c"), false, "c is still tracked");
    assert.equal(limit.tryTake("a"), true, "a was dropped, so it starts afresh");
  });

  test("the least recently used key goes first, not the first inserted", () => {
    const { limit } = setup({ limit: 2, windowMs: 60_000, maxKeys: 2 });
    assert.equal(limit.tryTake("a"), true);
    assert.equal(limit.tryTake("b"), true);
    assert.equal(limit.tryTake("a"), true); // a is now the most recent (and full)
    assert.equal(limit.tryTake("c"), true); // pushes b out
    assert.equal(limit.size, 2);
    assert.equal(limit.tryTake("a"), false, "a was kept: its two events still count");
    assert.deepEqual(takes(limit, "b", 3), [true, true, false], "b was dropped and starts afresh");
  });

  test("maxKeys below 1 still keeps one key", () => {
    const { limit } = setup({ limit: 1, windowMs: 60_000, maxKeys: 0 });
    assert.equal(limit.tryTake("a"), true);
    assert.equal(limit.size, 1);
    assert.equal(limit.tryTake("a"), false);
    assert.equal(limit.tryTake("b"), true);
    assert.equal(limit.size, 1);
    assert.equal(limit.tryTake("a"), true, "a made room for b");
  });

  test("maxKeys defaults to 10,000", () => {
    const { limit } = setup({ limit: 1, windowMs: 60_000 });
    for (let i = 0; i < 10_001; i++) limit.tryTake(`k${i}`);
    assert.equal(limit.size, 10_000);
    assert.equal(limit.tryTake("k0"), true, "the oldest key was dropped");
    assert.equal(limit.tryTake("k10000"), false, "the newest is kept");
  });
});
