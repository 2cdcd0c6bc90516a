/**
 * `GET /metrics`: Prometheus text exposition format 0.0.4.
 *
 * Names follow Prometheus conventions: prefix `odmr_relay_`, base units in the name (`_bytes`,
 * `_seconds`), `_total` on counters. Every metric gets HELP and TYPE lines, even with no samples
 * yet, so dashboards can be built before the first event. Counters come from RelayState (since
 * start); queue gauges come from the `domains` counters plus one index seek per domain with mail
 * (store.domainQueueStatus), never from a queue scan.
 */
import process from "node:process";
import type { Queue } from "../queue/queue.ts";
import type { OutboundCountSource, PendingDsnSource } from "./status.ts";
import type { WatchingSession } from "../server/watch_sessions.ts";
import type { LabeledCounter, RelayState } from "../relay_state.ts";

/** The content type Prometheus expects for the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;

/** Escapes a label value: backslash, double quote and line feed (exposition format spec). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escapes HELP text: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Formats a sample value (integers plainly; non-finite as +Inf/-Inf/NaN). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Accumulates metric families in order and renders them. */
class Exposition {
  readonly #lines: string[] = [];

  family(
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: Iterable<[Labels, number]>,
  ): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
      this.#lines.push(`${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${formatValue(value)}`);
    }
  }

  one(name: string, type: "counter" | "gauge", help: string, value: number): void {
    this.family(name, type, help, [[{}, value]]);
  }

  render(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/** Splits a connection key after its listener name ("odmrs" before "odmr"). */
const LISTENER_KEY = /^(smtp|odmrs|odmr|http)[-:](.+)$/;

/** Samples of a one-label counter, with `known` label values present even at zero. */
function labeled(counter: LabeledCounter, label: string, known: readonly string[] = []): [Labels, number][] {
  const keys = new Set([...known, ...[...counter.values.keys()].sort()]);
  return [...keys].map((k) => [{ [label]: k }, counter.get(k)]);
}

/** What /metrics is built from. */
export interface MetricsSources {
  store: Queue;
  state: RelayState;
  reports?: PendingDsnSource | undefined;
  outbound?: OutboundCountSource | undefined;
  watching?: readonly WatchingSession[];
  version: string;
  runtime: string;
  now: number;
}

/** Renders every metric. */
export async function renderMetrics(src: MetricsSources): Promise<string> {
  const { store, state, now } = src;
  const out = new Exposition();

  out.family("odmr_relay_build_info", "gauge", "Build information; the value is always 1.", [[
    { version: src.version, runtime: src.runtime },
    1,
  ]]);
  // Which node this is: the session and counter metrics are this node's, the queue's are the cluster's.
  out.family("odmr_relay_node_info", "gauge", "This node's name and queue backend; the value is always 1.", [[
    { node: store.node, backend: store.backend },
    1,
  ]]);
  out.one(
    "odmr_relay_cluster_nodes",
    "gauge",
    "Relay nodes using the queue (PostgreSQL: heartbeat younger than the lease ttl; SQLite: 1).",
    (await store.clusterNodes()).length,
  );
  out.one(
    "odmr_relay_start_time_seconds",
    "gauge",
    "Start time of the process, seconds since the epoch.",
    state.startedAt / 1000,
  );
  out.one(
    "odmr_relay_uptime_seconds",
    "gauge",
    "Seconds since the relay started.",
    Math.max(0, (now - state.startedAt) / 1000),
  );
  out.one(
    "odmr_relay_process_resident_memory_bytes",
    "gauge",
    "Resident set size of the relay process in bytes.",
    process.memoryUsage().rss,
  );

  // Connections: keys are "listener-result" (RelayState.connections).
  out.family(
    "odmr_relay_connections_total",
    "counter",
    "Connections by listener and result (accepted, or the reason they were refused).",
    [...state.connections.values.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) => {
      const m = LISTENER_KEY.exec(key);
      const labels = m ? { listener: m[1]!, result: m[2]! } : { listener: "unknown", result: key };
      return [labels, value] as [Labels, number];
    }),
  );
  out.family("odmr_relay_active_sessions", "gauge", "Sessions in progress by listener.", [
    [{ listener: "smtp" }, state.activeSmtpSessions],
    [{ listener: "odmr" }, state.activeOdmrSessions],
  ]);
  out.one(
    "odmr_relay_messages_accepted_total",
    "counter",
    "Messages accepted into the queue by the intake.",
    state.messages.get("accepted"),
  );
  out.family(
    "odmr_relay_messages_rejected_total",
    "counter",
    "Messages (or transactions) rejected by the intake, by reason.",
    // Keys are "accepted" or "rejected-<reason>" (src/server/intake.ts).
    [...state.messages.values.entries()].filter(([k]) => k !== "accepted").sort(([a], [b]) =>
      a.localeCompare(b)
    )
      .map((
        [k, v],
      ): [Labels, number] => [{ reason: k.startsWith("rejected-") ? k.slice("rejected-".length) : k }, v]),
  );
  out.one(
    "odmr_relay_received_bytes_total",
    "counter",
    "Message bytes received by the intake.",
    state.bytesReceived,
  );
  out.family(
    "odmr_relay_atrn_sessions_total",
    "counter",
    "ATRN sessions by outcome.",
    labeled(state.atrnSessions, "outcome", ["turned", "no-mail", "refused", "busy", "error"]),
  );
  out.family(
    "odmr_relay_recipients_total",
    "counter",
    "Recipients handled over ATRN by result (delivered, deferred, failed).",
    labeled(state.recipients, "result", ["delivered", "deferred", "failed"]),
  );
  out.one(
    "odmr_relay_dsns_sent_total",
    "counter",
    "DSNs accepted by the sender's MX or the smarthost, or queued here for a hosted sender.",
    state.dsnsSent,
  );
  out.family(
    "odmr_relay_dsns_queued_total",
    "counter",
    "DSNs composed and queued, by kind (failure, delay, relayed).",
    labeled(state.dsnsQueued, "kind", ["failure", "delay", "relayed"]),
  );
  out.family(
    "odmr_relay_outbound_attempts_total",
    "counter",
    "Outbound delivery attempts (DSNs, notices) by result.",
    labeled(state.outbound, "result", ["delivered", "deferred", "dropped"]),
  );
  out.family(
    "odmr_relay_auth_failures_total",
    "counter",
    "Failed AUTH attempts by reason.",
    labeled(state.authFailures, "reason"),
  );

  const counts = await store.queueCounts();
  out.one("odmr_relay_queue_messages", "gauge", "Messages in the queue.", counts.messages);
  out.one(
    "odmr_relay_queue_size_bytes",
    "gauge",
    "Stored size of the messages in the queue, each message once.",
    counts.bytes,
  );

  const domains = await store.domainQueueStatus();
  out.family(
    "odmr_relay_domain_queued_recipients",
    "gauge",
    "Queued recipients per domain, waiting for an ATRN.",
    domains.map((d) => [{ domain: d.name }, d.queuedRecipients]),
  );
  out.family(
    "odmr_relay_domain_queued_bytes",
    "gauge",
    "Bytes queued per domain: message size summed over its queued recipients.",
    domains.map((d) => [{ domain: d.name }, d.queuedBytes]),
  );
  out.family(
    "odmr_relay_domain_oldest_queued_age_seconds",
    "gauge",
    "Age of the oldest queued recipient per domain (0 when the domain has no mail).",
    domains.map((d) => [
      { domain: d.name },
      d.oldestQueuedAt === null ? 0 : Math.max(0, Math.floor((now - d.oldestQueuedAt) / 1000)),
    ]),
  );
  out.family(
    "odmr_relay_domain_held",
    "gauge",
    "1 when the domain is on hold (mail kept, not delivered on ATRN).",
    domains.map((d) => [{ domain: d.name }, d.hold ? 1 : 0]),
  );
  const [failed, outboundCounts] = await Promise.all([src.reports?.pendingCounts(), src.outbound?.counts()]);
  out.one(
    "odmr_relay_failed_recipients",
    "gauge",
    "Recipients that failed (or were relayed with NOTIFY=SUCCESS) whose DSN is not queued yet.",
    failed?.recipients ?? 0,
  );
  out.one(
    "odmr_relay_watching_sessions",
    "gauge",
    "Turned sessions kept open for push delivery (pull --watch).",
    src.watching?.length ?? 0,
  );
  out.one(
    "odmr_relay_outbound_pending",
    "gauge",
    "DSNs and notices waiting in the outbound queue.",
    outboundCounts?.pending ?? 0,
  );
  out.family(
    "odmr_relay_domain_oldest_queued_timestamp_seconds",
    "gauge",
    "Arrival time of the oldest queued recipient per domain, seconds since the epoch (absent: no mail).",
    domains.filter((d) => d.oldestQueuedAt !== null).map((
      d,
    ) => [{ domain: d.name }, d.oldestQueuedAt! / 1000]),
  );
  out.family(
    "odmr_relay_domain_last_collected_timestamp_seconds",
    "gauge",
    "Time of the domain's last ATRN poll (collection, or no mail), seconds since the epoch.",
    domains.filter((d) => d.lastAtrnAt !== null).map((d) => [{ domain: d.name }, d.lastAtrnAt! / 1000]),
  );
  out.family(
    "odmr_relay_domain_last_atrn_timestamp_seconds",
    "gauge",
    "Time of the domain's last ATRN collection, seconds since the epoch.",
    domains.filter((d) => d.lastAtrnAt !== null).map((d) => [{ domain: d.name }, d.lastAtrnAt! / 1000]),
  );
  return out.render();
}
