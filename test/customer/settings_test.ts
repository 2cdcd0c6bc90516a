// The customer settings: the [pull] table of the same config file serve reads (TOML or JSON), then
// ODMR_RELAY_PULL_* variables, then flags; check-config validates them; the secret is never a flag.
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/load.ts";
import { parseProvider, PULL_FIELDS } from "../../src/config/pull_fields.ts";
import { checkPullConfig, loadPullConfig, loadSecret } from "../../src/customer/settings.ts";
import { tempDir } from "../support/temp.ts";
import { runCliCaptured } from "./_helpers.ts";

function file(name: string, text: string, mode = 0o644): string {
  const path = join(tempDir("odmr-pull-settings-"), name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

const TOML = [
  'smtpListen = "127.0.0.1:2525"',
  "[pull]",
  'server = ["a.example", "b.example:2366", "[::1]:3366"]',
  'user = "alice"',
  'domains = "Example.org,example.net"',
  'every = "5m"',
  "jitter = 0.2",
  "",
].join("\n");

const cli = (args: string[]) => runCliCaptured(args, {});

describe("pull settings", () => {
  it("read from the [pull] table; a provider without a port gets 366 (RFC 2645 4)", () => {
    const { config, origin, given } = loadPullConfig({ file: file("c.toml", TOML) });
    assert.equal(given, true);
    assert.deepEqual(config.server, [
      { host: "a.example", port: 366 },
      { host: "b.example", port: 2366 },
      { host: "::1", port: 3366 },
    ]);
    assert.deepEqual(config.domains, ["example.org", "example.net"]);
    assert.deepEqual([config.every, config.jitter, config.tls, config.smtp], [
      300_000,
      0.2,
      "starttls",
      { host: "127.0.0.1", port: 25 },
    ]);
    assert.match(origin.every, /^file .*c\.toml$/);
    assert.equal(origin.tls, "default");
  });

  it("the same in JSON; the environment wins over the file, flags over both", () => {
    const json = file(
      "c.json",
      JSON.stringify({ pull: { server: "a.example", user: "alice", every: "1m" } }),
    );
    const { config, origin } = loadPullConfig({
      file: json,
      env: { ODMR_RELAY_PULL_EVERY: "2m", ODMR_RELAY_PULL_BACKOFF_MAX: "1h" },
      flags: { every: "3m" },
    });
    assert.deepEqual([config.every, config.backoffMax], [180_000, 3_600_000]);
    assert.deepEqual([origin.every, origin.backoffMax, origin.user], [
      "flag --every",
      "env ODMR_RELAY_PULL_BACKOFF_MAX",
      `file ${json}`,
    ]);
  });

  it("serve ignores the [pull] table, and pull ignores the relay's settings", () => {
    const path = file("c.toml", TOML);
    assert.deepEqual(loadConfig({ file: path }).config.smtpListen, { host: "127.0.0.1", port: 2525 });
    assert.equal(loadPullConfig({ file: path }).config.user, "alice");
  });

  it("errors name the setting and where it came from", () => {
    const bad = (text: string) => () => loadPullConfig({ file: file("c.toml", text) });
    assert.throws(bad('[pull]\nevry = "5m"\n'), /pull\.evry \(file .*\): unknown setting/);
    assert.throws(bad('[pull]\nevery = "100ms"\n'), /pull\.every \(file .*\): must be at least 1s/);
    assert.throws(bad("[pull]\njitter = 2\n"), /pull\.jitter .*from 0 to 1/);
    assert.throws(bad('[pull]\ndomains = "a_b.example"\n'), /pull\.domains .*not a domain name/);
    assert.throws(bad('[pull]\nserver = "a.example:99999"\n'), /pull\.server .*port/);
    assert.throws(
      () => loadPullConfig({ env: { ODMR_RELAY_PULL_TLS: "maybe" } }),
      /pull\.tls \(env ODMR_RELAY_PULL_TLS\)/,
    );
    assert.throws(
      () => checkPullConfig(loadPullConfig({ flags: { user: "alice" } })),
      /pull\.server .*no provider/,
    );
    assert.throws(
      () =>
        checkPullConfig(
          loadPullConfig({ flags: { server: "a.example", user: "u", ca: "/nonexistent.pem" } }),
        ),
      /pull\.ca .*not found/,
    );
  });

  it("every setting has a doc line and parses its own default", () => {
    for (const [key, f] of Object.entries(PULL_FIELDS)) {
      assert.ok(f.doc.length > 10, key);
      // "(none)" is how an unset value is shown, not something to type.
      if (f.default !== null) {
        assert.deepEqual(f.parse(f.format(f.default as never) as never), f.default, key);
      }
    }
    assert.deepEqual(parseProvider("[2001:db8::1]"), { host: "2001:db8::1", port: 366 });
  });

  it("the secret: --password-stdin, else passwordFile (a warning when others can read it), else the environment", () => {
    const loose = file("secret", "s3cret\n", 0o644);
    const base = loadPullConfig({ flags: { server: "a.example", user: "u", passwordFile: loose } }).config;
    assert.deepEqual(loadSecret(base, {}, "from-stdin\n"), { secret: "from-stdin", warnings: [] });
    const fromFile = loadSecret(base, {}, null)!;
    assert.equal(fromFile.secret, "s3cret");
    assert.match(fromFile.warnings[0]!, /can be read by others \(mode 644\): chmod 600 it/);
    const tight = file("secret", "s3cret\n", 0o600);
    assert.deepEqual(loadSecret({ ...base, passwordFile: tight }, {}, null)!.warnings, []);
    const env = loadSecret({ ...base, passwordFile: null }, { ODMR_RELAY_PULL_SECRET: "e" }, null);
    assert.equal(env?.secret, "e");
    assert.equal(loadSecret({ ...base, passwordFile: null }, {}, null), null);
  });

  it("no flag carries the secret itself: --secret and --password are bad arguments (exit 2)", async () => {
    for (const flag of ["--secret", "--password"]) {
      const r = await cli(["pull", "--server", "a.example", "--user", "u", flag, "x"]);
      assert.equal(r.code, 2, r.out);
    }
    const none = await cli(["pull", "--server", "127.0.0.1:1", "--user", "u"]);
    assert.equal(none.code, 2);
    assert.match(
      none.out,
      /give the secret with --password-stdin, --password-file or ODMR_RELAY_PULL_SECRET/,
    );
  });

  it("check-config validates the [pull] table and lists its settings", async () => {
    const good = await cli(["check-config", "--config", file("c.toml", TOML)]);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /pull\.server +a\.example:366,b\.example:2366,\[::1\]:3366 +file /);
    assert.match(good.out, /pull\.every +5m +file /);
    const bad = await cli(["check-config", "--config", file("c.toml", '[pull]\nevery = "soon"\n')]);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /bad configuration: pull\.every \(file .*\): must be a duration/);
    const incomplete = await cli(["check-config", "--config", file("c.toml", '[pull]\nuser = "alice"\n')]);
    assert.equal(incomplete.code, 2);
    assert.match(incomplete.out, /pull\.server .*no provider/);
    const relayOnly = await cli([
      "check-config",
      "--config",
      file("c.toml", 'smtpListen = "127.0.0.1:2525"\n'),
    ]);
    assert.equal(relayOnly.code, 0, relayOnly.out);
    assert.doesNotMatch(relayOnly.out, /pull\./);
  });
});
