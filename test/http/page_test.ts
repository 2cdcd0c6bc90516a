// The status page at "/" through app.request(): content, escaping, phone and no-asset rules.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatAge, formatBytes } from "../../src/http/format.ts";
import { appFor, seed } from "./_helpers.ts";

describe("GET / (status page)", () => {
  test("renders every domain with counts, bytes, oldest age, last collection and a bar", async () => {
    const r = await appFor(seed()).request("/");
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/html/);
    const page = await r.text();
    for (const name of ["a.test", "b.test", "c.test", "alice", "bob"]) assert.ok(page.includes(name), name);
    assert.match(page, /<b id="total-recipients">4<\/b>/);
    assert.match(page, /data-label="Oldest">1h 0m</);
    assert.match(page, /2m ago <span class="muted">from 203\.0\.113\.9, 0 delivered/);
    // Bars are proportional to the largest queue: a.test and b.test both hold 2.
    assert.equal((page.match(/style="width:100%"/g) ?? []).length, 2);
    assert.equal((page.match(/style="width:0%"/g) ?? []).length, 1);
  });

  test("escapes what came from the network", async () => {
    const page = await (await appFor(seed()).request("/")).text();
    assert.ok(!page.includes("<script>"), "no raw script tag");
    assert.ok(page.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"));
  });

  test("is phone-readable, refreshes itself and loads nothing external", async () => {
    const r = await appFor(seed()).request("/");
    const page = await r.text();
    assert.match(page, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
    assert.match(page, /<meta http-equiv="refresh" content="30">/);
    assert.match(page, /@media \(max-width: 640px\)/);
    assert.ok(!/\b(src|href)="(https?:)?\/\//.test(page), "no external URLs");
    assert.ok(!/<script|<link/.test(page), "no scripts or stylesheets to fetch");
    assert.match(r.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    assert.ok(!page.includes("&quot;Segoe UI&quot;"), "the inline CSS is not HTML-escaped");
  });

  test("a held domain is marked and an empty relay says how to add a domain", async () => {
    const s = seed();
    s.store.setDomainHold("a.test", true);
    assert.match(
      await (await appFor(s).request("/")).text(),
      /<b>a\.test<\/b>\s*<span class="held">held<\/span>/,
    );
    const empty = seed();
    for (const id of Object.values(empty.ids)) empty.store.deleteMessage(id);
    for (const d of ["a.test", "b.test", "c.test"]) empty.store.removeDomain(d);
    assert.match(await (await appFor(empty).request("/")).text(), /No hosted domains yet/);
  });

  test("formatting helpers", () => {
    assert.equal(formatBytes(0), "0 B");
    assert.equal(formatBytes(1536), "1.5 KiB");
    assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MiB");
    assert.equal(formatAge(59.9), "59s");
    assert.equal(formatAge(600), "10m");
    assert.equal(formatAge(3 * 3600 + 300), "3h 5m");
    assert.equal(formatAge(2 * 86400 + 4 * 3600), "2d 4h");
    assert.equal(formatAge(-5), "0s");
  });
});
