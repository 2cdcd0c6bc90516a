/**
 * `pull`: run as the ODMR customer and hand the mail to the local mail server; once per provider
 * (one-shot, exit codes in src/customer/outcome.ts) or, with `--every`, until SIGTERM/SIGINT.
 * Settings: src/config/pull_fields.ts (flags, `ODMR_RELAY_PULL_*`, or the config file's `[pull]`).
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { flagName } from "../config/fields.ts";
import {
  describePullDefault,
  PULL_FIELDS,
  PULL_SECRET_ENV,
  type PullConfig,
  pullEnvName,
  type PullKey,
} from "../config/pull_fields.ts";
import { pollEachOnce, type PollProvider, runDaemon } from "../customer/daemon.ts";
import { EXIT_CODES, isSuccess, oneShotExitCode, type PollResult } from "../customer/outcome.ts";
import { pull } from "../customer/pull.ts";
import { checkPullConfig, loadPullConfig, loadSecret } from "../customer/settings.ts";
import { GracefulStop } from "../customer/stop.ts";
import { Logger } from "../log/logger.ts";
import { type CliIo, type Command, noExtraPositionals, type ParsedArgs, UsageError } from "./command.ts";

/** `--watch` without `--every`: how often to poll a provider that does not offer push delivery. */
const WATCH_FALLBACK_EVERY_MS = 5 * 60_000;

const KEYS = Object.keys(PULL_FIELDS) as PullKey[];

const SETTINGS_HELP = KEYS.map((key) =>
  `  --${flagName(key)} (${pullEnvName(key)}) [${describePullDefault(key)}]\n      ${PULL_FIELDS[key].doc}`
).join("\n");

const EXIT_CODES_HELP = Object.entries(EXIT_CODES).map(([outcome, code]) => `${code} ${outcome}`).join(", ");

/** Every setting is a flag (a boolean one takes no value); the secret is not a setting. */
const SETTING_OPTIONS: Command["options"] = Object.fromEntries(
  KEYS.map((key) => [flagName(key), { type: PULL_FIELDS[key].kind === "boolean" ? "boolean" : "string" }]),
);

export const pullCommand: Command = {
  name: "pull",
  summary: "Act as the ODMR customer: AUTH, ATRN, and relay the mail into the local mail server",
  usage: "pull [--config FILE] --server HOST[:PORT][,HOST[:PORT]...] --user NAME [--domains a.example,...] " +
    `(--password-stdin | --password-file FILE | env ${PULL_SECRET_ENV}) [--every 5m] [--<setting> VALUE ...]\n\n` +
    `settings (flag / environment; also in the [pull] table of a JSON or TOML --config file):\n${SETTINGS_HELP}\n\n` +
    `exit codes (one-shot): ${EXIT_CODES_HELP}, 2 bad arguments`,
  options: {
    config: { type: "string", short: "c" },
    "password-stdin": { type: "boolean" },
    ...SETTING_OPTIONS,
  },
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const config = settingsFrom(args, io);
    const stdin = args.values["password-stdin"] ? await io.readStdin() : null;
    let secret: ReturnType<typeof loadSecret>;
    try {
      secret = loadSecret(config, io.env, stdin);
    } catch (error) {
      throw new UsageError(`${this.name}: cannot read the password file: ${(error as Error).message}`);
    }
    if (!secret) {
      throw new UsageError(
        `${this.name}: give the secret with --password-stdin, --password-file or ${PULL_SECRET_ENV}`,
      );
    }
    for (const warning of [...secret.warnings, ...tlsWarnings(config)]) io.err(`pull: warning: ${warning}`);
    const logger = new Logger({ level: config.logLevel, format: config.logFormat });
    let ca: string | undefined;
    try {
      ca = config.ca === null ? undefined : readFileSync(config.ca, "utf8");
    } catch (error) {
      // A setting that cannot be used is a usage error (exit 2), never "no mail" (1).
      throw new UsageError(`${this.name}: cannot read --ca ${config.ca}: ${(error as Error).message}`);
    }
    const poll: PollProvider = (provider, signals) =>
      pull({
        host: provider.host,
        port: provider.port,
        tls: config.tls,
        ...(ca ? { ca } : {}),
        insecure: config.insecure,
        username: config.user!,
        secret: secret.secret,
        domains: config.domains,
        helo: config.helo,
        localHost: config.smtp.host,
        localPort: config.smtp.port,
        connectTimeoutMs: config.connectTimeout,
        timeoutMs: config.timeout,
        watch: config.watch,
        logger,
        ...signals,
      });
    const stop = new GracefulStop(config.shutdownGrace);
    const onSignal = (signal: string) => {
      logger.info(stop.stopping.aborted ? "second signal: cutting the session" : "stopping", { signal });
      stop.request();
    };
    const onTerm = () => onSignal("SIGTERM");
    const onInt = () => onSignal("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    try {
      const providers = config.server;
      if (config.every === null && !config.watch) {
        const results = await pollEachOnce({ providers, poll, stop });
        for (const result of results) (isSuccess(result.outcome) ? io.out : io.err)(summary(result));
        return results.length === 0 ? EXIT_CODES.interrupted : oneShotExitCode(results);
      }
      await runDaemon({
        providers,
        poll,
        stop,
        logger,
        schedule: {
          // With --watch alone: the poll interval for a provider that does not offer push.
          everyMs: config.every ?? WATCH_FALLBACK_EVERY_MS,
          jitter: config.jitter,
          backoffMs: config.backoff,
          backoffMaxMs: config.backoffMax,
        },
      });
      return 0;
    } finally {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      stop.dispose();
    }
  },
};

/** Loads and checks the settings from --config, the environment and the flags. */
function settingsFrom(args: ParsedArgs, io: CliIo): PullConfig {
  const flags: Partial<Record<PullKey, string | boolean>> = {};
  for (const key of KEYS) {
    const value = args.values[flagName(key)];
    if (typeof value === "string" || typeof value === "boolean") flags[key] = value;
  }
  const file = typeof args.values.config === "string" ? args.values.config : null;
  const loaded = loadPullConfig({ file, env: io.env, flags });
  checkPullConfig(loaded);
  return loaded.config;
}

/** Plaintext and unverified TLS are allowed, but said out loud (RFC 2645 8, RFC 2195 4). */
function tlsWarnings(config: PullConfig): string[] {
  if (config.tls === "none") {
    return ["--tls none: the session is not encrypted; CRAM-MD5 protects the secret but not the mail"];
  }
  if (config.insecure) {
    return ["--insecure: the provider's certificate is not verified; anyone on the path can read the mail"];
  }
  return [];
}

/** One line per provider for a one-shot run. */
function summary(r: PollResult): string {
  const count = r.outcome === "turned" || r.messages > 0
    ? `, ${r.messages} message${r.messages === 1 ? "" : "s"}${r.counted ? "" : " (count incomplete)"}` +
      (r.refused ? `, ${r.refused} refused by the local server` : "")
    : "";
  return `pull: ${r.provider}: ${r.message}${count} (${r.bytesToLocal} bytes to the local server, ${r.durationMs} ms)`;
}
