// Every HTTP endpoint and error path through app.request(), against a real SQLite store.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { credentialOf, isLoopbackHost, tokensEqual } from "../../src/http/auth.ts";
import type { StatusReport } from "../../src/http/status.ts";
import { appFor, BEARER, seed, T0, TOKEN } from "./_helpers.ts";

async function json(response: Response): Promise<Record<string, unknown>> {
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  return await response.json() as Record<string, unknown>;
}

async function expectError(response: Response, status: number, pattern: RegExp): Promise<void> {
  assert.equal(response.status, status);
  const body = await json(response);
  assert.equal(typeof body.error, "string");
  assert.match(body.error as string, pattern);
}

const basic = (password: string) => ({ Authorization: `Basic ${btoa(`any:${password}`)}` });

describe("health and readiness", () => {
  test("/healthz is open even when a token is configured", async () => {
    const app = appFor(seed(), { token: TOKEN });
    const r = await app.request("/healthz");
    assert.equal(r.status, 200);
    assert.deepEqual(await json(r), { status: "ok" });
  });

  test("/readyz reports the database and listeners; 503 when a listener is not bound", async () => {
    const s = seed();
    const app = appFor(s);
    const ok = await app.request("/readyz");
    assert.equal(ok.status, 200);
    assert.deepEqual(await json(ok), { status: "ready", database: true, listeners: true });
    s.state.listeners[0]!.bound = false;
    const bad = await app.request("/readyz");
    assert.equal(bad.status, 503);
    assert.deepEqual(await json(bad), { status: "not-ready", database: true, listeners: false });
  });

  test("/readyz needs the token when one is configured", async () => {
    const app = appFor(seed(), { token: TOKEN });
    assert.equal((await app.request("/readyz")).status, 401);
    assert.equal((await app.request("/readyz", { headers: BEARER })).status, 200);
  });
});

describe("GET /status", () => {
  test("reports version, uptime, listeners, sessions, totals and every domain", async () => {
    const s = seed();
    const r = await appFor(s).request("/status");
    assert.equal(r.status, 200);
    const report = await r.json() as StatusReport;
    assert.equal(report.version, "9.9.9-test");
    assert.match(report.runtime, /^(deno|bun) /);
    assert.equal(report.now, new Date(T0).toISOString());
    assert.equal(report.uptimeSeconds, 90);
    assert.deepEqual(report.listeners.map((l) => [l.name, l.address, l.tls, l.bound]), [
      ["smtp", "0.0.0.0:25", "starttls", true],
      ["odmr", "[::]:366", "starttls", true],
      ["http", "127.0.0.1:8025", "none", true],
    ]);
    assert.deepEqual(report.sessions, { smtp: 2, odmr: 1 });
    // 4 messages stored (the failed one waits for its DSN); 4 recipients still queued.
    assert.equal(report.queue.messages, 4);
    assert.equal(report.queue.recipients, 4);
    assert.equal(report.queue.oldestAgeSeconds, 3600);
    assert.equal(report.queue.oldestQueuedAt, new Date(T0 - 3600_000).toISOString());
    assert.deepEqual(report.domains.map((d) => [d.name, d.account, d.queuedRecipients, d.oldestAgeSeconds]), [
      ["a.test", "alice", 2, 3600],
      ["b.test", "bob", 2, 3600],
      ["c.test", "alice", 0, null],
    ]);
    const b = report.domains[1]!;
    assert.ok(b.queuedBytes > 512 * 1024);
    assert.deepEqual(b.lastAtrn, {
      at: new Date(T0 - 120_000).toISOString(),
      peer: "203.0.113.9",
      delivered: 0,
    });
    assert.equal(b.lastFailure?.text, '<script>alert("x")</script> & more');
    assert.equal(report.recentAtrnSessions.length, 1);
    assert.deepEqual(report.recentAtrnSessions[0]!.domains, ["b.test"]);
  });

  test("ages follow the injected clock", async () => {
    const s = seed();
    const app = appFor(s);
    s.advance(60_000);
    const report = await (await app.request("/status")).json() as StatusReport;
    assert.equal(report.queue.oldestAgeSeconds, 3660);
    assert.equal(report.uptimeSeconds, 150);
  });
});

describe("authentication", () => {
  for (const path of ["/status", "/metrics", "/", "/readyz"]) {
    test(`${path}: token configured -> 401 without it or with a wrong one, 200 with Bearer or Basic`, async () => {
      const app = appFor(seed(), { token: TOKEN });
      const none = await app.request(path);
      await expectError(none, 401, /bearer token/i);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Basic realm="odmr-relay"/);
      await expectError(await app.request(path, { headers: { Authorization: "Bearer nope" } }), 401, /token/);
      await expectError(await app.request(path, { headers: basic("nope") }), 401, /token/);
      assert.equal((await app.request(path, { headers: BEARER })).status, 200);
      assert.equal((await app.request(path, { headers: basic(TOKEN) })).status, 200);
    });
  }

  test("no token configured: open on a loopback listener for loopback Host names only", async () => {
    const app = appFor(seed());
    for (const host of ["localhost", "localhost:8025", "127.0.0.1:8025", "[::1]:8025", "127.3.2.1"]) {
      assert.equal((await app.request("http://x/status", { headers: { Host: host } })).status, 200, host);
    }
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 must not read the API.
    await expectError(
      await app.request("http://x/status", { headers: { Host: "evil.example:8025" } }),
      403,
      /loopback/,
    );
  });

  test("no token configured and a public listener: read endpoints refuse with 403", async () => {
    const app = appFor(seed(), { listenerIsLoopback: false });
    await expectError(await app.request("/status"), 403, /httpToken/);
    assert.equal((await app.request("/healthz")).status, 200);
  });

  test("administration without a configured token answers 403 naming httpToken", async () => {
    const s = seed();
    const app = appFor(s);
    await expectError(await app.request("/queue"), 403, /httpToken/);
    await expectError(await app.request(`/queue/${s.ids.first}`, { method: "DELETE" }), 403, /httpToken/);
    await expectError(await app.request("/domains/a.test/hold", { method: "POST" }), 403, /httpToken/);
    assert.ok(s.store.getMessage(s.ids.first), "nothing was deleted");
  });

  test("administration takes Bearer only: no token, wrong token and Basic get 401", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const none = await app.request("/queue");
    await expectError(none, 401, /bearer token/i);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer /);
    await expectError(
      await app.request("/queue", { headers: { Authorization: `Bearer ${TOKEN}x` } }),
      401,
      /token/,
    );
    await expectError(await app.request("/queue", { headers: basic(TOKEN) }), 401, /token/);
    await expectError(
      await app.request(`/queue/${s.ids.first}/bounce`, { method: "POST", headers: basic(TOKEN) }),
      401,
      /token/,
    );
    assert.equal((await app.request("/queue", { headers: BEARER })).status, 200);
  });

  test("helpers: constant-time comparison, header parsing, loopback hosts", () => {
    assert.equal(tokensEqual("abc", "abc"), true);
    assert.equal(tokensEqual("abc", "abcd"), false);
    assert.equal(tokensEqual("", "abc"), false);
    assert.equal(credentialOf("Bearer xyz", false), "xyz");
    assert.equal(credentialOf("bearer   xyz ", false), "xyz");
    assert.equal(credentialOf(`Basic ${btoa("u:p:w")}`, true), "p:w");
    assert.equal(credentialOf(`Basic ${btoa("u:p")}`, false), null);
    assert.equal(credentialOf("Basic !!!", true), null);
    assert.equal(credentialOf("Basic Zm9v", true), null); // "foo": no colon
    assert.equal(credentialOf(undefined, true), null);
    assert.equal(credentialOf("Token xyz", true), null);
    assert.equal(isLoopbackHost("LOCALHOST."), true);
    assert.equal(isLoopbackHost("127.0.0.1"), true);
    assert.equal(isLoopbackHost("[::1]"), true);
    assert.equal(isLoopbackHost("128.0.0.1"), false);
    assert.equal(isLoopbackHost("localhost.evil.example"), false);
    assert.equal(isLoopbackHost(undefined), false);
  });
});

describe("GET /queue", () => {
  const get = (app: ReturnType<typeof appFor>, path: string) => app.request(path, { headers: BEARER });

  test("lists messages with their recipients, oldest first", async () => {
    const s = seed();
    const body = await json(await get(appFor(s, { token: TOKEN }), "/queue"));
    const messages = body.messages as {
      id: number;
      mailFrom: string;
      receivedAt: string;
      recipients: unknown[];
    }[];
    assert.deepEqual(messages.map((m) => m.id), [s.ids.first, s.ids.second, s.ids.big, s.ids.failed]);
    assert.equal(messages[0]!.receivedAt, new Date(T0 - 3600_000).toISOString());
    assert.equal(messages[0]!.recipients.length, 2);
    assert.equal(body.next, null);
  });

  test("filters by domain and by status", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const a = await json(await get(app, "/queue?domain=A.TEST"));
    assert.deepEqual((a.messages as { id: number }[]).map((m) => m.id), [s.ids.first, s.ids.second]);
    const failed = await json(await get(app, "/queue?status=failed"));
    assert.deepEqual((failed.messages as { id: number }[]).map((m) => m.id), [s.ids.failed]);
    const none = await json(await get(app, "/queue?domain=c.test&status=queued"));
    assert.deepEqual(none.messages, []);
  });

  test("paginates by id with limit and after", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const seen: number[] = [];
    let after = 0;
    for (let pages = 0; pages < 10; pages++) {
      const page = await json(await get(app, `/queue?limit=1&after=${after}`));
      const ids = (page.messages as { id: number }[]).map((m) => m.id);
      seen.push(...ids);
      if (page.next === null) break;
      assert.equal(page.next, ids[0]);
      after = page.next as number;
    }
    assert.deepEqual(seen, [s.ids.first, s.ids.second, s.ids.big, s.ids.failed]);
  });

  test("bad input gets 400, an unknown domain 404", async () => {
    const app = appFor(seed(), { token: TOKEN });
    await expectError(await get(app, "/queue?limit=0"), 400, /limit must be a whole number from 1 to 500/);
    await expectError(await get(app, "/queue?limit=501"), 400, /limit/);
    await expectError(await get(app, "/queue?limit=ten"), 400, /limit/);
    await expectError(await get(app, "/queue?after=-1"), 400, /after/);
    await expectError(
      await get(app, "/queue?status=delivered"),
      400,
      /status must be queued, failed or relayed/,
    );
    await expectError(await get(app, "/queue?domain=bad_domain!"), 400, /not a valid domain/);
    await expectError(await get(app, "/queue?sort=size"), 400, /Unknown query parameter "sort"/);
    await expectError(await get(app, "/queue?domain=nowhere.test"), 404, /No hosted domain nowhere\.test/);
  });
});

describe("GET /queue/:id and its body", () => {
  test("shows the envelope, unfolded headers and per-recipient state, without the body", async () => {
    const s = seed();
    const r = await appFor(s, { token: TOKEN }).request(`/queue/${s.ids.first}`, { headers: BEARER });
    const m = await json(r);
    assert.equal(m.id, s.ids.first);
    assert.equal(m.mailFrom, "sender@example.org");
    assert.equal(m.clientHelo, "client.test");
    assert.equal(m.receivedAt, new Date(T0 - 3600_000).toISOString());
    assert.equal("bodyInline" in m, false);
    assert.deepEqual(m.headers, [
      { name: "Received", value: "from client.test by relay.test; Fri, 2 Jan 2026 02:04:05 +0000" },
      { name: "Subject", value: "Hello <there>" },
      { name: "From", value: "sender@example.org" },
    ]);
    assert.equal(m.headersTruncated, false);
    const rcpts = m.recipients as { address: string; status: string; attempts: number; domain: string }[];
    assert.deepEqual(rcpts.map((x) => [x.address, x.domain, x.status, x.attempts]), [
      ["one@a.test", "a.test", "queued", 0],
      ["Two@b.test", "b.test", "queued", 0],
    ]);
  });

  test("a failed recipient shows its last reply", async () => {
    const s = seed();
    const m = await json(
      await appFor(s, { token: TOKEN }).request(`/queue/${s.ids.failed}`, { headers: BEARER }),
    );
    const [r] = m.recipients as { status: string; lastCode: number; lastText: string }[];
    assert.deepEqual([r!.status, r!.lastCode, r!.lastText], ["failed", 550, "already failed"]);
  });

  test("the body comes only from /body, streamed across chunks", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const r = await app.request(`/queue/${s.ids.big}/body`, { headers: BEARER });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "message/rfc822");
    assert.equal(await r.text(), s.bigBody);
    const m = await json(await app.request(`/queue/${s.ids.big}`, { headers: BEARER }));
    assert.deepEqual(m.headers, [{ name: "Subject", value: "big" }]);
    assert.equal(m.chunkCount, 3);
  });

  test("bad ids get 400, unknown ids 404", async () => {
    const app = appFor(seed(), { token: TOKEN });
    for (const id of ["abc", "0", "01", "-1", "1e3", "9999999999999999"]) {
      await expectError(await app.request(`/queue/${id}`, { headers: BEARER }), 400, /positive integer/);
    }
    await expectError(await app.request("/queue/999", { headers: BEARER }), 404, /No message 999/);
    await expectError(await app.request("/queue/999/body", { headers: BEARER }), 404, /No message 999/);
  });
});

describe("DELETE /queue/:id", () => {
  test("deletes the message and its recipients; the counters follow; a second delete is 404", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const r = await app.request(`/queue/${s.ids.first}`, { method: "DELETE", headers: BEARER });
    assert.deepEqual(await json(r), { deleted: s.ids.first });
    assert.equal(s.store.getMessage(s.ids.first), null);
    const report = await (await app.request("/status", { headers: BEARER })).json() as StatusReport;
    assert.equal(report.queue.messages, 3);
    assert.deepEqual(report.domains.map((d) => d.queuedRecipients), [1, 1, 0]);
    await expectError(
      await app.request(`/queue/${s.ids.first}`, { method: "DELETE", headers: BEARER }),
      404,
      /No message/,
    );
    await expectError(
      await app.request("/queue/x", { method: "DELETE", headers: BEARER }),
      400,
      /positive integer/,
    );
    assert.ok(s.logLines.some((l) => /message deleted by operator/.test(l)));
  });
});

describe("POST /queue/:id/bounce", () => {
  const bounce = (app: ReturnType<typeof appFor>, id: number | string, body?: string) =>
    app.request(`/queue/${id}/bounce`, {
      method: "POST",
      headers: { ...BEARER, "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body }),
    });

  test("fails every queued recipient, says the DSN is queued, and a repeat is 409", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const r = await bounce(app, s.ids.first, JSON.stringify({ reason: "Customer asked" }));
    assert.equal(r.status, 200);
    assert.deepEqual(await json(r), {
      id: s.ids.first,
      bounced: 2,
      reason: "Customer asked",
      dsn: "queued",
    });
    const m = s.store.getMessage(s.ids.first)!;
    assert.deepEqual(m.recipients.map((x) => [x.status, x.lastText]), [
      ["failed", "Customer asked"],
      ["failed", "Customer asked"],
    ]);
    await expectError(await bounce(app, s.ids.first), 409, /no queued recipients/);
  });

  test("without a body the default reason is used", async () => {
    const s = seed();
    const body = await json(await bounce(appFor(s, { token: TOKEN }), s.ids.second));
    assert.equal(body.reason, "Bounced by the relay operator");
  });

  test("bad bodies get 400, unknown ids 404", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    await expectError(await bounce(app, s.ids.first, "{not json"), 400, /must be JSON/);
    await expectError(await bounce(app, s.ids.first, "[1]"), 400, /JSON object/);
    await expectError(await bounce(app, s.ids.first, JSON.stringify({ reason: 5 })), 400, /reason/);
    await expectError(await bounce(app, s.ids.first, JSON.stringify({ reason: "a\nb" })), 400, /one line/);
    await expectError(
      await bounce(app, s.ids.first, JSON.stringify({ reason: "x".repeat(201) })),
      400,
      /200/,
    );
    await expectError(await bounce(app, "zero"), 400, /positive integer/);
    await expectError(await bounce(app, 424242), 404, /No message 424242/);
    assert.equal(s.store.getMessage(s.ids.first)!.recipients[0]!.status, "queued", "nothing changed");
  });
});

describe("domain hold and release", () => {
  test("hold and release show in /status", async () => {
    const s = seed();
    const app = appFor(s, { token: TOKEN });
    const held = await app.request("/domains/A.test/hold", { method: "POST", headers: BEARER });
    assert.deepEqual(await json(held), { domain: "a.test", hold: true });
    let report = await (await app.request("/status", { headers: BEARER })).json() as StatusReport;
    assert.equal(report.domains[0]!.hold, true);
    assert.equal(report.domains[0]!.queuedRecipients, 2, "held mail is kept");
    const released = await app.request("/domains/a.test/release", { method: "POST", headers: BEARER });
    assert.deepEqual(await json(released), { domain: "a.test", hold: false });
    report = await (await app.request("/status", { headers: BEARER })).json() as StatusReport;
    assert.equal(report.domains[0]!.hold, false);
  });

  test("unknown domains get 404, bad names 400", async () => {
    const app = appFor(seed(), { token: TOKEN });
    await expectError(
      await app.request("/domains/x.test/hold", { method: "POST", headers: BEARER }),
      404,
      /x\.test/,
    );
    await expectError(
      await app.request("/domains/bad_name/hold", { method: "POST", headers: BEARER }),
      400,
      /valid/,
    );
  });

  test("domain names are compared in A-label form; look-alikes are refused", async () => {
    const s = seed();
    s.store.addDomain("böb.test", "alice");
    const app = appFor(s, { token: TOKEN });
    const held = await app.request(`/domains/${encodeURIComponent("böb.test")}/hold`, {
      method: "POST",
      headers: BEARER,
    });
    assert.deepEqual(await json(held), { domain: "xn--bb-fka.test", hold: true });
    // The Kelvin sign would fold to "k" with toLowerCase: it is not a U-label, so it is refused.
    s.store.addDomain("kilo.test", "alice");
    await expectError(
      await app.request(`/domains/${encodeURIComponent("\u212Ailo.test")}/hold`, {
        method: "POST",
        headers: BEARER,
      }),
      400,
      /valid/,
    );
  });
});

describe("everything else", () => {
  test("unknown endpoints and wrong methods get a JSON 404", async () => {
    const app = appFor(seed(), { token: TOKEN });
    await expectError(await app.request("/nope", { headers: BEARER }), 404, /No such endpoint: GET \/nope/);
    await expectError(
      await app.request("/status", { method: "POST", headers: BEARER }),
      404,
      /POST \/status/,
    );
    await expectError(await app.request("/domains/a.test/hold", { headers: BEARER }), 404, /GET/);
  });

  test("an internal failure is a JSON 500 with the detail only in the log", async () => {
    const s = seed();
    const app = appFor(s);
    s.store.database.close();
    const r = await app.request("/status");
    await expectError(r, 500, /^Internal error/);
    assert.ok(s.logLines.some((l) => /http handler failed/.test(l)));
  });
});
