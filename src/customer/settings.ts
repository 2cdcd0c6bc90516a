/**
 * Loads the customer settings (src/config/pull_fields.ts) from their sources, later ones winning, in
 * the same order as the relay's own (src/config/load.ts): defaults, the `[pull]` table of the config
 * file, `ODMR_RELAY_PULL_*` environment variables, flags. Every error names the setting and where it
 * came from, so `check-config` can point at the bad line.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { flagName } from "../config/fields.ts";
import { ConfigError, PULL_TABLE, readConfigDocument } from "../config/load.ts";
import {
  defaultPullConfig,
  PULL_FIELDS,
  PULL_SECRET_ENV,
  type PullConfig,
  pullEnvName,
  type PullKey,
} from "../config/pull_fields.ts";

/** Where customer settings may come from. */
export interface PullSources {
  /** Path of a .json or .toml file (its `[pull]` table is read); null for none. */
  file?: string | null;
  /** Environment variables (process.env). */
  env?: Record<string, string | undefined>;
  /** Parsed command-line flags keyed by setting (camelCase). */
  flags?: Partial<Record<PullKey, string | boolean>>;
}

/** The loaded settings and, per key, which source set it. */
export interface LoadedPullConfig {
  config: PullConfig;
  origin: Record<PullKey, string>;
  /** Whether any source set a customer setting (a `[pull]` table, an environment variable, a flag). */
  given: boolean;
}

const KEYS = Object.keys(PULL_FIELDS) as PullKey[];
const normalise = (name: string) => name.replace(/[-_]/g, "").toLowerCase();
const BY_NORMALISED = new Map(KEYS.map((key) => [normalise(key), key]));

/** Loads and validates each customer setting; throws ConfigError on the first bad one. */
export function loadPullConfig(sources: PullSources = {}): LoadedPullConfig {
  const config = defaultPullConfig() as Record<PullKey, unknown>;
  const origin = Object.fromEntries(KEYS.map((k) => [k, "default"])) as Record<PullKey, string>;
  let given = false;
  const apply = (key: PullKey, raw: unknown, source: string) => {
    try {
      config[key] = PULL_FIELDS[key].parse(raw as never);
    } catch (error) {
      throw new ConfigError(`${PULL_TABLE}.${key}`, source, (error as Error).message);
    }
    origin[key] = source;
    given = true;
  };
  const env = sources.env ?? {};
  const file = sources.file ?? env.ODMR_RELAY_CONFIG ?? null;
  if (file) {
    const table = readConfigDocument(file)[PULL_TABLE];
    if (table !== undefined) {
      if (table === null || typeof table !== "object" || Array.isArray(table)) {
        throw new ConfigError(PULL_TABLE, `file ${file}`, "must be a table of settings ([pull])");
      }
      given = true;
      for (const [name, raw] of Object.entries(table)) {
        const key = BY_NORMALISED.get(normalise(name));
        if (!key) throw new ConfigError(`${PULL_TABLE}.${name}`, `file ${file}`, "unknown setting");
        apply(key, raw, `file ${file}`);
      }
    }
  }
  for (const key of KEYS) {
    const raw = env[pullEnvName(key)];
    if (raw !== undefined) apply(key, raw, `env ${pullEnvName(key)}`);
  }
  for (const [key, raw] of Object.entries(sources.flags ?? {})) {
    if (raw !== undefined) apply(key as PullKey, raw, `flag --${flagName(key)}`);
  }
  return { config: config as PullConfig, origin, given };
}

/**
 * Rules that involve more than one setting, or the file system: what `pull` needs before it can
 * connect anywhere. Throws ConfigError naming the setting.
 */
export function checkPullConfig({ config, origin }: LoadedPullConfig): void {
  if (config.server.length === 0) {
    throw new ConfigError(
      `${PULL_TABLE}.server`,
      origin.server,
      "no provider: set server (--server HOST:PORT)",
    );
  }
  if (config.user === null) throw new ConfigError(`${PULL_TABLE}.user`, origin.user, "set the account name");
  for (const key of ["passwordFile", "ca"] as const) {
    const path = config[key];
    if (path !== null && !existsSync(path)) {
      throw new ConfigError(`${PULL_TABLE}.${key}`, origin[key], `file ${path} not found`);
    }
  }
  if (config.backoffMax < config.backoff) {
    throw new ConfigError(`${PULL_TABLE}.backoffMax`, origin.backoffMax, "must be at least backoff");
  }
}

/** The secret and what is worth a warning about where it came from. */
export interface LoadedSecret {
  secret: string;
  warnings: string[];
}

/**
 * Reads the secret: `--password-stdin` (given as `stdin`), else `passwordFile`, else the environment.
 * Returns null when none of them holds one. A password file others can read gets a warning, as
 * fetchmail refuses an rc file that is not 0600.
 */
export function loadSecret(
  config: PullConfig,
  env: Record<string, string | undefined>,
  stdin: string | null,
): LoadedSecret | null {
  const warnings: string[] = [];
  let secret: string | undefined;
  if (stdin !== null) secret = stdin.replace(/\r?\n$/, "");
  else if (config.passwordFile !== null) {
    const mode = statSync(config.passwordFile).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      warnings.push(
        `${config.passwordFile} can be read by others (mode ${mode.toString(8)}): chmod 600 it`,
      );
    }
    secret = readFileSync(config.passwordFile, "utf8").trim();
  } else secret = env[PULL_SECRET_ENV];
  return secret ? { secret, warnings } : null;
}

/** `check-config` rows for the customer settings: `pull.KEY`, the value as typed, its source. */
export function pullSettingRows({ config, origin }: LoadedPullConfig): string[][] {
  return (Object.keys(PULL_FIELDS) as PullKey[]).map((key) => [
    `${PULL_TABLE}.${key}`,
    (PULL_FIELDS[key].format as (v: unknown) => string)(config[key]),
    origin[key],
  ]);
}
