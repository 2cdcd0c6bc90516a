import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { CONFIG_FIELDS, defaultConfig, envName, flagName, parseListen } from "../../src/config/fields.ts";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { parseToml } from "../../src/config/toml.ts";
import { parseDuration, parseSize } from "../../src/config/units.ts";
import { tempDir } from "../support/temp.ts";

describe("config fields", () => {
  test("every field has a doc line and its default survives its own parser", () => {
    for (const [key, field] of Object.entries(CONFIG_FIELDS)) {
      assert.ok(field.doc.length > 10, `${key} needs a doc`);
      const formatted = (field.format as (v: unknown) => string)(field.default);
      if (field.default === null) continue;
      assert.deepEqual((field.parse as (v: unknown) => unknown)(formatted), field.default, key);
    }
  });

  test("defaults are unprivileged and data lives under ./data", () => {
    const c = defaultConfig();
    for (const l of [c.smtpListen, c.odmrListen, c.odmrsListen, c.httpListen]) assert.ok(l!.port >= 1024);
    assert.equal(c.httpListen!.host, "127.0.0.1");
    assert.equal(c.dataDir, "./data");
  });

  test("names: flag and environment", () => {
    assert.equal(flagName("smtpMaxLineLength"), "smtp-max-line-length");
    assert.equal(envName("smtpMaxLineLength"), "ODMR_RELAY_SMTP_MAX_LINE_LENGTH");
  });

  test("listen addresses", () => {
    assert.deepEqual(parseListen("127.0.0.1:25"), { host: "127.0.0.1", port: 25 });
    assert.deepEqual(parseListen("[::1]:366"), { host: "::1", port: 366 });
    assert.deepEqual(parseListen(":2525"), { host: "0.0.0.0", port: 2525 });
    assert.equal(parseListen("off"), null);
    assert.throws(() => parseListen("nope"));
    assert.throws(() => parseListen("1.2.3.4:70000"));
  });

  test("units", () => {
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("1.5s"), 1500);
    assert.equal(parseDuration("soon"), null);
    assert.equal(parseSize("64MiB"), 64 * 1024 * 1024);
    assert.equal(parseSize("10MB"), 10_000_000);
    assert.equal(parseSize("lots"), null);
  });
});

describe("sources and precedence", () => {
  test("file < environment < flags", () => {
    const dir = tempDir();
    const file = `${dir}/relay.toml`;
    writeFileSync(
      file,
      `# comment\nhostname = "mx.file.test"\nsmtp_max_recipients = 200\n[smtp]\nlisten = "127.0.0.1:2600" # trailing\n`,
    );
    const { config, origin } = loadConfig({
      file,
      env: { ODMR_RELAY_SMTP_MAX_RECIPIENTS: "300", ODMR_RELAY_LOG_LEVEL: "debug" },
      flags: { logLevel: "warn" },
    });
    assert.equal(config.hostname, "mx.file.test");
    assert.equal(config.smtpMaxRecipients, 300);
    assert.deepEqual(config.smtpListen, { host: "127.0.0.1", port: 2600 });
    assert.equal(config.logLevel, "warn");
    assert.equal(origin.smtpMaxRecipients, "env ODMR_RELAY_SMTP_MAX_RECIPIENTS");
    assert.equal(origin.logLevel, "flag --log-level");
  });

  test("JSON files work too", () => {
    const file = `${tempDir()}/relay.json`;
    writeFileSync(file, JSON.stringify({ queueLifetime: "4d", logWire: true }));
    const { config } = loadConfig({ file });
    assert.equal(config.queueLifetime, 4 * 86_400_000);
    assert.equal(config.logWire, true);
  });

  test("errors name the field and its source", () => {
    const cases: [Parameters<typeof loadConfig>[0], RegExp][] = [
      [
        { flags: { smtpMaxRecipients: "50" } },
        /smtpMaxRecipients \(flag --smtp-max-recipients\): must be at least 100/,
      ],
      [
        { env: { ODMR_RELAY_SMTP_IDLE_TIMEOUT: "5 minutes" } },
        /smtpIdleTimeout \(env ODMR_RELAY_SMTP_IDLE_TIMEOUT\)/,
      ],
      [{ flags: { tlsCertFile: "/nonexistent.pem" } }, /tlsKeyFile/],
      [{ flags: { httpListen: "0.0.0.0:8025" } }, /httpListen .*requires httpToken/],
      [{ flags: { logFormat: "xml" } }, /logFormat .*one of logfmt, json/],
    ];
    for (const [sources, message] of cases) {
      assert.throws(
        () => loadConfig(sources),
        (e: unknown) => e instanceof ConfigError && message.test(e.message),
      );
    }
  });

  test("unknown keys in a file are refused", () => {
    const file = `${tempDir()}/relay.toml`;
    writeFileSync(file, `smtpListn = ":25"\n`);
    assert.throws(() => loadConfig({ file }), /smtpListn .*unknown setting/);
  });
});

describe("toml reader", () => {
  test("values and errors with line numbers", () => {
    assert.deepEqual(parseToml(`a = 'lit'\nb = [1, 2]\nc = false\n[t]\nd = "x\\ty"`), {
      a: "lit",
      b: [1, 2],
      c: false,
      t: { d: "x\ty" },
    });
    assert.throws(() => parseToml(`a = 1\na = 2`), /line 2/);
    assert.throws(() => parseToml(`a = bare`), /line 1/);
  });
});

test("timeouts longer than a timer can hold are refused; the queue lifetime may be long", () => {
  assert.throws(
    () => loadConfig({ flags: { atrnSessionTimeout: "30d" } }),
    /atrnSessionTimeout .*at most 24d/,
  );
  assert.equal(loadConfig({ flags: { queueLifetime: "30d" } }).config.queueLifetime, 30 * 86_400_000);
});

test("the HTTP token: no flag, at least 16 characters; a JSON file that is not an object is refused", async () => {
  const { allConfigOptions } = await import("../../src/cli/config_args.ts");
  assert.ok(!("http-token" in allConfigOptions()), "a secret never becomes a flag (visible in ps)");
  assert.throws(() => loadConfig({ env: { ODMR_RELAY_HTTP_TOKEN: "short" } }), /httpToken .*at least 16/);
  assert.equal(
    loadConfig({ env: { ODMR_RELAY_HTTP_TOKEN: "a-long-enough-token" } }).config.httpToken,
    "a-long-enough-token",
  );
  const file = `${tempDir()}/null.json`;
  writeFileSync(file, "null");
  assert.throws(
    () => loadConfig({ file }),
    (e: unknown) => e instanceof ConfigError && /object of settings/.test(e.message),
  );
});
