/**
 * Builds the Config from its sources, later ones winning: defaults, then the config file (JSON or
 * TOML), then the environment (`ODMR_RELAY_*`), then command-line flags. Every error names the
 * field and the source it came from, so `check-config` can point at the bad line.
 */
import { existsSync, readFileSync } from "node:fs";
import { type Config, CONFIG_FIELDS, type ConfigKey, defaultConfig, envName, flagName } from "./fields.ts";
import { parseToml, type TomlDocument } from "./toml.ts";
import { isLoopback } from "../net/loopback.ts";

/** A configuration value that cannot be used; `field` is the key, `source` where it came from. */
export class ConfigError extends Error {
  constructor(readonly field: string, readonly source: string, reason: string) {
    super(`${field} (${source}): ${reason}`);
    this.name = "ConfigError";
  }
}

/** Where values may come from. */
export interface ConfigSources {
  /** Path of a .json or .toml file; null for none. */
  file?: string | null;
  /** Environment variables (process.env). */
  env?: Record<string, string | undefined>;
  /** Parsed command-line flags keyed by config key (camelCase). */
  flags?: Partial<Record<ConfigKey, string | boolean>>;
}

/** The loaded config and, per key, which source set it. */
export interface LoadedConfig {
  config: Config;
  origin: Record<ConfigKey, string>;
}

const KEYS = Object.keys(CONFIG_FIELDS) as ConfigKey[];
const BY_NORMALISED = new Map(KEYS.map((key) => [normalise(key), key]));

function normalise(name: string): string {
  return name.replace(/[-_]/g, "").toLowerCase();
}

/**
 * The table of customer settings (`[pull]`, or `"pull": {...}` in JSON): read by `pull` and
 * `check-config` (src/customer/settings.ts), skipped by the relay's own settings.
 */
export const PULL_TABLE = "pull";

/** Reads and parses a config file (`.json`, otherwise TOML) into its top-level object. */
export function readConfigDocument(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new ConfigError("config", path, "file not found");
  const text = readFileSync(path, "utf8");
  let doc: TomlDocument | Record<string, unknown>;
  try {
    doc = path.endsWith(".json") ? JSON.parse(text) : parseToml(text);
  } catch (error) {
    throw new ConfigError("config", path, (error as Error).message);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError("config", path, "the file must hold an object of settings");
  }
  return doc;
}

/** Reads a config file into flat key/value pairs; TOML tables prefix their keys (`[smtp] listen`). */
export function readConfigFile(path: string): Map<ConfigKey, unknown> {
  const doc = readConfigDocument(path);
  const values = new Map<ConfigKey, unknown>();
  const put = (name: string, value: unknown) => {
    const key = BY_NORMALISED.get(normalise(name));
    if (!key) throw new ConfigError(name, path, "unknown setting");
    values.set(key, value);
  };
  for (const [name, value] of Object.entries(doc)) {
    if (name === PULL_TABLE) continue;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [inner, innerValue] of Object.entries(value)) put(`${name}_${inner}`, innerValue);
    } else put(name, value);
  }
  return values;
}

/** Loads and validates the configuration. Throws ConfigError on the first bad field. */
export function loadConfig(sources: ConfigSources = {}): LoadedConfig {
  const config = defaultConfig() as Record<ConfigKey, unknown>;
  const origin = Object.fromEntries(KEYS.map((k) => [k, "default"])) as Record<ConfigKey, string>;
  const apply = (key: ConfigKey, raw: unknown, source: string) => {
    try {
      config[key] = CONFIG_FIELDS[key].parse(raw as never);
    } catch (error) {
      throw new ConfigError(key, source, (error as Error).message);
    }
    origin[key] = source;
  };
  const env = sources.env ?? {};
  const file = sources.file ?? env.ODMR_RELAY_CONFIG ?? null;
  if (file) { for (const [key, raw] of readConfigFile(file)) apply(key, raw, `file ${file}`); }
  for (const key of KEYS) {
    const raw = env[envName(key)];
    if (raw !== undefined) apply(key, raw, `env ${envName(key)}`);
  }
  for (const [key, raw] of Object.entries(sources.flags ?? {})) {
    if (raw !== undefined) apply(key as ConfigKey, raw, `flag --${flagName(key)}`);
  }
  const loaded = config as Config;
  validateTogether(loaded, origin);
  return { config: loaded, origin };
}

/** Rules that involve more than one field. */
function validateTogether(config: Config, origin: Record<ConfigKey, string>): void {
  if ((config.tlsCertFile === null) !== (config.tlsKeyFile === null)) {
    const missing = config.tlsCertFile === null ? "tlsCertFile" : "tlsKeyFile";
    throw new ConfigError(
      missing,
      "tlsCertFile/tlsKeyFile",
      "set both the certificate and the key, or neither",
    );
  }
  for (const key of ["tlsCertFile", "tlsKeyFile"] as const) {
    const path = config[key];
    if (path !== null && !existsSync(path)) throw new ConfigError(key, origin[key], `file ${path} not found`);
  }
  if ((config.smarthostUsername === null) !== (config.smarthostPassword === null)) {
    throw new ConfigError(
      config.smarthostUsername === null ? "smarthostUsername" : "smarthostPassword",
      "smarthostUsername/smarthostPassword",
      "set both the smarthost user name and its password, or neither",
    );
  }
  if (config.smarthostUsername !== null && config.smarthost === null) {
    throw new ConfigError("smarthostUsername", origin.smarthostUsername, "credentials need a smarthost");
  }
  if (config.atrnMaxWatching >= config.odmrMaxConnections) {
    // Watchers are authenticated and never evicted: they must leave room for everyone else.
    throw new ConfigError(
      "atrnMaxWatching",
      origin.atrnMaxWatching,
      `must be below odmrMaxConnections (${config.odmrMaxConnections}), or watchers could fill the ODMR listener`,
    );
  }
  if (config.dsnCopyToPostmaster && config.postmasterAddress === null) {
    throw new ConfigError("dsnCopyToPostmaster", origin.dsnCopyToPostmaster, "needs postmasterAddress");
  }
  if (config.smarthostCaFile !== null && !existsSync(config.smarthostCaFile)) {
    throw new ConfigError(
      "smarthostCaFile",
      origin.smarthostCaFile,
      `file ${config.smarthostCaFile} not found`,
    );
  }
  if (config.httpListen && !isLoopback(config.httpListen.host) && !config.httpToken) {
    throw new ConfigError(
      "httpListen",
      origin.httpListen,
      `binding ${config.httpListen.host} (not loopback) requires httpToken to be set`,
    );
  }
}

/** The loopback rule (src/net/loopback.ts), re-exported for callers that read it with the config. */
export { isLoopback };
