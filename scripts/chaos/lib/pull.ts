/**
 * `odmr-relay pull` as the customer: the binary's own ODMR client, in plaintext (`--tls none`,
 * loopback only), bridging the relay's mail into a local sink. Bounded: a pull that outlives its
 * limit is killed and reported as such.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cleanEnv } from "./relay.ts";

/** How a pull ended. */
export interface PullResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A running pull; `done` settles when the process has exited. */
export interface RunningPull {
  done: Promise<PullResult>;
  kill(): void;
}

/** Starts a pull of `domains` for `user` (secret in `secretFile`) from the relay into the sink. */
export function startPull(options: {
  binary: string;
  odmrPort: number;
  sinkPort: number;
  user: string;
  secretFile: string;
  domains: string[];
  limitMs: number;
}): RunningPull {
  const t0 = performance.now();
  const p = spawn(options.binary, [
    "pull",
    "--server",
    `127.0.0.1:${options.odmrPort}`,
    "--user",
    options.user,
    "--domains",
    options.domains.join(","),
    "--password-file",
    options.secretFile,
    "--smtp",
    `127.0.0.1:${options.sinkPort}`,
    "--tls",
    "none",
    "--timeout",
    `${Math.max(1, Math.ceil(options.limitMs / 1000))}s`,
  ], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  p.stdout!.on("data", (d) => (stdout += d));
  p.stderr!.on("data", (d) => (stderr += d));
  const killer = setTimeout(() => p.kill("SIGKILL"), options.limitMs + 5000);
  const done = new Promise<PullResult>((resolve) => {
    p.on("exit", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
    });
  });
  return { done, kill: () => p.kill("SIGKILL") };
}

/** Writes a secret where `pull --password-file` reads it. */
export function writeSecret(path: string, secret: string): string {
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return path;
}
