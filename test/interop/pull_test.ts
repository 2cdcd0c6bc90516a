/**
 * `odmr-relay pull` (customer mode) interop: the real CLI command (runCli in-process) against the
 * in-process relay, bridging the reversed session into Postfix's real smtp-sink. Plaintext, STARTTLS
 * (`--tls starttls --ca`), implicit TLS, a wrong CA with and without `--insecure`, the settings from
 * a config file's `[pull]` table; exit codes 0 (session ran), 1 (no mail), 3 (auth failed), 4, 5, 6.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runCli } from "../../src/cli/run.ts";
import { makeTestCert } from "../support/certs.ts";
import { freePort, type Sink, startSink } from "../support/fetchmail.ts";
import type { TestRelay } from "../support/relay.ts";
import {
  enqueue,
  lastAtrn,
  queuedAddresses,
  startOdmrRelay,
  waitForAtrnAfter,
} from "../server/odmr_helpers.ts";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../support/temp.ts";

const sinkMissing = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"].some(existsSync)
  ? null
  : "skipped: smtp-sink not installed (apt-get install postfix)";
if (sinkMissing) console.error(`pull interop: ${sinkMissing}`);

/** Plaintext must be asked for: STARTTLS is the default. */
const PLAIN = ["--tls", "none"] as const;

async function pull(args: readonly string[], secret: string): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await runCli(["pull", ...args], {
    out: (t) => (out += t + "\n"),
    err: (t) => (out += t + "\n"),
    readStdin: () => Promise.resolve(secret + "\n"),
    env: {},
  });
  return { code, out };
}

describe("odmr-relay pull into smtp-sink", { skip: sinkMissing ?? false }, () => {
  const cert = sinkMissing ? null : makeTestCert();
  let relay: TestRelay;
  let sink: Sink;
  before(async () => {
    relay = await startOdmrRelay({ cert: cert! });
    sink = await startSink();
  });
  after(async () => {
    await sink?.stop();
    await relay?.stop();
  });

  const run = (
    port: number,
    extra: readonly string[] = [],
    secret = "alice-secret",
    domains = "example.test",
  ) =>
    pull([
      "--server",
      `127.0.0.1:${port}`,
      "--user",
      "alice",
      "--domains",
      domains,
      "--password-stdin",
      "--smtp",
      `127.0.0.1:${sink.port}`,
      "--helo",
      "customer.test",
      "--timeout",
      "30s",
      "--log-level",
      "error",
      ...extra,
    ], secret);

  for (
    const [name, port, extra] of [
      ["plaintext", () => relay.odmrPort, PLAIN],
      ["STARTTLS (--tls starttls --ca)", () => relay.odmrPort, ["--tls", "starttls", "--ca", cert!.caFile]],
      ["STARTTLS by default (--ca only)", () => relay.odmrPort, ["--ca", cert!.caFile]],
      ["implicit TLS (--tls implicit --ca)", () => relay.odmrsPort, [
        "--tls",
        "implicit",
        "--ca",
        cert!.caFile,
      ]],
    ] as const
  ) {
    it(`${name}: exit 0, every message in the sink, the queue empty`, async () => {
      const id0 = relay.store.recentAtrnSessions(1)[0]?.id ?? 0;
      const before = sink.count();
      for (let i = 0; i < 20; i++) {
        enqueue(relay.store, [`u${i}@example.test`], `Subject: ${i}\r\n\r\n.dot\r\nbody ${i}\r\n`);
      }
      enqueue(relay.store, ["x@a.test", "y@example.test"], "Subject: two\r\n\r\nbody\r\n");
      const r = await run(port(), [...extra]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /session ended, 21 messages /);
      const rec = await waitForAtrnAfter(relay, id0);
      assert.deepEqual([rec.outcome, rec.delivered, rec.tls], ["turned", 21, name !== "plaintext"]);
      assert.equal(sink.count(), before + 21);
      // Only the a.test recipient of the two-domain message stays (one per case so far).
      assert.deepEqual(queuedAddresses(relay).filter((a) => !a.endsWith("@a.test")), []);
    });
  }

  it("STARTTLS is the default and verifies the certificate: an unknown CA is refused, nothing delivered", async () => {
    enqueue(relay.store, ["v@example.test"], "Subject: v\r\n\r\nv\r\n");
    const before = sink.count();
    const r = await pull([
      "--server",
      `127.0.0.1:${relay.odmrPort}`,
      "--user",
      "alice",
      "--domains",
      "example.test",
      "--password-stdin",
      "--smtp",
      `127.0.0.1:${sink.port}`,
      "--log-level",
      "error",
    ], "alice-secret");
    assert.equal(r.code, 6, r.out);
    assert.match(r.out, /certificate|self.signed|verify|unknown/i);
    assert.equal(sink.count(), before);
    assert.ok(queuedAddresses(relay).includes("v@example.test"));
  });

  it("a certificate from another CA is refused (exit 6), and accepted with --insecure and a warning", async () => {
    const otherCa = makeTestCert(tempDir("odmr-other-ca-")).caFile;
    enqueue(relay.store, ["w@example.test"], "Subject: w\r\n\r\nw\r\n");
    const before = sink.count();
    const refused = await run(relay.odmrPort, ["--ca", otherCa]);
    assert.equal(refused.code, 6, refused.out);
    assert.match(refused.out, /certificate|verify|unknown|issuer/i);
    assert.equal(sink.count(), before);
    assert.ok(queuedAddresses(relay).includes("w@example.test"));
    const insecure = await run(relay.odmrPort, ["--ca", otherCa, "--insecure"]);
    assert.equal(insecure.code, 0, insecure.out);
    assert.match(insecure.out, /warning: --insecure: the provider's certificate is not verified/);
    assert.ok(sink.count() > before);
    assert.deepEqual(queuedAddresses(relay).filter((a) => a.endsWith("@example.test")), []);
  });

  it("settings from the config file's [pull] table, the secret from passwordFile; no domains: bare ATRN", async () => {
    const dir = tempDir("odmr-pull-config-");
    const secretFile = join(dir, "secret");
    writeFileSync(secretFile, "alice-secret\n", { mode: 0o600 });
    const file = join(dir, "odmr-relay.toml");
    writeFileSync(
      file,
      [
        'hostname = "customer.test"     # the relay\'s own settings are ignored by pull',
        "[pull]",
        `server = ["127.0.0.1:${relay.odmrPort}"]`,
        'user = "alice"',
        `password_file = "${secretFile}"`,
        `ca = "${cert!.caFile}"`,
        `smtp = "127.0.0.1:${sink.port}"`,
        'log-level = "error"',
        "",
      ].join("\n"),
    );
    enqueue(relay.store, ["cfg@b.test"], "Subject: cfg\r\n\r\ncfg\r\n");
    const before = sink.count();
    const id0 = lastAtrn(relay).id;
    let out = "";
    const io = {
      out: (t: string) => (out += t + "\n"),
      err: (t: string) => (out += t + "\n"),
      readStdin: () => Promise.resolve(""),
      env: {},
    };
    const code = await runCli(["pull", "--config", file], io);
    assert.equal(code, 0, out);
    // The relay records the session as it closes, which may be just after pull has exited.
    await waitForAtrnAfter(relay, id0);
    // Bare ATRN asks for every domain of the account (RFC 2645 5.2.1): a.test's and b.test's came too.
    assert.ok(sink.count() > before);
    assert.deepEqual(queuedAddresses(relay), []);
    assert.equal(await runCli(["check-config", "--config", file, "--quiet"], io), 0, out);
  });

  it("no mail: exit 1", async () => {
    const id0 = relay.store.recentAtrnSessions(1)[0]?.id;
    const r = await run(relay.odmrPort, PLAIN, "alice-secret", "b.test");
    assert.equal(r.code, 1, r.out);
    // A poll without mail updates the domain instead of adding a history row.
    assert.equal(relay.store.recentAtrnSessions(1)[0]?.id, id0);
    assert.ok(relay.store.listDomains().find((d) => d.name === "b.test")!.lastAtrnAt !== null);
  });

  it("wrong secret: exit 3, nothing delivered", async () => {
    enqueue(relay.store, ["z@example.test"], "Subject: z\r\n\r\nz\r\n");
    const before = sink.count();
    const r = await run(relay.odmrPort, PLAIN, "wrong");
    assert.equal(r.code, 3, r.out);
    assert.equal(sink.count(), before);
    assert.ok(queuedAddresses(relay).includes("z@example.test"));
  });

  it("local MTA down: exit 5, nothing lost", async () => {
    const id0 = lastAtrn(relay).id;
    const queued = queuedAddresses(relay);
    const closed = await freePort();
    const r = await pull([
      "--server",
      `127.0.0.1:${relay.odmrPort}`,
      "--user",
      "alice",
      "--domains",
      "example.test",
      "--password-stdin",
      "--smtp",
      `127.0.0.1:${closed}`,
      "--helo",
      "customer.test",
      "--log-level",
      "error",
      "--tls",
      "none",
    ], "alice-secret");
    assert.equal(r.code, 5, r.out);
    const rec = await waitForAtrnAfter(relay, id0);
    assert.equal(rec.delivered, 0);
    assert.deepEqual(queuedAddresses(relay), queued);
    assert.ok(queued.includes("z@example.test"));
  });

  it("a domain of another account: exit 4 (450)", async () => {
    const r = await run(relay.odmrPort, PLAIN, "alice-secret", "other.test");
    assert.equal(r.code, 4, r.out);
    assert.match(r.out, /450/);
  });
});
