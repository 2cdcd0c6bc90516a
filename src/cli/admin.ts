/** `migrate`, `check-config` and `version`. */
import { CONFIG_FIELDS, type ConfigKey, envName, flagName } from "../config/fields.ts";
import { databasePath, openDatabase } from "../queue/db.ts";
import { migrate, schemaVersion } from "../queue/migrate.ts";
import { MIGRATIONS } from "../queue/migrations_bundle.ts";
import { loadSecureContext } from "../net/tls.ts";
import { checkPullConfig, loadPullConfig, pullSettingRows } from "../customer/settings.ts";
import { runtimeInfo } from "../runtime/runtime.ts";
import { platform, VERSION } from "../version.ts";
import { type CliIo, type Command, noExtraPositionals, table } from "./command.ts";
import { migrateTo } from "./migrate_to.ts";
import { allConfigOptions, configFromArgs, DATA_OPTIONS } from "./config_args.ts";

export const migrateCommand: Command = {
  name: "migrate",
  summary: "Create or upgrade the queue database (serve also does this); --to copies SQLite to PostgreSQL",
  usage: "migrate [--data-dir DIR | --database URL] [--to postgres://...]",
  options: { ...DATA_OPTIONS, to: { type: "string" } },
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const { config } = configFromArgs(args, io);
    if (typeof args.values.to === "string") {
      if (config.database !== null) {
        io.err("migrate: --to copies the SQLite queue of --data-dir; it does not go with --database");
        return 2;
      }
      return await migrateTo(args.values.to, config.dataDir, io);
    }
    if (config.database !== null) return await migrateShared(config.database, io);
    const open = openDatabase(databasePath(config.dataDir), { migrate: false });
    try {
      const applied = migrate(open.raw);
      io.out(
        applied.length
          ? `applied ${applied.join(", ")}; schema version ${schemaVersion(open.raw)}`
          : `schema is current (version ${schemaVersion(open.raw)} of ${MIGRATIONS.length})`,
      );
    } finally {
      open.close();
    }
    return 0;
  },
};

/** `migrate --database postgres://...`: the shared queue's migrations (serialised between nodes). */
async function migrateShared(url: string, io: CliIo): Promise<number> {
  const { PostgresDatabase } = await import("../queue/pg/database.ts");
  const { migratePostgres, postgresSchemaVersion } = await import("../queue/pg/migrate.ts");
  const { POSTGRES_MIGRATIONS } = await import("../queue/pg/migrations_bundle.ts");
  const db = new PostgresDatabase(url, { poolSize: 2, onIdleError: () => {} });
  try {
    const applied = await migratePostgres(db);
    const version = await postgresSchemaVersion(db);
    io.out(
      applied.length
        ? `applied ${applied.join(", ")}; schema version ${version}`
        : `schema is current (version ${version} of ${POSTGRES_MIGRATIONS.length})`,
    );
    return 0;
  } catch (error) {
    io.err(`migrate: ${(error as Error).message} (${db.location})`);
    return 1;
  } finally {
    await db.close().catch(() => {});
  }
}

export const checkConfig: Command = {
  name: "check-config",
  summary: "Validate the configuration without binding anything; print the effective settings",
  usage: "check-config [--config FILE] [--<setting> VALUE ...] [--quiet]",
  options: { ...allConfigOptions(), quiet: { type: "boolean", short: "q" } },
  run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const { config, origin } = configFromArgs(args, io);
    if (config.tlsCertFile && config.tlsKeyFile) {
      loadSecureContext({ certFile: config.tlsCertFile, keyFile: config.tlsKeyFile });
    }
    // The customer side (`pull`) is checked when the file has a [pull] table or the environment sets it.
    const file = typeof args.values.config === "string" ? args.values.config : null;
    const pull = loadPullConfig({ file, env: io.env });
    if (pull.given) checkPullConfig(pull);
    if (!args.values.quiet) {
      const keys = Object.keys(CONFIG_FIELDS) as ConfigKey[];
      io.out(table(
        ["SETTING", "VALUE", "FROM"],
        [
          ...keys.map((k) => {
            const value = k === "httpToken" && config.httpToken
              ? "(set)"
              : (CONFIG_FIELDS[k].format as (v: unknown) => string)(config[k]);
            return [k, value, origin[k]];
          }),
          ...(pull.given ? pullSettingRows(pull) : []),
        ],
      ));
      io.out(`\nflags: --${flagName("smtpListen")} ...; environment: ${envName("smtpListen")} ...`);
    }
    io.out("configuration OK");
    return 0;
  },
};

export const version: Command = {
  name: "version",
  summary: "Print the version, platform and runtime",
  usage: "version",
  options: {},
  run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const rt = runtimeInfo();
    io.out(`odmr-relay ${VERSION} (${platform()}, ${rt.name} ${rt.version}, schema ${MIGRATIONS.length})`);
    return 0;
  },
};
