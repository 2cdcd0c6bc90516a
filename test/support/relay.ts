/**
 * Starts the REAL relay in-process for tests: `startRelay` with a config from `loadConfig({ flags })`,
 * every listener on 127.0.0.1 port 0, a temp data directory, a capturing logger, and accounts and
 * domains seeded through the store (cheap CRAM-MD5 secrets from `testSecrets`).
 *
 * `config` overrides are applied AFTER loadConfig, so tests can go below the config minimums
 * (a 200 ms idle timeout, 100 recipients...) without weakening the real validation.
 *
 * @module
 */
import type { Config, ConfigKey } from "../../src/config/fields.ts";
import { loadConfig } from "../../src/config/load.ts";
import { Logger } from "../../src/log/logger.ts";
import type { QueueStore } from "../../src/queue/store.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";
import { type Relay, type RelayOptions, startRelay } from "../../src/relay.ts";
import type { SmtpService } from "../../src/server/smtp_service.ts";
import type { TestCert } from "./certs.ts";
import { testSecrets } from "./store.ts";
import { tempDir } from "./temp.ts";

/** One seeded account and the domains it owns. */
export interface SeedAccount {
  username: string;
  password: string;
  /** Domains owned by the account; `mailboxes` makes a domain validate local parts (not catch-all). */
  domains: Array<string | { name: string; mailboxes?: string[] }>;
  disabled?: boolean;
}

/** The default seed: alice owns catch-all example.test and strict.test (mailboxes bob, Carol). */
export const DEFAULT_SEED: SeedAccount[] = [
  {
    username: "alice",
    password: "alice-secret",
    domains: ["example.test", { name: "strict.test", mailboxes: ["bob", "Carol"] }],
  },
  { username: "dave", password: "dave-secret", domains: ["other.test"] },
];

/** Options of {@link startTestRelay}. */
export interface TestRelayOptions {
  /** Config values as the CLI would give them (validated, minimums apply). */
  flags?: Partial<Record<ConfigKey, string | boolean>>;
  /** Typed values applied after loading (not validated: may go below the minimums). */
  config?: Partial<Config>;
  /** A certificate: enables STARTTLS on smtp/odmr and starts the odmrs listener. */
  cert?: TestCert;
  /** Start the ODMR listeners (default true; they are "off" until the relay wires them). */
  odmr?: boolean;
  /** Start the HTTP API on a free loopback port (default false). */
  http?: boolean;
  /** Lowest level captured into `logs` (default "debug"). */
  logLevel?: Config["logLevel"];
  /** Echo log lines to stderr as well (default: only when ODMR_TEST_LOG=1). */
  echoLogs?: boolean;
  /** Use this data directory instead of a fresh temp one. */
  dataDir?: string;
  /** AUTH failure delays (default: the real 1 s doubling; tests pass e.g. `{ baseDelayMs: 20 }`). */
  authThrottle?: RelayOptions["authThrottle"];
  /** The relay's clock (tests move it to expire mail or reach a delay-warning step). */
  clock?: RelayOptions["clock"];
}

/** A relay started for a test. */
export interface TestRelay {
  relay: Relay;
  config: Config;
  /** The intake service: `runTranscript(relay.smtp, ...)` runs a transcript in memory, no socket. */
  smtp: SmtpService;
  /** The plaintext ODMR service, in memory likewise (throws when this relay runs without ODMR). */
  readonly odmr: SmtpService;
  /** Real bound ports; 0 when that listener is not running. */
  smtpPort: number;
  odmrPort: number;
  odmrsPort: number;
  httpPort: number;
  dataDir: string;
  store: QueueStore;
  /** Captured log lines (logfmt). */
  logs: string[];
  /** Stops the relay (graceful; idempotent). */
  stop(): Promise<void>;
}

/** Port of the service called `name` (0 when it is not running). */
export function servicePort(relay: Relay, name: string): number {
  const service = relay.services.find((s) => s.name === name);
  if (!service) return 0;
  try {
    return service.address().port;
  } catch {
    return 0;
  }
}

/** Starts the real relay with seeded accounts and domains; see the module documentation. */
export async function startTestRelay(
  options: TestRelayOptions = {},
  seed: SeedAccount[] = DEFAULT_SEED,
): Promise<TestRelay> {
  const dataDir = options.dataDir ?? tempDir("odmr-relay-test-");
  const odmr = options.odmr ?? true;
  const flags: Partial<Record<ConfigKey, string | boolean>> = {
    dataDir,
    hostname: "mx.relay.test",
    smtpListen: "127.0.0.1:0",
    odmrListen: odmr ? "127.0.0.1:0" : "off",
    odmrsListen: odmr && options.cert ? "127.0.0.1:0" : "off",
    httpListen: options.http ? "127.0.0.1:0" : "off",
    smtpMinFreeSpace: "0",
    shutdownGrace: "5s",
    // DSNs must never leave the machine: unless a test points them somewhere, they go to a loopback
    // port where nothing listens, fail at once and wait in the outbound queue (network only to loopback).
    smarthost: "127.0.0.1:1",
    smarthostTls: "opportunistic",
    ...(options.cert ? { tlsCertFile: options.cert.certFile, tlsKeyFile: options.cert.keyFile } : {}),
    ...options.flags,
  };
  const { config } = loadConfig({ flags, env: {} });
  Object.assign(config, options.config ?? {});
  const logs: string[] = [];
  const echo = options.echoLogs ?? (globalThis as { process?: { env?: Record<string, string> } }).process
        ?.env?.ODMR_TEST_LOG === "1";
  const logger = new Logger({
    level: options.logLevel ?? "debug",
    format: "logfmt",
    sink: (line) => {
      logs.push(line);
      if (logs.length > 10_000) logs.splice(0, logs.length - 10_000);
      if (echo) console.error(line);
    },
  });
  const relay = await startRelay(config, logger, {
    ...(options.authThrottle ? { authThrottle: options.authThrottle } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  // These test relays run on the embedded queue: seed and inspect it synchronously.
  if (!(relay.queue instanceof SqliteQueue)) throw new Error("startTestRelay runs on the SQLite queue");
  const store = relay.queue.store;
  for (const account of seed) {
    store.addAccount(account.username, testSecrets(account.password));
    if (account.disabled) store.setAccountDisabled(account.username, true);
    for (const d of account.domains) {
      if (typeof d === "string") store.addDomain(d, account.username);
      else store.addDomain(d.name, account.username, d.mailboxes ? { mailboxes: d.mailboxes } : {});
    }
  }
  return {
    relay,
    config,
    smtp: relay.services.find((s) => s.name === "smtp")!,
    get odmr() {
      const service = relay.services.find((s) => s.name === "odmr");
      if (!service) throw new Error("this test relay runs without ODMR");
      return service;
    },
    smtpPort: servicePort(relay, "smtp"),
    odmrPort: servicePort(relay, "odmr"),
    odmrsPort: servicePort(relay, "odmrs"),
    httpPort: relay.http?.port ?? 0,
    dataDir,
    store,
    logs,
    stop: () => relay.stop(),
  };
}
