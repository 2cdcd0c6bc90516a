/** `serve`: run the relay until SIGTERM or SIGINT, then stop cleanly (exit 0). */
import process from "node:process";
import { Logger } from "../log/logger.ts";
import { startRelay } from "../relay.ts";
import { VERSION } from "../version.ts";
import { runtimeInfo } from "../runtime/runtime.ts";
import type { Command } from "./command.ts";
import { allConfigOptions, configFromArgs } from "./config_args.ts";
import { envName } from "../config/fields.ts";

/** True when `url` has a password in its user-info part. */
function hasPassword(url: string): boolean {
  try {
    return new URL(url).password !== "";
  } catch {
    return false;
  }
}

export const serve: Command = {
  name: "serve",
  summary: "Run the relay (intake MX, ODMR, HTTP API) in the foreground",
  usage: "serve [--config FILE] [--<setting> VALUE ...]   (see `check-config --help` for settings)",
  options: allConfigOptions(),
  async run(args, io) {
    const { config, origin } = configFromArgs(args, io);
    const logger = new Logger({ level: config.logLevel, format: config.logFormat });
    if (config.database !== null && origin.database.startsWith("flag") && hasPassword(config.database)) {
      // Every local user can read a process's arguments (ps, /proc): say where the password belongs.
      logger.warn("the --database URL carries a password that every local user can see in ps", {
        instead: `${envName("database")}, the config file, PGPASSWORD or ~/.pgpass`,
      });
    }
    const runtime = runtimeInfo();
    logger.info("starting", {
      version: VERSION,
      runtime: `${runtime.name} ${runtime.version}`,
      dataDir: config.dataDir,
    });
    const relay = await startRelay(config, logger);
    await new Promise<void>((resolve) => {
      const onSignal = (signal: string) => {
        logger.info("stopping", { signal });
        process.off("SIGTERM", onTerm);
        process.off("SIGINT", onInt);
        resolve();
      };
      const onTerm = () => onSignal("SIGTERM");
      const onInt = () => onSignal("SIGINT");
      process.on("SIGTERM", onTerm);
      process.on("SIGINT", onInt);
    });
    await relay.stop();
    logger.info("stopped");
    return 0;
  },
};
