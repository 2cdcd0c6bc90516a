/**
 * Live, in-memory facts about the running relay that the HTTP API reports: listeners, active
 * sessions and event counters. Counters are monotonic since start (Prometheus counters).
 */

/** One listener as reported by /status. */
export interface ListenerInfo {
  name: "smtp" | "odmr" | "odmrs" | "http";
  host: string;
  port: number;
  tls: "none" | "starttls" | "implicit";
  bound: boolean;
}

/** Counters keyed by a label value (reason, outcome...). */
export class LabeledCounter {
  readonly values = new Map<string, number>();
  inc(label: string, by = 1): void {
    this.values.set(label, (this.values.get(label) ?? 0) + by);
  }
  get(label: string): number {
    return this.values.get(label) ?? 0;
  }
  total(): number {
    let sum = 0;
    for (const v of this.values.values()) sum += v;
    return sum;
  }
}

/** Everything the status API reads that is not in the database. */
export class RelayState {
  readonly startedAt: number;
  readonly listeners: ListenerInfo[] = [];
  activeSmtpSessions = 0;
  activeOdmrSessions = 0;
  /**
   * Connections by listener and result. Keys are `listener-result` (for example
   * `smtp-accepted`, `odmr-rejected-limit`, `odmrs-refused-shutdown`), as src/server writes them;
   * /metrics splits a key after the listener name into the `listener` and `result` labels.
   */
  readonly connections = new LabeledCounter();
  /** Messages accepted (label "accepted") or rejected by reason. */
  readonly messages = new LabeledCounter();
  bytesReceived = 0;
  /** ATRN sessions by outcome. */
  readonly atrnSessions = new LabeledCounter();
  /** Recipients delivered / deferred / failed over ATRN. */
  readonly recipients = new LabeledCounter();
  /** Failed AUTH attempts by reason ("bad-credentials", "ip-blocked", "account-locked"...). */
  readonly authFailures = new LabeledCounter();
  /**
   * DSNs (failures, delay warnings, success notices) really sent: accepted by the sender's MX or the
   * smarthost, or queued here for a hosted sender.
   */
  dsnsSent = 0;
  /** DSNs queued, by kind (failure, delay, relayed). */
  readonly dsnsQueued = new LabeledCounter();
  /** Outbound attempts by result (delivered, deferred, dropped). */
  readonly outbound = new LabeledCounter();
  shuttingDown = false;

  constructor(now: number = Date.now()) {
    this.startedAt = now;
  }

  /** Counts one connection on `listener` ending in `result` ("accepted", "rejected-limit"...). */
  countConnection(listener: ListenerInfo["name"], result: string): void {
    this.connections.inc(`${listener}-${result}`);
  }
}
