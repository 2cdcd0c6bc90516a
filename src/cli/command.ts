/**
 * The command table's vocabulary: a command has a name, a one-line summary, a usage text, its own
 * `parseArgs` options and a `run`. Bad arguments throw UsageError (exit 2); an operation that
 * fails throws any other Error (exit 1).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** What a command can write to and read from (tests pass their own). */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  readStdin(): Promise<string>;
  env: Record<string, string | undefined>;
}

/** One CLI command. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /** Returns the exit code. */
  run(args: ParsedArgs, io: CliIo): Promise<number> | number;
}

/** Flags and positionals after parsing. */
export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Wrong arguments: one clear line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses `argv` for `command`, turning parseArgs' errors into UsageError. */
export function parseCommandArgs(command: Command, argv: string[]): ParsedArgs {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...command.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { values: parsed.values as ParsedArgs["values"], positionals: parsed.positionals };
  } catch (error) {
    throw new UsageError(`${command.name}: ${(error as Error).message.split("\n")[0]}`);
  }
}

/** The `--data-dir` option shared by commands that open the database directly. */
export const DATA_DIR_OPTION = { "data-dir": { type: "string" as const } };

/** A required positional argument, or UsageError naming it. */
export function positional(args: ParsedArgs, index: number, name: string, command: string): string {
  const value = args.positionals[index];
  if (value === undefined || value === "") throw new UsageError(`${command}: missing ${name}`);
  return value;
}

/** Fails when more positionals were given than the command takes. */
export function noExtraPositionals(args: ParsedArgs, max: number, command: string): void {
  if (args.positionals.length > max) {
    throw new UsageError(`${command}: unexpected argument ${JSON.stringify(args.positionals[max])}`);
  }
}

/** Formats rows as an aligned text table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}
