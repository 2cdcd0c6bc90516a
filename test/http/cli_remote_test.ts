// The remote CLI commands against a real relay app served on 127.0.0.1 (port 0) by the runtime's
// HTTP server, run in-process through runCli with a captured io.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "../../src/cli/run.ts";
import type { StatusReport } from "../../src/http/status.ts";
import { type HttpServer, serveHttp } from "../../src/runtime/http_serve.ts";
import { appFor, seed, type Seeded, TOKEN } from "./_helpers.ts";

async function cli(args: string[], env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    readStdin: () => Promise.resolve(""),
    env,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("remote CLI commands over HTTP", () => {
  let s: Seeded;
  let server: HttpServer;
  let url: string;
  // The token reaches the CLI through the environment (config httpToken), never a flag.
  let env: Record<string, string>;

  before(async () => {
    s = seed();
    server = await serveHttp("127.0.0.1", 0, appFor(s, { token: TOKEN }).fetch);
    url = `http://127.0.0.1:${server.port}`;
    env = { ODMR_RELAY_HTTP_TOKEN: TOKEN };
  });
  after(async () => {
    await server.stop();
    s.store.database.close();
  });

  test("status: a human summary and table, or --json", async () => {
    const human = await cli(["status", "--http-url", url], env);
    assert.equal(human.code, 0, human.err);
    assert.match(human.out, /^odmr-relay 9\.9\.9-test \((deno|bun) /);
    assert.match(human.out, /^node: \S+ \(sqlite \S+\)$/m);
    assert.match(human.out, /queue: 4 message\(s\), 4 recipient\(s\)/);
    assert.match(human.out, /DOMAIN\s+ACCOUNT\s+QUEUED\s+BYTES\s+OLDEST\s+LAST ATRN\s+HOLD/);
    assert.match(human.out, /a\.test\s+alice\s+2\s+\S+ B\s+1h 0m\s+never\s+-/);
    const json = await cli(["status", "--json", "--http-url", url], env);
    const report = JSON.parse(json.out) as StatusReport;
    assert.deepEqual(report.domains.map((d) => d.name), ["a.test", "b.test", "c.test"]);
  });

  test("the relay is found through the config's httpListen when --http-url is absent", async () => {
    const r = await cli(["status", "--json"], { ...env, ODMR_RELAY_HTTP_LISTEN: `127.0.0.1:${server.port}` });
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as StatusReport).queue.messages, 4);
  });

  test("queue list: table, filters, pagination hint and --json", async () => {
    const all = await cli(["queue", "list", "--http-url", url], env);
    assert.equal(all.code, 0, all.err);
    assert.match(all.out, /^ID\s+AGE\s+SIZE\s+FROM\s+RECIPIENTS/);
    assert.match(all.out, /one@a\.test, Two@b\.test/);
    assert.match(all.out, /<>\s+three@a\.test/);
    assert.match(all.out, /gone@c\.test \(failed\)/);
    const page = await cli(["queue", "list", "--limit", "1", "--http-url", url], env);
    assert.match(page.out, new RegExp(`more: queue list --after ${s.ids.first}`));
    const json = await cli(["queue", "list", "--domain", "b.test", "--json", "--http-url", url], env);
    const ids = (JSON.parse(json.out) as { messages: { id: number }[] }).messages.map((m) => m.id);
    assert.deepEqual(ids, [s.ids.first, s.ids.big]);
  });

  test("queue show: envelope, recipients and headers; --body adds the message", async () => {
    const r = await cli(["queue", "show", String(s.ids.first), "--http-url", url], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^message \d+, .* received /);
    assert.match(r.out, /from: sender@example\.org/);
    assert.match(r.out, /one@a\.test\s+queued\s+0\s+-/);
    assert.match(r.out, /Subject: Hello <there>/);
    assert.doesNotMatch(r.out, /Body line/);
    const withBody = await cli(["queue", "show", String(s.ids.first), "--body", "--http-url", url], env);
    assert.match(withBody.out, /Body line/);
  });

  test("queue bounce and delete change the relay's queue", async () => {
    const bounce = await cli(
      ["queue", "bounce", String(s.ids.second), "--reason", "test", "--http-url", url],
      env,
    );
    assert.equal(bounce.code, 0, bounce.err);
    // The seeded message is from the null sender: no DSN is due (RFC 5321 6.1), and the CLI says so.
    assert.equal(bounce.out, `message ${s.ids.second}: 1 recipient(s) bounced; no DSN (null sender)`);
    assert.equal(s.store.getMessage(s.ids.second)!.recipients[0]!.status, "failed");
    const again = await cli(["queue", "bounce", String(s.ids.second), "--http-url", url], env);
    assert.equal(again.code, 1);
    assert.match(again.err, /no queued recipients to bounce \(HTTP 409\)/);
    const del = await cli(["queue", "delete", String(s.ids.second), "--http-url", url], env);
    assert.equal(del.code, 0, del.err);
    assert.equal(del.out, `message ${s.ids.second} deleted`);
    assert.equal(s.store.getMessage(s.ids.second), null);
    const gone = await cli(["queue", "delete", String(s.ids.second), "--json", "--http-url", url], env);
    assert.equal(gone.code, 1);
    assert.match(gone.err, /No message \d+ \(HTTP 404\)/);
  });

  test("domain hold and release", async () => {
    const hold = await cli(["domain", "hold", "C.test", "--http-url", url], env);
    assert.equal(hold.code, 0, hold.err);
    assert.equal(hold.out, "domain c.test held");
    assert.equal(s.store.listDomains().find((d) => d.name === "c.test")!.hold, true);
    const release = await cli(["domain", "release", "c.test", "--json", "--http-url", url], env);
    assert.deepEqual(JSON.parse(release.out), { domain: "c.test", hold: false });
    const unknown = await cli(["domain", "hold", "x.test", "--http-url", url], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /No hosted domain x\.test/);
  });

  test("errors: no token, bad arguments, relay not running", async () => {
    const noToken = await cli(["queue", "list", "--http-url", url], {});
    assert.equal(noToken.code, 1);
    assert.match(noToken.err, /bearer token.*\(HTTP 401\)/i);
    const badId = await cli(["queue", "show", "abc", "--http-url", url], env);
    assert.equal(badId.code, 2);
    assert.match(badId.err, /ID must be a positive integer/);
    const badStatus = await cli(["queue", "list", "--status", "sent", "--http-url", url], env);
    assert.equal(badStatus.code, 2);
    for (const bad of [["--after", "abc"], ["--limit", "0"]]) {
      const r = await cli(["queue", "list", ...bad, "--http-url", url], env);
      assert.equal(r.code, 2, bad.join(" "));
      assert.match(r.err, /must be a positive integer/);
    }
    const badUrl = await cli(["status", "--http-url", "not a url"], env);
    assert.equal(badUrl.code, 2);
    // A port nothing listens on: find one by binding and closing.
    const probe = await serveHttp("127.0.0.1", 0, () => new Response("x"));
    const closedPort = probe.port;
    await probe.stop();
    const down = await cli(["status", "--http-url", `http://127.0.0.1:${closedPort}`], env);
    assert.equal(down.code, 1);
    assert.match(down.err, /cannot reach the relay at http:\/\/127\.0\.0\.1:\d+ .*odmr-relay serve/);
  });
});
