import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  AuthThrottle,
  type AuthThrottleOptions,
  DEFAULT_AUTH_THROTTLE_OPTIONS,
  throttleKeyForIp,
} from "../../../src/server/sasl/auth_throttle.ts";
import { ManualClock } from "../../../src/clock.ts";

function setup(options: AuthThrottleOptions = {}): { clock: ManualClock; th: AuthThrottle } {
  const clock = new ManualClock(1_000_000);
  return { clock, th: new AuthThrottle(clock, options) };
}

describe("AuthThrottle delays", () => {
  test("0, 1s, 2s, 4s, 8s, 16s, then capped", () => {
    const { th } = setup({ maxFailuresPerIp: 100 });
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      seen.push(th.delayMsFor("192.0.2.1", "tim"));
      th.recordFailure("192.0.2.1", "tim");
    }
    assert.deepEqual(seen, [0, 1000, 2000, 4000, 8000, 16000, 16000, 16000]);
  });

  test("configurable base and cap", () => {
    const { th } = setup({ baseDelayMs: 250, maxDelayMs: 600 });
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      seen.push(th.delayMsFor("192.0.2.1"));
      th.recordFailure("192.0.2.1");
    }
    assert.deepEqual(seen, [0, 250, 500, 600, 600]);
  });

  test("uses the larger of the IP and account counters", () => {
    const { th } = setup();
    for (let i = 0; i < 3; i++) th.recordFailure(`198.51.100.${i}`, "tim");
    assert.equal(th.delayMsFor("203.0.113.9"), 0);
    assert.equal(th.delayMsFor("203.0.113.9", "tim"), 4000);
    assert.equal(th.delayMsFor("203.0.113.9", "TIM"), 0, "account keys are exact: TIM is another name");
  });

  test("never overflows with huge counts", () => {
    const { th } = setup({ maxFailuresPerIp: 5000, maxDelayMs: 30000 });
    for (let i = 0; i < 2000; i++) th.recordFailure("192.0.2.1");
    assert.equal(th.delayMsFor("192.0.2.1"), 30000);
  });
});

describe("AuthThrottle sliding window", () => {
  test("failures expire one by one after windowMs", () => {
    const { clock, th } = setup({ windowMs: 60_000 });
    th.recordFailure("192.0.2.1", "tim");
    clock.advance(30_000);
    th.recordFailure("192.0.2.1", "tim");
    assert.equal(th.ipFailures("192.0.2.1"), 2);
    clock.advance(30_000); // first failure now exactly windowMs old
    assert.equal(th.ipFailures("192.0.2.1"), 1);
    assert.equal(th.accountFailures("tim"), 1);
    clock.advance(30_000);
    assert.equal(th.ipFailures("192.0.2.1"), 0);
    assert.equal(th.delayMsFor("192.0.2.1", "tim"), 0);
    assert.deepEqual(th.size, { ips: 0, accounts: 0, pairs: 0 });
  });
});

describe("AuthThrottle verdicts", () => {
  test("IP blocked at maxFailuresPerIp, unblocked when the window passes", () => {
    const { clock, th } = setup({ maxFailuresPerIp: 3, windowMs: 1000 });
    for (let i = 0; i < 2; i++) th.recordFailure("192.0.2.1");
    assert.equal(th.isBlocked("192.0.2.1"), false);
    th.recordFailure("192.0.2.1");
    assert.equal(th.isBlocked("192.0.2.1"), true);
    assert.equal(th.isBlocked("192.0.2.2"), false);
    clock.advance(1000);
    assert.equal(th.isBlocked("192.0.2.1"), false);
  });

  test("failures from many IPs never lock the account: only (account, IP) pairs are locked", () => {
    const { th } = setup({ maxFailuresPerAccountIp: 3 });
    for (let i = 0; i < 20; i++) th.recordFailure(`198.51.100.${i}`, "tim");
    assert.equal(th.delayMsFor("203.0.113.9", "tim"), 16000, "further failures on tim are slowed");
    assert.equal(th.isLocked("tim", "203.0.113.9"), false, "the owner from a fresh address gets in");
    for (let i = 0; i < 3; i++) th.recordFailure("192.0.2.7", "tim");
    assert.equal(th.isLocked("tim", "192.0.2.7"), true);
    assert.equal(th.isLocked("tim", "192.0.2.8"), false);
    assert.equal(th.isLocked("other", "192.0.2.7"), false);
  });

  test("a success clears only that account's failures from that IP (no spraying through own login)", () => {
    const { th } = setup({ maxFailuresPerIp: 10, maxFailuresPerAccountIp: 5 });
    const ip = "192.0.2.1";
    for (let i = 0; i < 4; i++) th.recordFailure(ip, "victim1");
    for (let i = 0; i < 4; i++) th.recordFailure(ip, "victim2");
    th.recordFailure(ip, "me");
    th.recordFailure(ip); // a name that matches no account
    th.recordSuccess(ip, "me");
    assert.equal(th.ipFailures(ip), 9, "other accounts' failures and unknown names keep counting");
    assert.equal(th.accountIpFailures("me", ip), 0);
    th.recordFailure(ip, "victim1");
    assert.equal(th.isBlocked(ip), true, "the tenth failure blocks the IP despite the success");
    assert.equal(th.isLocked("victim1", ip), true);
    th.recordSuccess(ip, "me");
    assert.equal(th.isBlocked(ip), true);
  });

  test("a limit of 0 disables that verdict", () => {
    const { th } = setup({ maxFailuresPerIp: 0, maxFailuresPerAccountIp: 0 });
    for (let i = 0; i < 50; i++) th.recordFailure("192.0.2.1", "tim");
    assert.equal(th.isBlocked("192.0.2.1"), false);
    assert.equal(th.isLocked("tim", "192.0.2.1"), false);
    assert.equal(th.delayMsFor("192.0.2.1"), 16000);
  });

  test("a success from one IP leaves the account's counter from other IPs alone", () => {
    const { th } = setup({ maxFailuresPerIp: 3, maxFailuresPerAccountIp: 3 });
    for (let i = 0; i < 3; i++) th.recordFailure("192.0.2.1", "tim");
    for (let i = 0; i < 3; i++) th.recordFailure("192.0.2.2", "tim");
    th.recordSuccess("192.0.2.1", "tim");
    assert.equal(th.isBlocked("192.0.2.1"), false);
    assert.equal(th.ipFailures("192.0.2.1"), 0);
    assert.equal(th.isLocked("tim", "192.0.2.2"), true);
    assert.ok(th.accountFailures("tim") >= 3, "the distributed counter (delays) is kept");
  });

  test("failure without an existing account counts only against the IP", () => {
    const { th } = setup();
    th.recordFailure("192.0.2.1");
    th.recordFailure("192.0.2.1", "");
    assert.equal(th.ipFailures("192.0.2.1"), 2);
    assert.deepEqual(th.size, { ips: 1, accounts: 0, pairs: 0 });
  });

  test("IPv6 addresses in one /64 share a counter", () => {
    const { th } = setup({ maxFailuresPerIp: 2 });
    th.recordFailure("2001:db8:1:2::1");
    th.recordFailure("2001:db8:1:2:ffff::9");
    assert.equal(th.isBlocked("2001:db8:1:2::abcd"), true);
    assert.equal(th.isBlocked("2001:db8:1:3::1"), false);
  });

  const sessions: [number | undefined, number, boolean][] = [
    [undefined, 2, false],
    [undefined, 3, true],
    [5, 4, false],
    [5, 5, true],
    [1, 2, false], // clamped up to 3: RFC 4954 4 says not before 3 failures
    [1, 3, true],
  ];
  for (const [limit, failures, want] of sessions) {
    test(`shouldDisconnect(${failures}) with limit ${limit ?? "default"} is ${want}`, () => {
      const { th } = setup(limit === undefined ? {} : { sessionFailuresBeforeDisconnect: limit });
      assert.equal(th.shouldDisconnect(failures), want);
    });
  }
});

describe("AuthThrottle memory bounds", () => {
  test("evicts the least recently touched keys beyond maxTrackedKeys", () => {
    const { th } = setup({ maxTrackedKeys: 3 });
    th.recordFailure("192.0.2.1", "a");
    th.recordFailure("192.0.2.2", "b");
    th.recordFailure("192.0.2.3", "c");
    th.recordFailure("192.0.2.1", "a"); // touch: now most recent
    th.recordFailure("192.0.2.4", "d"); // evicts .2 / b
    assert.deepEqual(th.size, { ips: 3, accounts: 3, pairs: 3 });
    assert.equal(th.ipFailures("192.0.2.2"), 0);
    assert.equal(th.ipFailures("192.0.2.1"), 2);
    assert.equal(th.accountFailures("b"), 0);
    assert.equal(th.accountFailures("a"), 2);
  });

  test("holds a bounded number of keys under a flood", () => {
    const { th } = setup({ maxTrackedKeys: 100 });
    for (let i = 0; i < 10_000; i++) th.recordFailure(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, `u${i}`);
    assert.deepEqual(th.size, { ips: 100, accounts: 100, pairs: 100 });
  });

  test("prune drops fully expired keys", () => {
    const { clock, th } = setup({ windowMs: 100 });
    th.recordFailure("192.0.2.1", "a");
    clock.advance(50);
    th.recordFailure("192.0.2.2", "b");
    clock.advance(60);
    th.prune();
    assert.deepEqual(th.size, { ips: 1, accounts: 1, pairs: 1 });
  });
});

describe("AuthThrottle options", () => {
  test("defaults are filled in", () => {
    const { th } = setup();
    assert.deepEqual(th.options, DEFAULT_AUTH_THROTTLE_OPTIONS);
  });

  const bad: [string, AuthThrottleOptions][] = [
    ["negative window", { windowMs: -1 }],
    ["NaN delay", { baseDelayMs: Number.NaN }],
    ["infinite cap", { maxDelayMs: Number.POSITIVE_INFINITY }],
    ["zero tracked keys", { maxTrackedKeys: 0 }],
  ];
  for (const [name, options] of bad) {
    test(`rejects ${name}`, () => {
      assert.throws(() => new AuthThrottle(new ManualClock(1_000_000), options), RangeError);
    });
  }
});

describe("throttleKeyForIp", () => {
  const cases: [string, string][] = [
    ["192.0.2.1", "192.0.2.1"],
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0DB8:0000:0001:1:2:3:4", "2001:db8:0:1::/64"],
    ["[fe80::1%eth0]", "fe80:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["not an address", "not an address"],
    ["1:2:3", "1:2:3"],
    ["1::2::3", "1::2::3"],
  ];
  for (const [input, want] of cases) {
    test(`${input} → ${want}`, () => {
      assert.equal(throttleKeyForIp(input), want);
    });
  }
});
