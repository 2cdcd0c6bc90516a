/** `domain add|remove|list`: hosted domains (what the intake accepts and an account may ATRN). */
import { formatDuration, formatSize, parseDuration, parseSize } from "../config/units.ts";
import { isValidDomain } from "../smtp/domain.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import { type Command, noExtraPositionals, positional, table, UsageError } from "./command.ts";
import { DATA_OPTIONS, withStore } from "./config_args.ts";
import type { Queue } from "../queue/queue.ts";

/**
 * The DOMAIN argument in the queue's canonical form (lower-case A-labels: `böb.test` is stored as
 * `xn--bb-fka.test`, RFC 5890 2.3.2.1); a usage error when it is not a valid domain name.
 */
function domainArgument(args: Parameters<Command["run"]>[0], command: string): string {
  const given = positional(args, 0, "DOMAIN", command);
  const domain = canonicalDomain(given.trim());
  if (domain === null || !isValidDomain(domain) || !domain.includes(".")) {
    throw new UsageError(
      `${command}: ${given} is not a valid domain name (letters, digits, hyphens, dots, or IDNA labels)`,
    );
  }
  return domain;
}

export const domainAdd: Command = {
  name: "domain add",
  summary: "Host a domain for an account (catch-all unless --mailboxes is given)",
  usage: "domain add DOMAIN --user NAME [--mailboxes a,b,c] [--data-dir DIR | --database URL]",
  options: { ...DATA_OPTIONS, user: { type: "string", short: "u" }, mailboxes: { type: "string" } },
  async run(args, io) {
    const domain = domainArgument(args, this.name);
    noExtraPositionals(args, 1, this.name);
    const user = args.values.user;
    if (typeof user !== "string" || user === "") throw new UsageError(`${this.name}: missing --user NAME`);
    const mailboxes = typeof args.values.mailboxes === "string"
      ? args.values.mailboxes.split(",").map((m) => m.trim()).filter((m) => m !== "")
      : [];
    await withStore(args, io, async (store) => {
      await store.addDomain(domain, user, { mailboxes });
    });
    io.out(
      `domain ${domain} added for ${user}${mailboxes.length ? ` (mailboxes: ${mailboxes.join(", ")})` : ""}`,
    );
    return 0;
  },
};

export const domainRemove: Command = {
  name: "domain remove",
  summary: "Stop hosting a domain (refused while mail is queued, unless --force deletes it)",
  usage: "domain remove DOMAIN [--force] [--data-dir DIR | --database URL]",
  options: { ...DATA_OPTIONS, force: { type: "boolean" } },
  async run(args, io) {
    const domain = domainArgument(args, this.name);
    noExtraPositionals(args, 1, this.name);
    await withStore(args, io, async (store) => {
      const { deletedRecipients } = await store.removeDomain(domain, { force: args.values.force === true });
      io.out(
        `domain ${domain} removed${
          deletedRecipients ? `; ${deletedRecipients} queued recipient(s) deleted` : ""
        }`,
      );
    });
    return 0;
  },
};

export const domainList: Command = {
  name: "domain list",
  summary: "List hosted domains with owner and queue size",
  usage: "domain list [--json] [--data-dir DIR | --database URL]",
  options: { ...DATA_OPTIONS, json: { type: "boolean" } },
  async run(args, io) {
    noExtraPositionals(args, 0, this.name);
    await withStore(args, io, async (store) => {
      const rows = await store.listDomains();
      if (args.values.json) io.out(JSON.stringify(rows, null, 2));
      else {
        io.out(table(
          ["DOMAIN", "USER", "QUEUED", "BYTES", "HOLD", "RECIPIENTS", "RETENTION", "QUOTA"],
          rows.map((d) => [
            d.name,
            d.username,
            d.queuedRecipients,
            d.queuedBytes,
            d.hold ? "held" : "-",
            d.catchAll ? "catch-all" : `${d.mailboxes} mailbox(es)`,
            d.retentionMs === null ? "default" : formatDuration(d.retentionMs),
            d.quotaBytes === null ? "none" : formatSize(d.quotaBytes),
          ]),
        ));
      }
    });
    return 0;
  },
};

export const domainSet: Command = {
  name: "domain set",
  summary: "Change a domain's queue lifetime, quota, mailboxes, routing-syntax policy or waiting-mail notice",
  usage: "domain set DOMAIN [--retention DURATION|default] [--quota SIZE|none] " +
    "[--mailboxes a,b,c | --catch-all] [--allow-routing-syntax yes|no] " +
    "[--notify-address ADDR|none] [--notify-after 24h|default] [--data-dir DIR | --database URL]",
  options: {
    ...DATA_OPTIONS,
    retention: { type: "string" },
    quota: { type: "string" },
    "allow-routing-syntax": { type: "string" },
    "notify-address": { type: "string" },
    "notify-after": { type: "string" },
    mailboxes: { type: "string" },
    "catch-all": { type: "boolean" },
  },
  async run(args, io) {
    const domain = domainArgument(args, this.name);
    noExtraPositionals(args, 1, this.name);
    const v = args.values;
    const changes: Parameters<Queue["updateDomain"]>[1] = {};
    if (typeof v.retention === "string") {
      const ms = v.retention === "default" ? null : parseDuration(v.retention);
      if (v.retention !== "default" && (ms === null || ms < 60_000)) {
        throw new UsageError(
          `${this.name}: --retention must be a duration of at least 1m (like 7d), or "default"`,
        );
      }
      changes.retentionMs = ms;
    }
    if (typeof v.quota === "string") {
      const bytes = v.quota === "none" ? null : parseSize(v.quota);
      if (v.quota !== "none" && (bytes === null || bytes <= 0)) {
        throw new UsageError(`${this.name}: --quota must be a size like 500MiB, or "none"`);
      }
      changes.quotaBytes = bytes;
    }
    if (typeof v.mailboxes === "string" && v["catch-all"]) {
      throw new UsageError(`${this.name}: give --mailboxes or --catch-all, not both`);
    }
    if (typeof v.mailboxes === "string") {
      const list = v.mailboxes.split(",").map((m) => m.trim()).filter((m) => m !== "");
      if (list.length === 0) throw new UsageError(`${this.name}: --mailboxes needs at least one local part`);
      changes.mailboxes = list;
    }
    if (v["catch-all"]) changes.mailboxes = null;
    const routing = v["allow-routing-syntax"];
    if (typeof routing === "string") {
      // `user%other@domain`, `other!user@domain`, `"user@other"@domain`: refused unless allowed.
      if (!["yes", "no"].includes(routing)) {
        throw new UsageError(`${this.name}: --allow-routing-syntax must be yes or no`);
      }
      changes.allowRoutingSyntax = routing === "yes";
    }
    const notify = v["notify-address"];
    if (typeof notify === "string") {
      // The customer's address outside the domain (e.g. a phone's mail): told when mail waits uncollected.
      if (notify !== "none") {
        const at = notify.lastIndexOf("@");
        const notifyDomain = at > 0 ? canonicalDomain(notify.slice(at + 1)) : null;
        // RFC 5321 4.1.2: a Dot-string local part (no quoting: this address is typed by an operator).
        const localOk = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/.test(
          notify.slice(0, at),
        );
        if (
          notifyDomain === null || !isValidDomain(notifyDomain) || !notifyDomain.includes(".") || !localOk
        ) {
          throw new UsageError(
            `${this.name}: --notify-address must be an address like owner@example.net, or "none"`,
          );
        }
        // Mail to the domain itself would wait in the very queue nobody collects.
        if (notifyDomain === domain) {
          throw new UsageError(
            `${this.name}: --notify-address must be outside ${domain}: it would never be collected`,
          );
        }
      }
      changes.notifyAddress = notify === "none" ? null : notify;
    }
    const after = v["notify-after"];
    if (typeof after === "string") {
      const ms = after === "default" ? null : parseDuration(after);
      if (after !== "default" && (ms === null || ms < 60_000)) {
        throw new UsageError(
          `${this.name}: --notify-after must be a duration of at least 1m (like 24h), or "default"`,
        );
      }
      changes.notifyAfterMs = ms;
    }
    if (Object.keys(changes).length === 0) {
      throw new UsageError(
        `${this.name}: nothing to change (--retention, --quota, --mailboxes, --catch-all, ` +
          "--allow-routing-syntax, --notify-address or --notify-after)",
      );
    }
    await withStore(args, io, async (store) => {
      await store.updateDomain(domain, changes);
    });
    io.out(`domain ${domain} updated`);
    return 0;
  },
};
