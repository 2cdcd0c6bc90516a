import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { NewMailSignal } from "../../src/queue/new_mail.ts";

// Waits that must be woken use a long timeout: a wrong answer shows up as `false` after it, never as a
// hang. Waits that must time out use a short one.
const LONG = 5_000;
const SHORT = 20;

describe("NewMailSignal marks", () => {
  test("a domain never notified is at 0; each notify moves its counter", () => {
    const signal = new NewMailSignal();
    assert.deepEqual([...signal.mark(["a.test"])], [["a.test", 0]]);
    signal.notify(["a.test"]);
    signal.notify(["a.test", "b.test"]);
    assert.deepEqual([...signal.mark(["a.test", "b.test", "c.test"])], [["a.test", 2], ["b.test", 1], [
      "c.test",
      0,
    ]]);
  });

  test("a mark is a snapshot: later mail does not change it", () => {
    const signal = new NewMailSignal();
    const mark = signal.mark(["a.test"]);
    signal.notify(["a.test"]);
    assert.equal(mark.get("a.test"), 0);
    assert.equal(signal.mark(["a.test"]).get("a.test"), 1);
  });
});

describe("NewMailSignal waiting", () => {
  test("mail committed between the mark and the wait is not missed: the wait answers true at once", async () => {
    const signal = new NewMailSignal();
    const mark = signal.mark(["a.test", "b.test"]);
    signal.notify(["b.test"]);
    const woken = signal.wait(mark, LONG);
    assert.equal(signal.waiting, 0, "nobody had to wait");
    assert.equal(await woken, true);
  });

  test("new mail for a marked domain wakes the waiter", async () => {
    const signal = new NewMailSignal();
    const woken = signal.wait(signal.mark(["a.test", "b.test"]), LONG);
    assert.equal(signal.waiting, 1);
    signal.notify(["b.test"]);
    assert.equal(signal.waiting, 0);
    assert.equal(await woken, true);
  });

  test("mail for another domain does not wake it", async () => {
    const signal = new NewMailSignal();
    const woken = signal.wait(signal.mark(["a.test"]), LONG);
    signal.notify(["b.test", "c.test"]);
    assert.equal(signal.waiting, 1, "still waiting");
    signal.notify(["a.test"]);
    assert.equal(await woken, true);
    assert.equal(signal.waiting, 0);
  });

  test("one notify wakes every waiter of that domain and only those", async () => {
    const signal = new NewMailSignal();
    const first = signal.wait(signal.mark(["a.test"]), LONG);
    const second = signal.wait(signal.mark(["a.test", "b.test"]), LONG);
    const other = signal.wait(signal.mark(["c.test"]), LONG);
    assert.equal(signal.waiting, 3);
    signal.notify(["a.test"]);
    assert.deepEqual(await Promise.all([first, second]), [true, true]);
    assert.equal(signal.waiting, 1);
    signal.notify(["c.test"]);
    assert.equal(await other, true);
    assert.equal(signal.waiting, 0);
  });

  test("a notify naming several of a waiter's domains wakes it once, cleanly", async () => {
    const signal = new NewMailSignal();
    const woken = signal.wait(signal.mark(["a.test", "b.test"]), LONG);
    signal.notify(["a.test", "b.test", "a.test"]);
    assert.equal(await woken, true);
    assert.equal(signal.waiting, 0);
  });

  test("without new mail the wait ends false after timeoutMs and leaves no waiter behind", async () => {
    const signal = new NewMailSignal();
    const started = performance.now();
    const woken = await signal.wait(signal.mark(["a.test"]), SHORT);
    assert.equal(woken, false);
    assert.ok(performance.now() - started >= SHORT - 5, "it waited");
    assert.equal(signal.waiting, 0);
    // A later notify finds nobody to wake and only moves the counter.
    signal.notify(["a.test"]);
    assert.equal(signal.mark(["a.test"]).get("a.test"), 1);
  });

  test("an abort ends the wait false at once", async () => {
    const signal = new NewMailSignal();
    const stop = new AbortController();
    const woken = signal.wait(signal.mark(["a.test"]), LONG, stop.signal);
    assert.equal(signal.waiting, 1);
    stop.abort();
    assert.equal(signal.waiting, 0);
    assert.equal(await woken, false);
  });

  test("an already aborted signal answers false without waiting", async () => {
    const signal = new NewMailSignal();
    const stop = new AbortController();
    stop.abort();
    const woken = signal.wait(signal.mark(["a.test"]), LONG, stop.signal);
    assert.equal(signal.waiting, 0);
    assert.equal(await woken, false);
  });

  test("mail already there wins over an aborted signal", async () => {
    const signal = new NewMailSignal();
    const mark = signal.mark(["a.test"]);
    signal.notify(["a.test"]);
    const stop = new AbortController();
    stop.abort();
    assert.equal(await signal.wait(mark, LONG, stop.signal), true);
  });

  test("a fresh mark after waking waits for the next mail", async () => {
    const signal = new NewMailSignal();
    signal.notify(["a.test"]);
    const mark = signal.mark(["a.test"]);
    const woken = signal.wait(mark, SHORT);
    assert.equal(signal.waiting, 1, "the old mail does not count against the new mark");
    assert.equal(await woken, false);
  });
});

describe("NewMailSignal wake-all", () => {
  test("notifyAll wakes every waiter, whatever its domains", async () => {
    const signal = new NewMailSignal();
    const a = signal.wait(signal.mark(["a.test"]), LONG);
    const b = signal.wait(signal.mark(["b.test", "c.test"]), LONG);
    assert.equal(signal.waiting, 2);
    signal.notifyAll();
    assert.deepEqual(await Promise.all([a, b]), [true, true]);
    assert.equal(signal.waiting, 0);
  });

  test("a mark taken before notifyAll is stale, also for domains never notified", async () => {
    const signal = new NewMailSignal();
    const mark = signal.mark(["never.test"]);
    signal.notifyAll();
    assert.equal(await signal.wait(mark, LONG), true, "answers at once");
    const fresh = signal.mark(["never.test"]);
    assert.equal(await signal.wait(fresh, SHORT), false, "a fresh mark waits for the next mail");
  });

  test("per-domain notifies still count after a notifyAll", async () => {
    const signal = new NewMailSignal();
    signal.notifyAll();
    const mark = signal.mark(["a.test", "b.test"]);
    const woken = signal.wait(mark, LONG);
    signal.notify(["b.test"]);
    assert.equal(await woken, true);
    assert.equal(await signal.wait(signal.mark(["a.test"]), SHORT), false);
  });
});
