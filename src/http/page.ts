/**
 * The status page at `/`: server-rendered HTML from the status report.
 *
 * Hono's `html` tagged template escapes every interpolated value, so domain names, peers and
 * failure texts (which come from the network) cannot inject markup; only the template's own
 * literals are raw. We use the `html` helper rather than JSX so nothing depends on a JSX
 * transform being configured the same way in deno, bun and `bun build --compile`.
 *
 * No external assets: inline CSS, no scripts (the CSP header below forbids them), a meta refresh
 * every 30 s. On narrow screens each table row becomes a card, so it reads on a phone.
 */
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { formatAge, formatBytes } from "./format.ts";
import type { DomainStatus, StatusReport } from "./status.ts";

/** Seconds between automatic reloads of the page. */
export const REFRESH_SECONDS = 30;

/** Security headers for the page: nothing but its own inline style may load. */
export const PAGE_HEADERS: Record<string, string> = {
  "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

const STYLE = `
:root { color-scheme: light dark; --fg: #1d2125; --muted: #5f6b76; --line: #d8dde2; --bar: #2f7dd1;
  --bg: #fff; --card: #f5f7f9; --warn: #b35c00; --bad: #b3261e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8ea; --muted: #9aa5af; --line: #39414a;
  --bar: #5aa2ee; --bg: #15191d; --card: #1f252b; --warn: #f0a040; --bad: #ff7a70; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1rem; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg); }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.meta { color: var(--muted); font-size: .85rem; margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(8.5rem, 1fr)); gap: .5rem;
  margin-top: 1rem; }
.card { background: var(--card); border-radius: 6px; padding: .5rem .75rem; }
.card b { display: block; font-size: 1.2rem; }
.card span { color: var(--muted); font-size: .8rem; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: block; height: 6px; background: var(--line); border-radius: 3px; margin-top: 3px;
  min-width: 4rem; }
.bar > span { display: block; height: 100%; background: var(--bar); border-radius: 3px; }
.held { color: var(--warn); font-weight: 600; }
.fail { color: var(--bad); }
.muted { color: var(--muted); }
@media (max-width: 640px) {
  thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { background: var(--card); border-radius: 6px; margin-bottom: .5rem; padding: .25rem 0; }
  td { border: 0; padding: .15rem .75rem; text-align: left; }
  td.num { text-align: left; }
  td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); font-size: .8rem; }
}
`;

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

function ago(iso: string | null, now: number): string {
  if (iso === null) return "never";
  return `${formatAge((now - Date.parse(iso)) / 1000)} ago`;
}

function domainRow(d: DomainStatus, maxQueued: number, now: number): Html {
  // Proportional to the largest queue on the page; a non-empty queue always shows a sliver.
  const pct = maxQueued === 0 || d.queuedRecipients === 0
    ? 0
    : Math.max(2, Math.round((d.queuedRecipients / maxQueued) * 100));
  return html`
    <tr>
      <td class="name"><b>${d.name}</b>${d.hold
        ? html`
          <span class="held">held</span>
        `
        : ""}</td>
      <td data-label="Account">${d.account}</td>
      <td data-label="Queued"
        class="num">${d.queuedRecipients}<span class="bar" title="${d
          .queuedRecipients} queued"><span style="width:${pct}%"></span></span></td>
      <td data-label="Bytes" class="num">${formatBytes(d.queuedBytes)}</td>
      <td data-label="Oldest">${d.oldestAgeSeconds === null
        ? html`<span class="muted">-</span>`
        : formatAge(d.oldestAgeSeconds)}</td>
      <td data-label="Last collection">${d.lastAtrn
        ? html`${ago(d.lastAtrn.at, now)} <span class="muted">from ${d.lastAtrn.peer ?? "?"}, ${
          d.lastAtrn.delivered ?? 0
        } delivered</span>`
        : html`<span class="muted">never</span>`}${d.lastFailure
        ? html`<br><span class="fail">failed ${ago(d.lastFailure.at, now)}: ${
          d.lastFailure.text ?? ""
        }</span>`
        : ""}</td>
    </tr>
  `;
}

/** Renders the whole page. */
export function renderStatusPage(report: StatusReport): Html {
  const now = Date.parse(report.now);
  const maxQueued = Math.max(0, ...report.domains.map((d) => d.queuedRecipients));
  const q = report.queue;
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="refresh" content="${REFRESH_SECONDS}">
        <title>odmr-relay status</title>
        <style>${raw(STYLE)}</style>
      </head>
      <body>
    <header>
    <h1>odmr-relay <span class="muted" id="node-name">${report.node.name}</span></h1>
    <p class="meta">version ${report.version} on ${report.runtime} · ${report.node
      .backend} queue · up ${formatAge(
        report.uptimeSeconds,
      )} · ${report.now} · refreshes every ${REFRESH_SECONDS}s${report.shuttingDown
      ? html`
        · <span class="fail">shutting down</span>
      `
      : ""}</p>
    </header>
    <section class="cards" aria-label="Queue totals">
    <div class="card"><b id="total-messages">${q.messages}</b><span>messages queued</span></div>
    <div class="card"><b id="total-recipients">${q.recipients}</b><span>recipients queued</span></div>
    <div class="card"><b>${formatBytes(q.bytes)}</b><span>queued size</span></div>
    <div class="card"><b>${q.oldestAgeSeconds === null
      ? "-"
      : formatAge(q.oldestAgeSeconds)}</b><span>oldest message</span></div>
    <div class="card"><b>${report.sessions.smtp} / ${report.sessions
      .odmr}</b><span>SMTP / ODMR sessions</span></div>
    <div class="card"><b id="failed-recipients">${report.failed
      .recipients}</b><span>failed, DSN being written</span></div>
    <div class="card"><b id="dsns-pending">${report.dsnsPending
      .total}</b><span>DSNs and notices pending</span></div>
    </section>
    <h2>Domains (${report.domains.length})</h2>
    ${report.domains.length === 0
      ? html`<p class="muted">No hosted domains yet: add one with <code>odmr-relay domain add</code>.</p>`
      : html`
        <table id="domains">
          <thead>
            <tr>
              <th>Domain</th>
              <th>Account</th>
              <th>Queued</th>
              <th>Bytes</th>
              <th>Oldest</th>
              <th>Last collection</th>
            </tr>
          </thead>
          <tbody>
        ${report.domains.map((d) => domainRow(d, maxQueued, now))}
          </tbody>
        </table>
      `}
    <h2>Recent ATRN sessions</h2>
    ${report.recentAtrnSessions.length === 0 ? html`<p class="muted">None yet.</p>` : html`
      <table id="sessions">
        <thead>
          <tr>
            <th>When</th>
            <th>Account</th>
            <th>Domains</th>
            <th>Peer</th>
            <th>Outcome</th>
            <th>Delivered</th>
          </tr>
        </thead>
        <tbody>
      ${report.recentAtrnSessions.map((s) =>
        html`
          <tr>
            <td data-label="When">${ago(s.endedAt ?? s.startedAt, now)}</td>
            <td data-label="Account">${s.username}</td>
            <td data-label="Domains">${s.domains.join(", ")}</td>
            <td data-label="Peer">${s.peer}${s.tls ? " (TLS)" : ""}</td>
            <td data-label="Outcome" ${s.outcome === "error"
              ? html`
                class="fail"
              `
              : ""}>${s.outcome}</td>
            <td data-label="Delivered" class="num">${s.delivered}${s.deferred || s.failed
              ? html`
                <span class="muted">(${s.deferred} deferred, ${s.failed} failed)</span>
              `
              : ""}</td>
          </tr>
        `
      )}
        </tbody>
      </table>
    `}
    <h2>Cluster (${report.cluster.nodes.length} ${report.cluster.nodes.length === 1 ? "node" : "nodes"})</h2>
    <p class="meta">Queue, domains and ATRN history are the whole queue's; sessions, listeners and watching
      sessions are this node's.</p>
    <ul id="cluster">
    ${report.cluster.nodes.map((n) =>
      html`<li><b>${n.name}</b>${
        n.self
          ? html`
            <span class="muted">(this node)</span>
          `
          : ""
      }${
        n.hostname && n.hostname !== n.name
          ? html`
            on ${n.hostname}
          `
          : ""
      }${
        n.heartbeatAgeSeconds === null ? "" : html`
          <span class="muted">· heartbeat ${formatAge(n.heartbeatAgeSeconds)} ago</span>
        `
      }</li>`
    )}
    </ul>
    <h2>Listeners</h2>
    <ul>
    ${report.listeners.map((l) =>
      html`<li>${l.name} on ${l.address} (${l.tls === "none" ? "no TLS" : l.tls})${
        l.bound ? "" : html`
          <span class="fail">not bound</span>
        `
      }</li>`
    )}
    </ul>
    <p class="meta">JSON: <a href="/status">/status</a> · Prometheus: <a href="/metrics">/metrics</a></p>
      </body>
    </html>
  `;
}
