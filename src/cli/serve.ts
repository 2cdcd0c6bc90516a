/** `serve`: run the relay until SIGTERM or SIGINT, then stop cleanly (exit 0). */
import process from "node:process";
import { Logger } from "../log/logger.ts";
import { startRelay } from "../relay.ts";
import { VERSION } from "../version.ts";
import { runtimeInfo } from "../runtime/runtime.ts";
import type { Command } from "./command.ts";
import { allConfigOptions, configFromArgs } from "./config_args.ts";

export const serve: Command = {
  name: "serve",
  summary: "Run the relay (intake MX, ODMR, HTTP API) in the foreground",
  usage: "serve [--config FILE] [--<setting> VALUE ...]   (see `check-config --help` for settings)",
  options: allConfigOptions(),
  async run(args, io) {
    const { config } = configFromArgs(args, io);
    const logger = new Logger({ level: config.logLevel, format: config.logFormat });
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
