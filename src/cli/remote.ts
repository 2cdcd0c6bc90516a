/**
 * Commands that act on a RUNNING relay through its HTTP API, so the relay stays the only writer of
 * the queue (docs/design.md#seams, 8, as Caddy's CLI does): `status`, `queue list|show|delete|bounce`,
 * `domain hold|release`.
 *
 * Where the relay is: `--http-url`, else the config's `httpListen` (from --config, the environment
 * or defaults; a wildcard bind address is reached on loopback). The token comes from the config's
 * `httpToken` (file or ODMR_RELAY_HTTP_TOKEN), never from a flag: a flag shows up in `ps` output.
 */
import { formatListen } from "../config/fields.ts";
import { formatAge, formatBytes } from "../http/format.ts";
import type { ErrorBody } from "../http/errors.ts";
import type {
  DomainHoldResult,
  QueueBounceResult,
  QueueDeleteResult,
  QueueListPage,
  QueueMessageView,
} from "../http/queue_routes.ts";
import type { StatusReport } from "../http/status.ts";
import {
  type CliIo,
  type Command,
  noExtraPositionals,
  type ParsedArgs,
  positional,
  table,
  UsageError,
} from "./command.ts";
import { configFromArgs } from "./config_args.ts";

/** Options every remote command takes. */
const REMOTE_OPTIONS = {
  "http-url": { type: "string" as const },
  config: { type: "string" as const, short: "c" },
  json: { type: "boolean" as const },
};

/** How long to wait for the relay before giving up. */
const REQUEST_TIMEOUT_MS = 30_000;

/** The relay's base URL and token. */
export function remoteTarget(args: ParsedArgs, io: CliIo): { base: string; token: string | null } {
  const { config } = configFromArgs(args, io);
  const given = args.values["http-url"];
  if (typeof given === "string" && given !== "") {
    let url: URL;
    try {
      url = new URL(given);
    } catch {
      throw new UsageError(`--http-url: ${JSON.stringify(given)} is not a URL (try http://127.0.0.1:8025)`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new UsageError("--http-url must start with http:// or https://");
    }
    return { base: url.href.replace(/\/+$/, ""), token: config.httpToken };
  }
  if (!config.httpListen) {
    throw new UsageError("the HTTP API is off in this configuration (httpListen); pass --http-url");
  }
  // A relay bound to every interface is still reachable on loopback, which is where we talk to it.
  const host = config.httpListen.host === "0.0.0.0"
    ? "127.0.0.1"
    : config.httpListen.host === "::"
    ? "::1"
    : config.httpListen.host;
  return { base: `http://${formatListen({ host, port: config.httpListen.port })}`, token: config.httpToken };
}

/** Calls the API; returns the parsed JSON body or throws an Error with the relay's `{error}`. */
async function call(
  args: ParsedArgs,
  io: CliIo,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const { base, token } = remoteTarget(args, io);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new Error(
      `cannot reach the relay at ${base} (${(error as Error).message}); is \`odmr-relay serve\` running?`,
    );
  }
  const text = await response.text();
  let parsed: unknown = text;
  if ((response.headers.get("content-type") ?? "").includes("json")) {
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`the relay at ${base} answered ${response.status} with malformed JSON`);
    }
  }
  if (!response.ok) {
    const reason = typeof parsed === "object" && parsed !== null && "error" in parsed
      ? String((parsed as ErrorBody).error)
      : `HTTP ${response.status}`;
    throw new Error(`${reason} (HTTP ${response.status})`);
  }
  return parsed;
}

function messageId(args: ParsedArgs, command: string): string {
  const id = positional(args, 0, "ID", command);
  noExtraPositionals(args, 1, command);
  if (!/^[1-9][0-9]{0,14}$/.test(id)) throw new UsageError(`${command}: ID must be a positive integer`);
  return id;
}

const ageOf = (
  iso: string | null,
  now: number,
) => (iso === null ? "-" : formatAge((now - Date.parse(iso)) / 1000));

export const statusCommand: Command = {
  name: "status",
  summary: "Show the running relay's status: listeners, sessions, queue per domain",
  usage: "status [--json] [--http-url URL] [--config FILE]",
  options: REMOTE_OPTIONS,
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const report = await call(args, io, "GET", "/status") as StatusReport;
    if (args.values.json) {
      io.out(JSON.stringify(report, null, 2));
      return 0;
    }
    const now = Date.parse(report.now);
    const q = report.queue;
    io.out(
      [
        `odmr-relay ${report.version} (${report.runtime}), up ${formatAge(report.uptimeSeconds)}`,
        // Sessions and listeners below are this node's; the queue is the cluster's (one database).
        `node: ${report.node.name} (${report.node.backend} ${report.node.location})` +
        (report.node.backend === "postgres"
          ? `; cluster: ${report.cluster.nodes.map((n) => (n.self ? `${n.name} (this)` : n.name)).join(", ")}`
          : ""),
        `listeners: ${
          report.listeners.map((l) => `${l.name} ${l.address}${l.tls === "none" ? "" : ` ${l.tls}`}`).join(
            ", ",
          ) || "none"
        }`,
        `sessions: ${report.sessions.smtp} smtp, ${report.sessions.odmr} odmr; watching (push): ${
          report.watching.map((w) => `${w.username} [${w.domains.join(",")}]`).join(", ") || "none"
        }`,
        `queue: ${q.messages} message(s), ${q.recipients} recipient(s), ${formatBytes(q.bytes)}, oldest ${
          q.oldestAgeSeconds === null ? "-" : formatAge(q.oldestAgeSeconds)
        }`,
        `failed (DSN being written): ${report.failed.recipients} recipient(s); ` +
        `DSNs and notices pending: ${report.dsnsPending.total}; ` +
        `postmaster mailbox: ${report.postmaster.messages} message(s) (queue list shows them)`,
        "",
        table(
          ["DOMAIN", "ACCOUNT", "QUEUED", "BYTES", "OLDEST", "LAST ATRN", "HOLD"],
          report.domains.map((d) => [
            d.name,
            d.account,
            d.queuedRecipients,
            formatBytes(d.queuedBytes),
            d.oldestAgeSeconds === null ? "-" : formatAge(d.oldestAgeSeconds),
            d.lastAtrn ? `${ageOf(d.lastAtrn.at, now)} ago` : "never",
            d.hold ? "held" : "-",
          ]),
        ),
      ].join("\n"),
    );
    return 0;
  },
};

export const queueList: Command = {
  name: "queue list",
  summary: "List queued messages of the running relay (filter by domain and status, paginated)",
  usage:
    "queue list [--domain D] [--status queued|failed|relayed] [--after ID] [--limit N] [--json] [--http-url URL]",
  options: {
    ...REMOTE_OPTIONS,
    domain: { type: "string" },
    status: { type: "string" },
    after: { type: "string" },
    limit: { type: "string" },
  },
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    const query = new URLSearchParams();
    for (const key of ["domain", "status", "after", "limit"]) {
      const value = args.values[key];
      if (typeof value === "string") query.set(key, value);
    }
    const status = args.values.status;
    // failed and relayed: DSN still to be written (it leaves the queue once it is).
    if (typeof status === "string" && status !== "queued" && status !== "failed" && status !== "relayed") {
      throw new UsageError(`${this.name}: --status must be queued, failed or relayed`);
    }
    for (const key of ["after", "limit"]) {
      const value = args.values[key];
      if (typeof value === "string" && !/^[1-9][0-9]{0,14}$/.test(value)) {
        throw new UsageError(`${this.name}: --${key} must be a positive integer`);
      }
    }
    const qs = query.toString();
    const page = await call(args, io, "GET", `/queue${qs ? `?${qs}` : ""}`) as QueueListPage;
    if (args.values.json) {
      io.out(JSON.stringify(page, null, 2));
      return 0;
    }
    const now = Date.now();
    io.out(table(
      ["ID", "AGE", "SIZE", "FROM", "RECIPIENTS"],
      page.messages.map((m) => [
        m.id,
        ageOf(m.receivedAt, now),
        formatBytes(m.size),
        m.mailFrom === "" ? "<>" : m.mailFrom,
        m.recipients.map((r) => (r.status === "queued" ? r.address : `${r.address} (${r.status})`)).join(
          ", ",
        ),
      ]),
    ));
    if (page.messages.length === 0) io.out("(no messages)");
    if (page.next !== null) io.out(`more: queue list --after ${page.next}`);
    return 0;
  },
};

export const queueShow: Command = {
  name: "queue show",
  summary: "Show one message: envelope, headers, per-recipient state (--body adds the message itself)",
  usage: "queue show ID [--body] [--json] [--http-url URL]",
  options: { ...REMOTE_OPTIONS, body: { type: "boolean" } },
  async run(args, io) {
    const id = messageId(args, this.name);
    const m = await call(args, io, "GET", `/queue/${id}`) as QueueMessageView;
    const body = args.values.body ? await call(args, io, "GET", `/queue/${id}/body`) as string : null;
    if (args.values.json) {
      io.out(JSON.stringify(body === null ? m : { ...m, body }, null, 2));
      return 0;
    }
    io.out([
      `message ${m.id}, ${formatBytes(m.size)}, received ${m.receivedAt}`,
      `from: ${m.mailFrom === "" ? "<>" : m.mailFrom}`,
      `client: ${m.clientHelo} [${m.clientIp}]${m.tls ? " TLS" : ""}`,
      "",
      table(
        ["RCPT", "ADDRESS", "STATUS", "ATTEMPTS", "LAST REPLY"],
        m.recipients.map((r) => [
          r.id,
          r.address,
          r.status,
          r.attempts,
          r.lastCode === null ? "-" : `${r.lastCode} ${r.lastText ?? ""}`.trim(),
        ]),
      ),
      "",
      ...m.headers.map((h) => `${h.name}: ${h.value}`),
    ].join("\n"));
    if (body !== null) io.out(`\n${body}`);
    return 0;
  },
};

export const queueDelete: Command = {
  name: "queue delete",
  summary: "Delete a message from the running relay's queue (no DSN is sent)",
  usage: "queue delete ID [--json] [--http-url URL]",
  options: REMOTE_OPTIONS,
  async run(args, io) {
    const id = messageId(args, this.name);
    const result = await call(args, io, "DELETE", `/queue/${id}`) as QueueDeleteResult;
    io.out(args.values.json ? JSON.stringify(result) : `message ${id} deleted`);
    return 0;
  },
};

export const queueBounce: Command = {
  name: "queue bounce",
  summary:
    "Return a message to its sender now: its queued recipients fail and a DSN says an operator returned it",
  usage: "queue bounce ID [--reason TEXT] [--json] [--http-url URL]",
  options: { ...REMOTE_OPTIONS, reason: { type: "string" } },
  async run(args, io) {
    const id = messageId(args, this.name);
    const reason = args.values.reason;
    const result = await call(
      args,
      io,
      "POST",
      `/queue/${id}/bounce`,
      typeof reason === "string" ? { reason } : {},
    ) as QueueBounceResult;
    io.out(
      args.values.json
        ? JSON.stringify(result)
        : `message ${id}: ${result.bounced} recipient(s) bounced; ${
          result.dsn === "queued" ? "DSN queued" : `no DSN (${result.dsn.replace(/^none: /, "")})`
        }`,
    );
    return 0;
  },
};

function holdCommand(action: "hold" | "release"): Command {
  return {
    name: `domain ${action}`,
    summary: action === "hold"
      ? "Hold a domain on the running relay: keep its mail, deliver none on ATRN"
      : "Release a held domain: its mail goes out on the next ATRN",
    usage: `domain ${action} DOMAIN [--json] [--http-url URL]`,
    options: REMOTE_OPTIONS,
    async run(args, io) {
      const domain = positional(args, 0, "DOMAIN", this.name);
      noExtraPositionals(args, 1, this.name);
      const result = await call(
        args,
        io,
        "POST",
        `/domains/${encodeURIComponent(domain)}/${action}`,
      ) as DomainHoldResult;
      io.out(
        args.values.json
          ? JSON.stringify(result)
          : `domain ${result.domain} ${action === "hold" ? "held" : "released"}`,
      );
      return 0;
    },
  };
}

export const domainHold: Command = holdCommand("hold");
export const domainRelease: Command = holdCommand("release");
