/**
 * Structured logging: one line per event, logfmt (default) or JSON, on stderr.
 * Every line carries a time, a level and a message, then fields; sessions add a connection id
 * (`cid`) with `child()`. Wire traces go at level "trace" and are redacted by the caller.
 */

import { type Clock, systemClock } from "../clock.ts";

/** Log levels, lowest first. */
export const LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
export type Level = typeof LEVELS[number];
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** Where finished lines go (stderr by default; tests capture them). */
export type LogSink = (line: string) => void;

/** Options for a root logger. */
export interface LoggerOptions {
  level?: Level;
  format?: "logfmt" | "json";
  sink?: LogSink;
  /** The clock of the `time` field (src/clock.ts). */
  clock?: Clock;
}

/** A structured logger. */
export class Logger {
  readonly #rank: number;
  readonly #format: "logfmt" | "json";
  readonly #sink: LogSink;
  readonly #fields: LogFields;
  readonly #clock: Clock;

  constructor(options: LoggerOptions = {}, fields: LogFields = {}) {
    this.#rank = LEVELS.indexOf(options.level ?? "info");
    this.#format = options.format ?? "logfmt";
    this.#sink = options.sink ?? ((line) => process.stderr.write(line + "\n"));
    this.#clock = options.clock ?? systemClock;
    this.#fields = fields;
  }

  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger {
    return new Logger(
      { level: LEVELS[this.#rank]!, format: this.#format, sink: this.#sink, clock: this.#clock },
      { ...this.#fields, ...fields },
    );
  }

  /** True when lines at `level` are written (skip building costly fields otherwise). */
  enabled(level: Level): boolean {
    return LEVELS.indexOf(level) >= this.#rank;
  }

  trace(msg: string, fields?: LogFields): void {
    this.log("trace", msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }

  /** Writes one line if `level` is enabled. */
  log(level: Level, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    const all: LogFields = {
      time: new Date(this.#clock.now()).toISOString(),
      level,
      msg,
      ...this.#fields,
      ...fields,
    };
    this.#sink(this.#format === "json" ? JSON.stringify(dropUndefined(all)) : toLogfmt(all));
  }
}

function dropUndefined(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  return out;
}

/** key=value pairs; values with spaces, quotes, '=' or control characters are quoted and escaped. */
export function toLogfmt(fields: LogFields): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = value === null ? "" : String(value);
    // deno-lint-ignore no-control-regex
    const needsQuotes = text === "" || /[\s"=\\\x00-\x1f\x7f]/.test(text);
    parts.push(`${key}=${needsQuotes ? JSON.stringify(text) : text}`);
  }
  return parts.join(" ");
}

/** A logger that drops everything (for tests and tools that do not log). */
export function silentLogger(): Logger {
  return new Logger({ level: "error", sink: () => {} });
}
