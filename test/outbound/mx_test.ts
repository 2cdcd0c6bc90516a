import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type MxResolverOptions, orderMx, resolveMx } from "../../src/outbound/mx.ts";
import { runtimeInfo } from "../../src/runtime/runtime.ts";
import { type FakeDns, startFakeDns, TYPE_A, TYPE_AAAA, TYPE_MX } from "../support/fake_dns.ts";

/** Deno reports SERVFAIL and REFUSED as ENOTFOUND (measured; see src/outbound/mx.ts). */
const CONFLATES_SERVFAIL = runtimeInfo().name === "deno";

describe("resolveMx against a loopback DNS server", () => {
  let dns: FakeDns;
  let opts: MxResolverOptions;

  before(async () => {
    dns = await startFakeDns({
      "order.test": {
        mx: [
          { preference: 20, exchange: "mx-c.order.test" },
          { preference: 5, exchange: "MX-A.order.test." },
          { preference: 10, exchange: "mx-b.order.test" },
        ],
      },
      "mx-a.order.test": { a: ["127.0.0.2"], aaaa: ["::1"] },
      "mx-b.order.test": { a: ["127.0.0.3", "127.0.0.4"] },
      "mx-c.order.test": { aaaa: ["::1"] },
      "equal.test": {
        mx: [{ preference: 10, exchange: "one.equal.test" }, { preference: 10, exchange: "two.equal.test" }],
      },
      "one.equal.test": { a: ["127.0.0.11"] },
      "two.equal.test": { a: ["127.0.0.12"] },
      "implicit.test": { a: ["127.0.0.5"], aaaa: ["::1"] },
      "v6only.test": { aaaa: ["::1"] },
      "null.test": { mx: [{ preference: 0, exchange: "." }], a: ["127.0.0.6"] },
      "dangling.test": { mx: [{ preference: 10, exchange: "gone.dangling.test" }] },
      "partial.test": {
        mx: [{ preference: 10, exchange: "gone.partial.test" }, {
          preference: 20,
          exchange: "ok.partial.test",
        }],
      },
      "ok.partial.test": { a: ["127.0.0.7"] },
      "broken.test": { all: "servfail" },
      "refused.test": { all: "refused" },
      "slowmx.test": { mx: "timeout", a: ["127.0.0.8"] },
      "hang.test": { all: "timeout" },
    });
    opts = { dnsServers: [dns.server], timeoutMs: 200, tries: 1, deadlineMs: 5000 };
  });
  after(() => dns.close());

  test("MX hosts in preference order, each with its A then AAAA addresses (RFC 5321 5.1)", async () => {
    const result = await resolveMx("order.test", opts);
    assert.deepEqual(result, {
      kind: "hosts",
      hosts: [
        { name: "mx-a.order.test", addresses: ["127.0.0.2", "::1"], preference: 5 },
        { name: "mx-b.order.test", addresses: ["127.0.0.3", "127.0.0.4"], preference: 10 },
        { name: "mx-c.order.test", addresses: ["::1"], preference: 20 },
      ],
    });
  });

  test("equal preferences come in random order (injected random)", async () => {
    const names = async (randoms: number[]) => {
      const result = await resolveMx("equal.test", { ...opts, random: () => randoms.shift() ?? 0 });
      assert.equal(result.kind, "hosts");
      return result.kind === "hosts" ? result.hosts.map((h) => h.name) : [];
    };
    assert.deepEqual(await names([0.1, 0.9]), ["one.equal.test", "two.equal.test"]);
    assert.deepEqual(await names([0.9, 0.1]), ["two.equal.test", "one.equal.test"]);
  });

  test("orderMx keeps a duplicate exchange once, at its best preference", () => {
    const records = [
      { exchange: "b.test", priority: 10 },
      { exchange: "a.test", priority: 20 },
      { exchange: "B.test.", priority: 5 },
    ];
    assert.deepEqual(orderMx(records, () => 0), [{ name: "b.test", preference: 5 }, {
      name: "a.test",
      preference: 20,
    }]);
  });

  test("no MX: the domain's own A/AAAA is the implicit MX (ENOTFOUND for MX is not the end)", async () => {
    assert.deepEqual(await resolveMx("implicit.test", opts), {
      kind: "hosts",
      hosts: [{ name: "implicit.test", addresses: ["127.0.0.5", "::1"], preference: 0 }],
    });
    assert.deepEqual(await resolveMx("v6only.test", opts), {
      kind: "hosts",
      hosts: [{ name: "v6only.test", addresses: ["::1"], preference: 0 }],
    });
  });

  test("NXDOMAIN is permanent, decided only after the A and AAAA lookups", async () => {
    const before = dns.queries.length;
    const result = await resolveMx("Nowhere.TEST", { ...opts, notFoundIsAmbiguous: false });
    assert.equal(result.kind, "permanent");
    assert.match(result.kind === "permanent" ? result.reason : "", /^5\.4\.4 Domain nowhere\.test has no MX/);
    const asked = dns.queries.slice(before).map((q) => q.type).sort();
    assert.deepEqual(asked, [TYPE_A, TYPE_MX, TYPE_AAAA]);
  });

  test("where NXDOMAIN cannot be told from a failing server (Deno), not found is temporary", async () => {
    const result = await resolveMx("nowhere.test", { ...opts, notFoundIsAmbiguous: true });
    assert.equal(result.kind, "temporary");
    assert.match(result.kind === "temporary" ? result.reason : "", /or DNS failing/);
  });

  test("a null MX is permanent and never falls back to the A record (RFC 7505)", async () => {
    const before = dns.queries.length;
    const result = await resolveMx("null.test", opts);
    assert.deepEqual(result, {
      kind: "permanent",
      reason: "5.1.10 Domain null.test accepts no mail (null MX, RFC 7505)",
      nullMx: true,
    });
    assert.deepEqual(dns.queries.slice(before), [{ name: "null.test", type: TYPE_MX }]);
  });

  test("MX hosts without addresses: skipped; all of them -> permanent", async () => {
    const partial = await resolveMx("partial.test", opts);
    assert.deepEqual(partial, {
      kind: "hosts",
      hosts: [{ name: "ok.partial.test", addresses: ["127.0.0.7"], preference: 20 }],
    });
    const dangling = await resolveMx("dangling.test", { ...opts, notFoundIsAmbiguous: false });
    assert.equal(dangling.kind, "permanent");
    assert.match(
      dangling.kind === "permanent" ? dangling.reason : "",
      /^5\.4\.4 No MX host of dangling\.test/,
    );
  });

  test("SERVFAIL and REFUSED are temporary (Deno cannot tell them from NXDOMAIN)", async () => {
    for (const domain of ["broken.test", "refused.test"]) {
      const result = await resolveMx(domain, opts);
      if (CONFLATES_SERVFAIL) {
        // Deno: ENOTFOUND for every lookup, so "not found" is treated as temporary there (a DSN is
        // retried until its lifetime ends rather than dropped because of a broken resolver).
        assert.equal(result.kind, "temporary", domain);
      } else {
        assert.equal(result.kind, "temporary", domain);
        assert.match(result.kind === "temporary" ? result.reason : "", /^4\.4\.3 MX lookup for .* failed: E/);
      }
    }
  });

  test("a server that never answers is temporary, within the resolver's bound", async () => {
    const start = Date.now();
    const result = await resolveMx("hang.test", opts);
    assert.equal(result.kind, "temporary");
    assert.match(
      result.kind === "temporary" ? result.reason : "",
      /^4\.4\.3 MX lookup for hang\.test failed: ETIMEOUT/,
    );
    assert.ok(Date.now() - start < 4000, `took ${Date.now() - start} ms`);
    // An MX timeout is not "no MX": the A record of the domain must not be used.
    assert.equal((await resolveMx("slowmx.test", opts)).kind, "temporary");
  });

  test("our own deadline bounds the whole resolution", async () => {
    const start = Date.now();
    const result = await resolveMx("hang.test", { ...opts, timeoutMs: 2000, tries: 3, deadlineMs: 300 });
    assert.deepEqual(result, {
      kind: "temporary",
      reason: "4.4.3 DNS lookups for hang.test took longer than 300 ms",
    });
    assert.ok(Date.now() - start < 1500, `took ${Date.now() - start} ms`);
  });

  test("address literals go direct, without DNS; bad names are permanent", async () => {
    const before = dns.queries.length;
    assert.deepEqual(await resolveMx("[127.0.0.9]", opts), {
      kind: "hosts",
      hosts: [{ name: "[127.0.0.9]", addresses: ["127.0.0.9"], preference: 0 }],
    });
    assert.deepEqual(await resolveMx("[IPv6:::1]", opts), {
      kind: "hosts",
      hosts: [{ name: "[IPv6:::1]", addresses: ["::1"], preference: 0 }],
    });
    assert.equal(dns.queries.length, before);
    for (const bad of ["[300.1.1.1]", "[tag:stuff]", "no_underscore.test", ""]) {
      const result = await resolveMx(bad, opts);
      assert.equal(result.kind, "permanent", bad);
      assert.match(result.kind === "permanent" ? result.reason : "", /^5\.1\.2 /);
    }
  });
});
