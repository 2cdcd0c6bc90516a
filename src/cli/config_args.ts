/**
 * Command-line flags for configuration: every config field has a `--kebab-case` flag, plus
 * `--config FILE`. Commands that only open the queue take `--data-dir` or `--database`, and `--config`.
 */
import type { ParseArgsConfig } from "node:util";
import { CONFIG_FIELDS, type ConfigKey, flagName, SECRET_FIELDS } from "../config/fields.ts";
import { loadConfig, type LoadedConfig } from "../config/load.ts";
import type { Queue } from "../queue/queue.ts";
import type { CliIo, ParsedArgs } from "./command.ts";
import { openQueue } from "../queue/open_queue.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs options for every config field and --config. */
export function allConfigOptions(): Options {
  const options: Options = { config: { type: "string", short: "c" } };
  for (const [key, field] of Object.entries(CONFIG_FIELDS)) {
    if (SECRET_FIELDS.has(key)) continue;
    options[flagName(key)] = { type: field.kind === "boolean" ? "boolean" : "string" };
  }
  return options;
}

/** parseArgs options for commands that open the queue: --data-dir or --database, and --config. */
export const DATA_OPTIONS: Options = {
  "data-dir": { type: "string" },
  database: { type: "string" },
  config: { type: "string", short: "c" },
};

/** Loads the config from --config, the environment and whichever config flags were given. */
export function configFromArgs(args: ParsedArgs, io: CliIo): LoadedConfig {
  const flags: Partial<Record<ConfigKey, string | boolean>> = {};
  for (const key of Object.keys(CONFIG_FIELDS) as ConfigKey[]) {
    if (SECRET_FIELDS.has(key)) continue;
    const value = args.values[flagName(key)];
    if (typeof value === "string" || typeof value === "boolean") flags[key] = value;
  }
  const file = typeof args.values.config === "string" ? args.values.config : null;
  return loadConfig({ file, env: io.env, flags });
}

/**
 * Opens the configured queue (the SQLite file in the data directory, or the `database`), runs
 * `fn`, and always closes it again: the one way admin commands that work on the queue get at it.
 */
export async function withStore<T>(
  args: ParsedArgs,
  io: CliIo,
  fn: (store: Queue) => T | Promise<T>,
): Promise<T> {
  const store = await openQueue(configFromArgs(args, io).config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
