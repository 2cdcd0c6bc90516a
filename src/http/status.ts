/**
 * The status report behind `GET /status`, the status page and `odmr-relay status`.
 *
 * Cost: O(domains). Queue totals come from the trigger-kept counters, per-domain counts from the
 * `domains` row, and each domain's oldest queued time is one index seek, taken only for domains
 * whose counter says they have mail. Mail waiting for its DSN is read through a partial index that
 * holds only those rows, and the outbound queue is small. Nothing here scans the recipients table.
 */
import type { OutboundCounts } from "../queue/outbound_queue.ts";
import type { PendingDsnCounts } from "../queue/reporting.ts";
import type { WatchingSession } from "../server/watch_sessions.ts";
import type { ClusterNode, Queue, QueueBackend } from "../queue/queue.ts";
import type { ListenerInfo, RelayState } from "../relay_state.ts";

/** One domain in the status report. */
export interface DomainStatus {
  name: string;
  account: string;
  hold: boolean;
  queuedRecipients: number;
  /** Sum of message sizes over queued recipients (a message to 2 recipients counts twice). */
  queuedBytes: number;
  oldestQueuedAt: string | null;
  oldestAgeSeconds: number | null;
  /** Last ATRN that turned or found no mail. */
  lastAtrn: { at: string; peer: string | null; delivered: number | null } | null;
  lastFailure: { at: string; text: string | null } | null;
}

/** One node of the cluster in the status report. */
export interface ClusterNodeStatus {
  name: string;
  hostname: string | null;
  /** True for the node that answered. */
  self: boolean;
  startedAt: string | null;
  lastHeartbeatAt: string | null;
  /** Seconds since its last heartbeat, on the database server's clock; null without heartbeats. */
  heartbeatAgeSeconds: number | null;
}

/** One recent ATRN session. */
export interface AtrnSessionStatus {
  id: number;
  username: string;
  domains: string[];
  peer: string;
  tls: boolean;
  startedAt: string;
  endedAt: string | null;
  delivered: number;
  deferred: number;
  failed: number;
  outcome: string;
}

/** The whole report (the `/status` JSON body). */
export interface StatusReport {
  version: string;
  runtime: string;
  now: string;
  startedAt: string;
  uptimeSeconds: number;
  shuttingDown: boolean;
  /**
   * The node answering: sessions, listeners and watching are this node's; queue, domains and history
   * are the whole (possibly shared) queue's.
   */
  node: { name: string; backend: QueueBackend; location: string };
  /** The nodes using the queue (PostgreSQL: live heartbeats; SQLite: this one). */
  cluster: { nodes: ClusterNodeStatus[] };
  listeners: (ListenerInfo & { address: string })[];
  sessions: { smtp: number; odmr: number };
  queue: {
    messages: number;
    recipients: number;
    bytes: number;
    oldestQueuedAt: string | null;
    oldestAgeSeconds: number | null;
  };
  /** Mail that could not be delivered (or was relayed with NOTIFY=SUCCESS) whose DSN is not yet queued. */
  failed: { recipients: number; messages: number };
  /** Turned sessions kept open for push delivery (`pull --watch`). */
  watching: { cid: string; username: string; domains: readonly string[]; since: string }[];
  /** Messages in the relay's own postmaster mailbox (bare RCPT TO:<Postmaster>), until deleted. */
  postmaster: { messages: number };
  /** DSNs, notices and postmaster copies waiting to go out (the outbound queue). */
  dsnsPending: { total: number; byKind: Record<string, number>; oldestAt: string | null };
  domains: DomainStatus[];
  recentAtrnSessions: AtrnSessionStatus[];
}

/** Recipients waiting for their DSN, from either queue backend (src/queue/reporting.ts). */
export interface PendingDsnSource {
  pendingCounts(): Promise<PendingDsnCounts>;
}

/** The outbound queue's counts, from either queue backend. */
export interface OutboundCountSource {
  counts(): Promise<OutboundCounts>;
}

/** What the report is built from. */
export interface StatusSources {
  store: Queue;
  state: RelayState;
  /** Absent in tests that build the app without the reporting side. */
  reports?: PendingDsnSource | undefined;
  outbound?: OutboundCountSource | undefined;
  watching?: readonly WatchingSession[];
  version: string;
  runtime: string;
  now: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const ageSeconds = (now: number, then: number) => Math.max(0, Math.floor((now - then) / 1000));

/** Builds the status report. */
export async function buildStatus(src: StatusSources, recentSessions = 10): Promise<StatusReport> {
  const { store, state, now } = src;
  const [counts, rows, postmasterMessages, sessions, failed, outboundCounts] = await Promise.all([
    store.queueCounts(),
    store.domainQueueStatus(),
    store.postmasterMailboxCount(),
    store.recentAtrnSessions(recentSessions),
    src.reports?.pendingCounts(),
    src.outbound?.counts(),
  ]);
  const clusterNodes = await store.clusterNodes();
  let oldest: number | null = null;
  for (const d of rows) {
    if (d.oldestQueuedAt !== null && (oldest === null || d.oldestQueuedAt < oldest)) {
      oldest = d.oldestQueuedAt;
    }
  }
  const domains = rows.map((d): DomainStatus => {
    const domainOldest = d.oldestQueuedAt;
    return {
      name: d.name,
      account: d.username,
      hold: d.hold,
      queuedRecipients: d.queuedRecipients,
      queuedBytes: d.queuedBytes,
      oldestQueuedAt: domainOldest === null ? null : iso(domainOldest),
      oldestAgeSeconds: domainOldest === null ? null : ageSeconds(now, domainOldest),
      lastAtrn: d.lastAtrnAt === null
        ? null
        : { at: iso(d.lastAtrnAt), peer: d.lastAtrnPeer, delivered: d.lastAtrnDelivered },
      lastFailure: d.lastFailureAt === null ? null : { at: iso(d.lastFailureAt), text: d.lastFailureText },
    };
  });
  return {
    version: src.version,
    runtime: src.runtime,
    now: iso(now),
    startedAt: iso(state.startedAt),
    uptimeSeconds: ageSeconds(now, state.startedAt),
    shuttingDown: state.shuttingDown,
    node: { name: store.node, backend: store.backend, location: store.location },
    cluster: { nodes: clusterNodes.map(clusterNodeStatus) },
    listeners: state.listeners.map((l) => ({
      ...l,
      address: l.host.includes(":") ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`,
    })),
    sessions: { smtp: state.activeSmtpSessions, odmr: state.activeOdmrSessions },
    queue: {
      messages: counts.messages,
      recipients: counts.queuedRecipients,
      bytes: counts.bytes,
      oldestQueuedAt: oldest === null ? null : iso(oldest),
      oldestAgeSeconds: oldest === null ? null : ageSeconds(now, oldest),
    },
    failed: failed ?? { recipients: 0, messages: 0 },
    dsnsPending: outboundStatus(outboundCounts),
    postmaster: { messages: postmasterMessages },
    watching: (src.watching ?? []).map((w) => ({ ...w, since: iso(w.since) })),
    domains,
    recentAtrnSessions: sessions.map((s) => ({
      id: s.id,
      username: s.username,
      domains: s.domains === "" ? [] : s.domains.split(","),
      peer: s.peer,
      tls: s.tls,
      startedAt: iso(s.startedAt),
      endedAt: s.endedAt === null ? null : iso(s.endedAt),
      delivered: s.delivered,
      deferred: s.deferred,
      failed: s.failed,
      outcome: s.outcome,
    })),
  };
}

function outboundStatus(counts: OutboundCounts | undefined): StatusReport["dsnsPending"] {
  return {
    total: counts?.pending ?? 0,
    byKind: counts?.byKind ?? {},
    oldestAt: counts?.oldestCreatedAt == null ? null : iso(counts.oldestCreatedAt),
  };
}

function clusterNodeStatus(n: ClusterNode): ClusterNodeStatus {
  return {
    name: n.name,
    hostname: n.hostname,
    self: n.self,
    startedAt: n.startedAt === null ? null : iso(n.startedAt),
    lastHeartbeatAt: n.heartbeatAt === null ? null : iso(n.heartbeatAt),
    heartbeatAgeSeconds: n.heartbeatAgeMs === null ? null : Math.max(0, Math.floor(n.heartbeatAgeMs / 1000)),
  };
}
