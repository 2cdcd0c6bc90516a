import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "../../src/cli/run.ts";
import { tempDir } from "../support/temp.ts";

async function cli(args: string[], stdin = "") {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    readStdin: () => Promise.resolve(stdin),
    env: {},
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("cli", () => {
  test("version and help", async () => {
    assert.match((await cli(["version"])).out, /^odmr-relay \d+\.\d+\.\d+/);
    const help = await cli(["--help"]);
    assert.equal(help.code, 0);
    for (const name of ["serve", "user add", "domain add", "check-config", "migrate"]) {
      assert.ok(help.out.includes(name));
    }
    const serveHelp = await cli(["serve", "--help"]);
    assert.match(serveHelp.out, /--smtp-max-recipients \(ODMR_RELAY_SMTP_MAX_RECIPIENTS\) \[1000\]/);
  });

  test("accounts and domains end to end on a real database", async () => {
    const dir = tempDir();
    const add = await cli(["user", "add", "alice", "--generate", "--data-dir", dir]);
    assert.equal(add.code, 0, add.err);
    const secret = /shown once\): (\S+)/.exec(add.out)![1]!;
    assert.ok(secret.length >= 26, "a generated secret carries at least 128 bits");
    assert.equal(
      (await cli(["user", "add", "bob", "--password-stdin", "--data-dir", dir], "correct horse\n")).code,
      0,
    );
    assert.equal(
      (await cli(["domain", "add", "Example.TEST", "--user", "alice", "--data-dir", dir])).code,
      0,
    );
    assert.equal(
      (await cli([
        "domain",
        "add",
        "b.test",
        "--user",
        "bob",
        "--mailboxes",
        "info,sales",
        "--data-dir",
        dir,
      ])).code,
      0,
    );
    const list = await cli(["domain", "list", "--json", "--data-dir", dir]);
    const domains = JSON.parse(list.out) as { name: string; username: string; catchAll: boolean }[];
    assert.deepEqual(domains.map((d) => [d.name, d.username, d.catchAll]), [["b.test", "bob", false], [
      "example.test",
      "alice",
      true,
    ]]);
    const users = JSON.parse((await cli(["user", "list", "--json", "--data-dir", dir])).out);
    assert.equal(users.length, 2);
    assert.ok(!JSON.stringify(users).includes("CRAM-MD5"), "secrets are never listed");
    assert.equal((await cli(["user", "disable", "bob", "--data-dir", dir])).code, 0);
    assert.equal((await cli(["user", "passwd", "bob", "--generate", "--data-dir", dir])).code, 0);
    const busy = await cli(["user", "remove", "bob", "--data-dir", dir]);
    assert.equal(busy.code, 1);
    assert.match(busy.err, /still owns 1 domain/);
    assert.equal((await cli(["domain", "remove", "b.test", "--data-dir", dir])).code, 0);
    assert.equal((await cli(["user", "remove", "bob", "--data-dir", dir])).code, 0);
  });

  test("bad arguments give one clear line and exit 2", async () => {
    const dir = tempDir();
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["user"], /user needs a subcommand: add, passwd/],
      [["user", "add", "--data-dir", dir], /missing NAME/],
      [["user", "add", "x", "--data-dir", dir], /exactly one of --generate or --password-stdin/],
      [["user", "add", "x", "--bogus"], /Unknown option '--bogus'/],
      [["domain", "add", "not_a_domain", "--user", "x", "--data-dir", dir], /not a valid domain/],
      [["domain", "add", "ok.test", "--data-dir", dir], /missing --user/],
      [["check-config", "--smtp-max-recipients", "5"], /smtpMaxRecipients .*at least 100/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, message);
      assert.equal(r.err.split("\n").length, 1);
    }
  });

  test("check-config validates without binding and names the source", async () => {
    const r = await cli(["check-config", "--smtp-listen", "127.0.0.1:25"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /smtpListen\s+127\.0\.0\.1:25\s+flag --smtp-listen/);
    assert.match(r.out, /configuration OK/);
  });
});

describe("cli domain set", () => {
  test("sets and clears retention, quota and mailboxes; bad values exit 2", async () => {
    const dir = tempDir();
    assert.equal(
      (await cli(["user", "add", "alice", "--password-stdin", "--data-dir", dir], "long enough secret")).code,
      0,
    );
    assert.equal((await cli(["domain", "add", "a.test", "--user", "alice", "--data-dir", dir])).code, 0);
    const set = await cli([
      "domain",
      "set",
      "a.test",
      "--retention",
      "7d",
      "--quota",
      "1GiB",
      "--mailboxes",
      "info,sales",
      "--data-dir",
      dir,
    ]);
    assert.equal(set.code, 0, set.err);
    const [d] = JSON.parse((await cli(["domain", "list", "--json", "--data-dir", dir])).out);
    assert.deepEqual([d.retentionMs, d.quotaBytes, d.catchAll, d.mailboxes], [
      7 * 86_400_000,
      1024 ** 3,
      false,
      2,
    ]);
    assert.equal(
      (await cli([
        "domain",
        "set",
        "a.test",
        "--retention",
        "default",
        "--quota",
        "none",
        "--catch-all",
        "--data-dir",
        dir,
      ])).code,
      0,
    );
    const [e] = JSON.parse((await cli(["domain", "list", "--json", "--data-dir", dir])).out);
    assert.deepEqual([e.retentionMs, e.quotaBytes, e.catchAll], [null, null, true]);
    for (
      const bad of [["--retention", "soon"], ["--quota", "lots"], ["--mailboxes", "a", "--catch-all"], []]
    ) {
      const r = await cli(["domain", "set", "a.test", ...bad, "--data-dir", dir]);
      assert.equal(r.code, 2, `${bad.join(" ")}: ${r.err}`);
    }
    assert.equal((await cli(["domain", "set", "nope.test", "--quota", "1MiB", "--data-dir", dir])).code, 1);
  });

  test("routing syntax, the waiting-mail notice, and IDNA names", async () => {
    const dir = tempDir();
    await cli(["user", "add", "alice", "--password-stdin", "--data-dir", dir], "long enough secret");
    assert.equal((await cli(["domain", "add", "böb.test", "--user", "alice", "--data-dir", dir])).code, 0);
    const set = await cli([
      "domain",
      "set",
      "XN--BB-FKA.test",
      "--allow-routing-syntax",
      "yes",
      "--notify-address",
      "owner@phone.example",
      "--notify-after",
      "12h",
      "--data-dir",
      dir,
    ]);
    assert.equal(set.code, 0, set.err);
    const [d] = JSON.parse((await cli(["domain", "list", "--json", "--data-dir", dir])).out);
    assert.deepEqual([d.name, d.allowRoutingSyntax, d.notifyAddress, d.notifyAfterMs], [
      "xn--bb-fka.test",
      true,
      "owner@phone.example",
      12 * 3_600_000,
    ]);
    for (
      const bad of [["--allow-routing-syntax", "maybe"], ["--notify-address", "nobody"], [
        "--notify-after",
        "x",
      ]]
    ) {
      assert.equal(
        (await cli(["domain", "set", "böb.test", ...bad, "--data-dir", dir])).code,
        2,
        bad.join(" "),
      );
    }
    assert.equal(
      (await cli(["domain", "add", "\u212Ailo.test", "--user", "alice", "--data-dir", dir])).code,
      2,
    );
  });
});
