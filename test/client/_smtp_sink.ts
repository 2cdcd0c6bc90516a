/**
 * Runs Postfix's real `smtp-sink` on a free loopback port for interop tests.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as net from "node:net";
import process from "node:process";

/** Where Debian installs smtp-sink. */
export const SMTP_SINK = "/usr/sbin/smtp-sink";

/** Whether smtp-sink is installed. */
export function hasSmtpSink(): boolean {
  return existsSync(SMTP_SINK);
}

/** A running smtp-sink. */
export interface Sink {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Messages counted so far (from its `-c` counter output). */
  messages(): number;
  /** Waits until it has counted `n` messages (or throws after `ms`). */
  waitForMessages(n: number, ms?: number): Promise<void>;
  /** Opens a socket to it. */
  connect(): Promise<net.Socket>;
  /** Stops it. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts `smtp-sink -c [-u nobody] 127.0.0.1:PORT 100` and waits until it accepts connections. */
export async function startSmtpSink(extraArgs: string[] = []): Promise<Sink> {
  const port = await freePort();
  const args = ["-c", ...extraArgs];
  // smtp-sink refuses to run as root without an unprivileged user to switch to.
  if (process.getuid?.() === 0) args.push("-u", "nobody");
  args.push(`127.0.0.1:${port}`, "100");
  const child: ChildProcess = spawn(SMTP_SINK, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Uint8Array) => (output += new TextDecoder().decode(d)));
  child.stderr?.on("data", (d: Uint8Array) => (output += new TextDecoder().decode(d)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const connect = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(socket);
      });
      socket.once("error", reject);
    });
  // Bounded wait for the listener.
  for (let i = 0;; i++) {
    try {
      const probe = await connect();
      probe.destroy();
      break;
    } catch (err) {
      if (i >= 100) {
        child.kill();
        throw new Error(`smtp-sink did not start: ${output}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const messages = (): number => {
    const all = [...output.matchAll(/mesg=(\d+)/g)];
    return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
  };
  return {
    port,
    messages,
    async waitForMessages(n, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (messages() < n) {
        if (Date.now() > deadline) throw new Error(`smtp-sink counted ${messages()} of ${n} messages`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    connect,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
