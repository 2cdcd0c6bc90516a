import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.ts";
import { DomainLeases } from "../../src/queue/leases.ts";

const TTL = 60_000;

function setup(): { clock: ManualClock; leases: DomainLeases } {
  const clock = new ManualClock(1_000_000);
  return { clock, leases: new DomainLeases(clock) };
}

const sorted = (domains: string[]) => [...domains].sort();

describe("DomainLeases acquisition", () => {
  test("free domains are taken, all of them, for their owner", () => {
    const { leases } = setup();
    assert.equal(leases.tryAcquire(["a.test", "b.test", "c.test"], "s1", TTL), true);
    assert.deepEqual(sorted(leases.busyDomains()), ["a.test", "b.test", "c.test"]);
  });

  test("another session is refused a domain that is held", () => {
    const { leases } = setup();
    assert.equal(leases.tryAcquire(["a.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
  });

  test("all or nothing: one held domain refuses the whole request and takes none of the others", () => {
    const { leases } = setup();
    assert.equal(leases.tryAcquire(["b.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["a.test", "b.test", "c.test"], "s2", TTL), false);
    assert.deepEqual(leases.busyDomains(), ["b.test"], "a.test and c.test were not taken");
    // A third session can still have the domains the refused one asked for.
    assert.equal(leases.tryAcquire(["a.test", "c.test"], "s3", TTL), true);
    assert.deepEqual(sorted(leases.busyDomains()), ["a.test", "b.test", "c.test"]);
  });

  test("the held domain may be last in the list: nothing before it is taken either", () => {
    const { leases } = setup();
    assert.equal(leases.tryAcquire(["z.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["a.test", "m.test", "z.test"], "s2", TTL), false);
    assert.equal(leases.tryAcquire(["a.test"], "s3", TTL), true);
    assert.equal(leases.tryAcquire(["m.test"], "s3", TTL), true);
  });

  test("disjoint domains go to different sessions at the same time", () => {
    const { leases } = setup();
    assert.equal(leases.tryAcquire(["a.test", "b.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["c.test"], "s2", TTL), true);
    assert.deepEqual(sorted(leases.busyDomains()), ["a.test", "b.test", "c.test"]);
  });
});

describe("DomainLeases owners", () => {
  test("the owner may take its own domains again (renewal), and add more", () => {
    const { leases } = setup();
    assert.equal(leases.tryAcquire(["a.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["a.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["a.test", "b.test"], "s1", TTL), true);
    assert.equal(leases.tryAcquire(["b.test"], "s2", TTL), false, "b.test now belongs to s1");
  });

  test("release frees every domain of that owner and nobody else's", () => {
    const { leases } = setup();
    leases.tryAcquire(["a.test", "b.test"], "s1", TTL);
    leases.tryAcquire(["c.test"], "s2", TTL);
    leases.release("s1");
    assert.deepEqual(leases.busyDomains(), ["c.test"]);
    assert.equal(leases.tryAcquire(["a.test", "b.test"], "s3", TTL), true);
    assert.equal(leases.tryAcquire(["c.test"], "s3", TTL), false, "s2 still holds c.test");
  });

  test("releasing an owner that holds nothing changes nothing", () => {
    const { leases } = setup();
    leases.tryAcquire(["a.test"], "s1", TTL);
    leases.release("nobody");
    assert.deepEqual(leases.busyDomains(), ["a.test"]);
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
  });

  test("an old owner's release does not free a domain someone else took after its lease expired", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test"], "s1", 1_000);
    clock.advance(1_000);
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), true);
    leases.release("s1");
    assert.equal(leases.tryAcquire(["a.test"], "s3", TTL), false, "s2 still holds a.test");
    assert.deepEqual(leases.busyDomains(), ["a.test"]);
  });
});

describe("DomainLeases expiry and renewal", () => {
  test("a lease keeps others out until exactly its ttl has passed", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test"], "s1", 1_000);
    clock.advance(999);
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
    clock.advance(1);
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), true, "expired at ttl: free again");
  });

  test("an expired lease is not busy", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test"], "s1", 1_000);
    leases.tryAcquire(["b.test"], "s2", 5_000);
    clock.advance(999);
    assert.deepEqual(sorted(leases.busyDomains()), ["a.test", "b.test"]);
    clock.advance(1);
    assert.deepEqual(leases.busyDomains(), ["b.test"]);
  });

  test("renewing pushes the expiry to ttl from the renewal", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test", "b.test"], "s1", 1_000);
    clock.advance(800);
    assert.equal(leases.tryAcquire(["a.test", "b.test"], "s1", 1_000), true);
    clock.advance(500); // 1300 ms after the first take: past the first expiry, not the renewed one
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
    assert.deepEqual(sorted(leases.busyDomains()), ["a.test", "b.test"]);
    clock.advance(500); // exactly 1000 ms after the renewal
    assert.equal(leases.tryAcquire(["a.test", "b.test"], "s2", TTL), true);
  });

  test("an owner whose lease expired can take it back when nobody else did", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test"], "s1", 1_000);
    clock.advance(5_000);
    assert.deepEqual(leases.busyDomains(), []);
    assert.equal(leases.tryAcquire(["a.test"], "s1", 1_000), true);
    assert.deepEqual(leases.busyDomains(), ["a.test"]);
  });

  test("with one domain expired and another live, the whole request is still refused", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test"], "s1", 1_000);
    leases.tryAcquire(["b.test"], "s2", 10_000);
    clock.advance(2_000);
    assert.equal(leases.tryAcquire(["a.test", "b.test"], "s3", TTL), false);
    assert.equal(leases.tryAcquire(["a.test"], "s4", TTL), true, "a.test was not taken by s3");
  });
});

describe("DomainLeases idle marking", () => {
  test("an idle lease is not busy but still keeps other sessions out", () => {
    const { leases } = setup();
    leases.tryAcquire(["a.test", "b.test"], "s1", TTL);
    leases.setIdle("s1", true);
    assert.deepEqual(leases.busyDomains(), []);
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
  });

  test("marking busy again puts the domains back among the busy ones", () => {
    const { leases } = setup();
    leases.tryAcquire(["a.test", "b.test"], "s1", TTL);
    leases.setIdle("s1", true);
    leases.setIdle("s1", false);
    assert.deepEqual(sorted(leases.busyDomains()), ["a.test", "b.test"]);
  });

  test("idle marking touches only that owner's leases", () => {
    const { leases } = setup();
    leases.tryAcquire(["a.test"], "s1", TTL);
    leases.tryAcquire(["b.test"], "s2", TTL);
    leases.setIdle("s1", true);
    assert.deepEqual(leases.busyDomains(), ["b.test"]);
    leases.setIdle("nobody", true);
    assert.deepEqual(leases.busyDomains(), ["b.test"]);
  });

  test("renewal keeps a watching session's lease idle", () => {
    const { clock, leases } = setup();
    leases.tryAcquire(["a.test"], "s1", 1_000);
    leases.setIdle("s1", true);
    clock.advance(500);
    assert.equal(leases.tryAcquire(["a.test"], "s1", 1_000), true);
    assert.deepEqual(leases.busyDomains(), []);
    clock.advance(900); // past the first expiry: the renewed lease still keeps others out
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
  });

  test("a released idle lease frees the domain", () => {
    const { leases } = setup();
    leases.tryAcquire(["a.test"], "s1", TTL);
    leases.setIdle("s1", true);
    leases.release("s1");
    assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), true);
    assert.deepEqual(leases.busyDomains(), ["a.test"]);
  });
});

test("DomainLeases defaults to the system clock", () => {
  const leases = new DomainLeases();
  assert.equal(leases.tryAcquire(["a.test"], "s1", TTL), true);
  assert.deepEqual(leases.busyDomains(), ["a.test"]);
  assert.equal(leases.tryAcquire(["a.test"], "s2", TTL), false);
});

describe("DomainLeases idle marks", () => {
  test("a new owner of an expired idle lease starts busy; only the same owner's renewal keeps idle", () => {
    const { clock, leases } = setup();
    assert.equal(leases.tryAcquire(["a.test"], "s1", 1000), true);
    leases.setIdle("s1", true);
    assert.equal(leases.tryAcquire(["a.test"], "s1", 1000), true, "s1 renews");
    assert.deepEqual(leases.busyDomains(), [], "still idle after its own renewal");
    clock.advance(1000);
    assert.equal(leases.tryAcquire(["a.test"], "s2", 1000), true);
    assert.deepEqual(leases.busyDomains(), ["a.test"], "s2 has mail in flight");
  });
});
