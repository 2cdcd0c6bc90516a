/** `pull`: run as the ODMR customer and hand the mail to the local mail server. */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { parseListen } from "../config/fields.ts";
import { MAX_TIMER_MS, parseDuration } from "../config/units.ts";
import { pull } from "../customer/pull.ts";
import { Logger } from "../log/logger.ts";
import { type Command, noExtraPositionals, UsageError } from "./command.ts";

export const pullCommand: Command = {
  name: "pull",
  summary: "Act as the ODMR customer: AUTH, ATRN, and relay the mail into the local mail server",
  usage: "pull --server HOST:PORT --user NAME --domains a.example,b.example " +
    "(--password-stdin | --password-file FILE | env ODMR_RELAY_PULL_SECRET) " +
    "[--tls starttls|implicit|none] [--ca FILE] [--insecure] [--smtp HOST:PORT] [--helo NAME] [--timeout 15m]",
  options: {
    server: { type: "string" },
    user: { type: "string", short: "u" },
    domains: { type: "string" },
    "password-stdin": { type: "boolean" },
    "password-file": { type: "string" },
    tls: { type: "string" },
    ca: { type: "string" },
    insecure: { type: "boolean" },
    smtp: { type: "string" },
    helo: { type: "string" },
    timeout: { type: "string" },
    "log-level": { type: "string" },
  },
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const v = args.values;
    const need = (name: string): string => {
      const value = v[name];
      if (typeof value !== "string" || value === "") throw new UsageError(`${this.name}: missing --${name}`);
      return value;
    };
    const server = parseAddress(need("server"), "--server");
    const local = parseAddress(typeof v.smtp === "string" ? v.smtp : "127.0.0.1:25", "--smtp");
    // STARTTLS with certificate verification unless told otherwise: CRAM-MD5 protects the secret
    // but not the mail, so plaintext must be an explicit choice (`--tls none`).
    const mode = typeof v.tls === "string" ? v.tls : "starttls";
    if (mode !== "implicit" && mode !== "starttls" && mode !== "none") {
      throw new UsageError(`${this.name}: --tls must be implicit, starttls or none`);
    }
    let secret: string | undefined;
    if (v["password-stdin"]) secret = (await io.readStdin()).replace(/\r?\n$/, "");
    else if (typeof v["password-file"] === "string") secret = readFileSync(v["password-file"], "utf8").trim();
    else secret = io.env.ODMR_RELAY_PULL_SECRET;
    if (!secret) {
      throw new UsageError(
        `${this.name}: give the secret with --password-stdin, --password-file or ODMR_RELAY_PULL_SECRET`,
      );
    }
    // The default outlasts the provider's own 10-minute wait for the final dot's reply (RFC 5321
    // 4.5.3.2.6): the provider may be silent that long while the local server works.
    const timeoutMs = parseDuration(typeof v.timeout === "string" ? v.timeout : "15m");
    if (timeoutMs === null || timeoutMs < 1000 || timeoutMs > MAX_TIMER_MS) {
      throw new UsageError(`${this.name}: --timeout must be a duration from 1s to 24d, like 15m`);
    }
    const level = typeof v["log-level"] === "string" ? v["log-level"] : "info";
    if (!["error", "warn", "info", "debug", "trace"].includes(level)) {
      throw new UsageError(`${this.name}: bad --log-level`);
    }
    const result = await pull({
      host: server.host,
      port: server.port,
      tls: mode,
      ...(typeof v.ca === "string" ? { ca: readFileSync(v.ca, "utf8") } : {}),
      insecure: v.insecure === true,
      username: need("user"),
      secret,
      domains: need("domains").split(",").map((d) => d.trim()).filter((d) => d !== ""),
      helo: typeof v.helo === "string" ? v.helo : hostname(),
      localHost: local.host,
      localPort: local.port,
      timeoutMs,
      logger: new Logger({ level: level as "info" }),
    });
    (result.exitCode === 0 || result.exitCode === 1 ? io.out : io.err)(
      `pull: ${result.message} (${result.bytesToLocal} bytes to the local server)`,
    );
    return result.exitCode;
  },
};

function parseAddress(value: string, flag: string): { host: string; port: number } {
  try {
    const address = parseListen(value.includes(":") ? value : `${value}:366`);
    if (address) return address;
  } catch { /* fall through */ }
  throw new UsageError(`pull: ${flag} must be HOST:PORT`);
}
