/**
 * Telling the customer, not only the sender: a domain with a `notifyAddress` gets a short notice there
 * when its oldest queued mail has waited longer than its threshold (`notifyAfterMs`, default
 * `domainNotifyAfter`) and the domain has not been polled (ATRN) within that time either. At most one
 * notice per threshold period (`notified_at`, written in the same transaction as the notice).
 *
 * @module
 */
import { isAscii } from "../dsn/field_text.ts";
import { composeWaitingNotice } from "../dsn/waiting_notice.ts";
import { displayDomain } from "../smtp/idna.ts";
import { type ReportJobDeps, reportMessageId } from "./report_deps.ts";
import type { Report } from "./report_router.ts";
import type { DomainFacts } from "./report_store.ts";

/** What the notices need. */
export interface WaitingNoticeDeps extends ReportJobDeps {
  /** Default threshold (config `domainNotifyAfter`). */
  defaultAfterMs: number;
  /** The global queue lifetime (a domain's retention overrides it). */
  lifetimeMs: number;
}

/** Queues the notices that are due; returns how many. */
export function sendWaitingNotices(deps: WaitingNoticeDeps): number {
  const now = deps.clock.now();
  let sent = 0;
  for (const domain of deps.reports.domainsWithMail()) {
    if (!noticeMayBeDue(deps, domain, now)) continue;
    const { oldest, count } = deps.reports.oldestQueued(domain.name);
    const notice = waitingNotice(deps, domain, now, oldest, count);
    if (!notice) continue;
    deps.store.transaction(() => {
      deps.router.route(notice);
      deps.reports.setNotified(domain.name, now);
    });
    deps.logger.info("waiting notice queued", {
      domain: domain.name,
      to: domain.notifyAddress,
      waiting: count,
    });
    sent++;
  }
  return sent;
}

/** True when `domain` has a notify address and neither an ATRN nor a notice within its threshold. */
export function noticeMayBeDue(
  deps: Pick<WaitingNoticeDeps, "defaultAfterMs">,
  domain: DomainFacts,
  now: number,
): domain is DomainFacts & { notifyAddress: string } {
  if (!domain.notifyAddress) return false;
  const after = domain.notifyAfterMs ?? deps.defaultAfterMs;
  if (domain.lastAtrnAt !== null && domain.lastAtrnAt > now - after) return false;
  return domain.notifiedAt === null || domain.notifiedAt <= now - after;
}

/** The notice for `domain` when its oldest queued mail has waited past the threshold, else null. */
export function waitingNotice(
  deps: Pick<WaitingNoticeDeps, "defaultAfterMs" | "lifetimeMs" | "hostname" | "clock">,
  domain: DomainFacts & { notifyAddress: string },
  now: number,
  oldest: number | null,
  count: number,
): Report | null {
  const after = domain.notifyAfterMs ?? deps.defaultAfterMs;
  if (oldest === null || oldest > now - after) return null;
  const bytes = composeWaitingNotice({
    reportingMta: deps.hostname,
    messageId: reportMessageId(deps.clock),
    date: new Date(now),
    to: domain.notifyAddress,
    domain: displayDomain(domain.name),
    waiting: count,
    oldest: new Date(oldest),
    lastCollected: domain.lastAtrnAt === null ? null : new Date(domain.lastAtrnAt),
    expires: new Date(oldest + (domain.retentionMs ?? deps.lifetimeMs)),
  });
  return {
    kind: "notice",
    rcpt: domain.notifyAddress,
    bytes,
    eightBit: !isAscii(domain.notifyAddress + displayDomain(domain.name)),
    smtputf8: !isAscii(domain.notifyAddress),
  };
}
