// The systemd units in scripts/systemd/ pass `systemd-analyze verify` (Debian package: systemd) with
// no warning at all, and their command lines are ones the CLI accepts. systemd-analyze needs no
// running systemd, but it checks that ExecStart's program exists: the units name
// /usr/local/bin/odmr-relay, so the test verifies copies that point at a stub it creates, every
// other byte unchanged.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseCommandArgs } from "../../src/cli/command.ts";
import { COMMANDS } from "../../src/cli/commands.ts";
import { tempDir } from "../support/temp.ts";

const DIR = new URL("../../scripts/systemd/", import.meta.url).pathname;
const INSTALLED_BINARY = "/usr/local/bin/odmr-relay";
const UNITS = readdirSync(DIR).filter((f) => /\.(service|timer)$/.test(f)).sort();

const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) =>
  spawnSync(p, ["--version"], { stdio: "ignore" }).status === 0
);
const analyzeMissing = analyze ? null : "skipped: systemd-analyze not installed (apt-get install systemd)";
if (analyzeMissing) console.error(`systemd units: ${analyzeMissing}`);

const unit = (name: string) => readFileSync(join(DIR, name), "utf8");
/** `Key=value` lines of a unit (the last one wins, as in systemd). */
function settings(name: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of unit(name).split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

describe("systemd units", () => {
  it("there are units for serve, the pull daemon, and one-shot pull with a timer", () => {
    assert.deepEqual(UNITS, [
      "odmr-relay-pull-once.service",
      "odmr-relay-pull-once.timer",
      "odmr-relay-pull.service",
      "odmr-relay.service",
    ]);
  });

  it(
    "systemd-analyze verify passes on all of them, with no warning",
    { skip: analyzeMissing ?? false },
    () => {
      const dir = tempDir("odmr-systemd-");
      const stub = join(dir, "odmr-relay");
      writeFileSync(stub, "#!/bin/sh\nexit 0\n");
      chmodSync(stub, 0o755);
      for (const name of UNITS) writeFileSync(join(dir, name), unit(name).replaceAll(INSTALLED_BINARY, stub));
      const r = spawnSync(analyze!, ["verify", "--man=no", ...UNITS.map((n) => join(dir, n))], {
        encoding: "utf8",
        env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
      });
      const output = `${r.stdout}${r.stderr}`.trim();
      assert.equal(r.status, 0, output);
      assert.equal(output, "", "systemd-analyze printed warnings");
    },
  );

  // No flag takes a secret, so a command line the CLI accepts carries none.
  it("each ExecStart is a command line the CLI accepts", () => {
    for (const name of UNITS.filter((n) => n.endsWith(".service"))) {
      const exec = settings(name).get("ExecStart")!;
      const [binary, ...words] = exec.split(/\s+/);
      assert.equal(binary, INSTALLED_BINARY, name);
      const command = COMMANDS.find((c) => c.name === words[0])!;
      assert.ok(command, `${name}: ${words[0]}`);
      const args = parseCommandArgs(command, words.slice(1));
      assert.deepEqual(args.positionals, [], name);
    }
  });

  it("serve: its own user, state directory, port capability, sandbox, restart on failure", () => {
    const s = settings("odmr-relay.service");
    for (
      const [key, value] of [
        ["User", "odmr-relay"],
        ["StateDirectory", "odmr-relay"],
        ["AmbientCapabilities", "CAP_NET_BIND_SERVICE"],
        ["CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"],
        ["NoNewPrivileges", "yes"],
        ["ProtectSystem", "strict"],
        ["PrivateTmp", "yes"],
        ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
        ["Restart", "on-failure"],
      ]
    ) assert.equal(s.get(key!), value, key);
    assert.match(s.get("ExecStart")!, /--data-dir \/var\/lib\/odmr-relay/);
  });

  for (const name of ["odmr-relay-pull.service", "odmr-relay-pull-once.service"]) {
    it(`${name}: a dynamic user, no capabilities, the secret as a credential, sandboxed`, () => {
      const s = settings(name);
      for (
        const [key, value] of [
          ["DynamicUser", "yes"],
          ["CapabilityBoundingSet", ""],
          ["NoNewPrivileges", "yes"],
          ["ProtectSystem", "strict"],
          ["PrivateTmp", "yes"],
          ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
          ["LoadCredential", "pull-secret:/etc/odmr-relay/pull.secret"],
        ]
      ) assert.equal(s.get(key!), value, key);
      assert.match(s.get("ExecStart")!, /--password-file %d\/pull-secret/);
    });
  }

  it("the daemon restarts on failure; the one-shot treats no mail (exit 1) as success", () => {
    assert.equal(settings("odmr-relay-pull.service").get("Restart"), "on-failure");
    assert.match(settings("odmr-relay-pull.service").get("ExecStart")!, /--every 5m/);
    assert.equal(settings("odmr-relay-pull-once.service").get("SuccessExitStatus"), "1");
    assert.equal(settings("odmr-relay-pull-once.timer").get("Unit"), "odmr-relay-pull-once.service");
  });
});
