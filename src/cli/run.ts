/**
 * Dispatches argv to the command table. Exit codes: 0 success, 1 the operation failed,
 * 2 bad arguments or configuration (one clear line on stderr).
 */
import { ConfigError } from "../config/load.ts";
import { CONFIG_FIELDS, envName, flagName, SECRET_FIELDS } from "../config/fields.ts";
import { StoreError } from "../queue/store.ts";
import { type CliIo, type Command, parseCommandArgs, UsageError } from "./command.ts";
import { COMMANDS } from "./commands.ts";

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "odmr-relay: On-Demand Mail Relay (RFC 2645) provider",
    "",
    "usage: odmr-relay COMMAND [options]     (odmr-relay COMMAND --help for details)",
    "",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

function commandHelp(command: Command): string {
  const lines = [`usage: odmr-relay ${command.usage}`, "", command.summary];
  if (command.name === "serve" || command.name === "check-config") {
    lines.push("", "settings (flag / environment; also in a JSON or TOML --config file):");
    for (const [key, field] of Object.entries(CONFIG_FIELDS)) {
      // A secret has no flag (a flag's value shows in `ps`): only the file or the environment.
      const flag = SECRET_FIELDS.has(key) ? "(no flag)" : `--${flagName(key)}`;
      lines.push(`  ${flag} (${envName(key)}) [${(field.format as (v: unknown) => string)(field.default)}]`);
      lines.push(`      ${field.doc}`);
    }
  }
  return lines.join("\n");
}

/** Finds the command whose (possibly two-word) name starts argv. */
function findCommand(argv: string[]): { command: Command; rest: string[] } | null {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(" ");
    const command = COMMANDS.find((c) => c.name === name);
    if (command) return { command, rest: argv.slice(words) };
  }
  return null;
}

/** Runs the CLI; returns the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.out(mainHelp());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === "--version" || argv[0] === "-V") argv = ["version"];
  const found = findCommand(argv);
  if (!found) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${argv[0]} `));
    if (group.length > 0) {
      io.err(
        `odmr-relay: ${argv[0]} needs a subcommand: ${group.map((c) => c.name.split(" ")[1]).join(", ")}`,
      );
    } else io.err(`odmr-relay: unknown command ${JSON.stringify(argv[0])} (try --help)`);
    return 2;
  }
  try {
    const args = parseCommandArgs(found.command, found.rest);
    if (args.values.help) {
      io.out(commandHelp(found.command));
      return 0;
    }
    return await found.command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`odmr-relay: ${error.message}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      io.err(`odmr-relay: bad configuration: ${error.message}`);
      return 2;
    }
    if (error instanceof StoreError) {
      io.err(`odmr-relay: ${error.message}`);
      return 1;
    }
    io.err(`odmr-relay: ${(error as Error).message ?? String(error)}`);
    return 1;
  }
}
