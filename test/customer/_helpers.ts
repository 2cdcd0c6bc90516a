/**
 * Helpers for the customer-side tests: the pull daemon run in-process against real relays (with the
 * intervals injected, far below the configurable minimum), its results and its log lines.
 *
 * @module
 */
import { runCli } from "../../src/cli/run.ts";
import type { HostPort } from "../../src/config/fields.ts";
import { runDaemon } from "../../src/customer/daemon.ts";
import type { PollResult } from "../../src/customer/outcome.ts";
import { pull, type PullOptions } from "../../src/customer/pull.ts";
import type { PollSchedule } from "../../src/customer/schedule.ts";
import { GracefulStop } from "../../src/customer/stop.ts";
import { Logger } from "../../src/log/logger.ts";

/** A fast schedule for tests: polls 150 ms apart, retries after 100 ms doubling to 400 ms. */
export const FAST: PollSchedule = { everyMs: 150, jitter: 0, backoffMs: 100, backoffMaxMs: 400 };

/** What every poll in these tests shares: alice at the ODMR test relay, plaintext unless told. */
export function pollOptions(
  localPort: number,
  extra: Partial<PullOptions> = {},
): Omit<PullOptions, "host" | "port"> {
  return {
    tls: "none",
    username: "alice",
    secret: "alice-secret",
    domains: ["example.test"],
    helo: "customer.test",
    localHost: "127.0.0.1",
    localPort,
    connectTimeoutMs: 5000,
    timeoutMs: 10_000,
    logger: new Logger({ level: "error", sink: () => {} }),
    ...extra,
  };
}

/** A daemon running in-process. */
export interface TestDaemon {
  results: PollResult[];
  /** Its log lines (logfmt). */
  logs: string[];
  /** Asks it to stop (like SIGTERM) and waits, bounded, until it has. */
  stop(): Promise<void>;
  /** Waits (bounded) until some poll result matches. */
  waitForResult(match: (r: PollResult) => boolean, what: string, timeoutMs?: number): Promise<PollResult>;
}

/** Starts the daemon over `providers` with `options` for each poll. */
export function startDaemon(
  providers: HostPort[],
  options: Omit<PullOptions, "host" | "port">,
  schedule: PollSchedule = FAST,
  graceMs = 5000,
): TestDaemon {
  const results: PollResult[] = [];
  const logs: string[] = [];
  const stop = new GracefulStop(graceMs);
  const logger = new Logger({ level: "info", sink: (line) => logs.push(line) });
  const running = runDaemon({
    providers,
    schedule,
    stop,
    logger,
    poll: (provider, signals) => pull({ ...options, host: provider.host, port: provider.port, ...signals }),
    onPoll: (r) => results.push(r),
  });
  return {
    results,
    logs,
    async stop() {
      stop.request();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("daemon did not stop")), 15_000);
      });
      try {
        await Promise.race([running, late]);
      } finally {
        clearTimeout(timer);
        stop.dispose();
      }
    },
    async waitForResult(match, what, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = results.find(match);
        if (found) return found;
        if (Date.now() > deadline) {
          throw new Error(
            `timed out waiting for ${what}; polls: ${results.map((r) => r.outcome).join(", ")}`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** `pull` flags for alice at test relays into a local server on `smtpPort`; later flags in `extra` win. */
export function pullArgs(servers: string, smtpPort: number, extra: string[] = []): string[] {
  return [
    "pull",
    "--server",
    servers,
    "--user",
    "alice",
    "--domains",
    "example.test",
    "--smtp",
    `127.0.0.1:${smtpPort}`,
    "--tls",
    "none",
    "--log-level",
    "error",
    ...extra,
  ];
}

/** Runs the CLI in-process with `env` (the secret in ODMR_RELAY_PULL_SECRET by default); stdout and stderr together. */
export async function runCliCaptured(
  argv: string[],
  env: Record<string, string> = { ODMR_RELAY_PULL_SECRET: "alice-secret" },
): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await runCli(argv, {
    out: (t) => (out += t + "\n"),
    err: (t) => (out += t + "\n"),
    readStdin: () => Promise.resolve(""),
    env,
  });
  return { code, out };
}
