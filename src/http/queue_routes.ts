/**
 * Queue and domain administration (bearer token always required; see auth.ts):
 *
 *   GET    /queue?domain=&status=queued|failed&after=ID&limit=N   list, keyset-paginated by id
 *   GET    /queue/:id                                           envelope, headers, recipients
 *   GET    /queue/:id/body                                      the stored message (message/rfc822)
 *   DELETE /queue/:id                                           delete the message, no DSN
 *   POST   /queue/:id/bounce   {"reason"?: string}              fail its queued recipients
 *   POST   /domains/:name/hold | /domains/:name/release         keep or release a domain's mail
 *
 * The running relay stays the only writer of the queue: the CLI goes through these routes
 * (docs/design.md#seams, 8).
 */
import { Hono } from "hono";
import type { Queue } from "../queue/queue.ts";
import { toAsyncIterator } from "../client/body_writer.ts";
import type { Logger } from "../log/logger.ts";
import { isValidDomain } from "../smtp/domain.ts";
import { needsDsn } from "../dsn/policy.ts";
import { canonicalDomain } from "../smtp/idna.ts";
import { BadRequest, errorResponse } from "./errors.ts";

/** Most rows one page of GET /queue returns (the store caps at the same number). */
export const MAX_PAGE = 500;
/** Rows per page when `limit` is not given. */
export const DEFAULT_PAGE = 50;
/** How much of a body is read to find the header section for GET /queue/:id. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Longest operator-supplied bounce reason (it goes into the DSN's diagnostic text). */
export const MAX_REASON_LENGTH = 200;

const DEFAULT_BOUNCE_REASON = "Bounced by the relay operator";

/** Parses a message id path segment: a positive integer without sign, exponent or leading zero. */
export function parseId(raw: string): number {
  if (!/^[1-9][0-9]{0,14}$/.test(raw)) {
    throw new BadRequest(`Message id must be a positive integer, not ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function parseIntParam(raw: string | undefined, name: string, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,15}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new BadRequest(`${name} must be a whole number from ${min} to ${max}`);
  }
  return Number(raw);
}

/** A domain from the URL in the queue's canonical form (lower-case A-labels; look-alikes refused). */
function parseDomain(raw: string): string {
  const domain = canonicalDomain(raw);
  if (domain === null || !isValidDomain(domain)) {
    throw new BadRequest(`${JSON.stringify(raw)} is not a valid domain name`);
  }
  return domain;
}

/** One header field of a stored message, unfolded. */
export interface HeaderField {
  name: string;
  value: string;
}

/**
 * The header section of a stored message (RFC 5322 2.2), read chunk by chunk and stopping at
 * the blank line or MAX_HEADER_BYTES, so showing a 50 MB message does not load its body.
 */
export async function readHeaders(
  store: Pick<Queue, "readBody">,
  id: number,
): Promise<{ fields: HeaderField[]; truncated: boolean }> {
  const decoder = new TextDecoder("utf-8", { fatal: false });
  let text = "";
  let truncated = true;
  for await (const chunk of store.readBody(id)) {
    text += decoder.decode(chunk, { stream: true });
    const end = text.search(/\r?\n\r?\n/);
    if (end >= 0) {
      text = text.slice(0, end);
      truncated = false;
      break;
    }
    if (text.length >= MAX_HEADER_BYTES) break;
  }
  if (truncated && text.length < MAX_HEADER_BYTES) truncated = false; // the body was all header
  text = text.slice(0, MAX_HEADER_BYTES);
  const fields: HeaderField[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && fields.length > 0) {
      // RFC 5322 2.2.3: unfold continuation lines.
      fields[fields.length - 1]!.value += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
  }
  return { fields, truncated };
}

/** True when `text` holds a C0 control or DEL (a reason must stay one printable line in the DSN). */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

function iso(ms: number): string;
function iso(ms: number | null): string | null;
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

// The response bodies, shared with the CLI (src/cli/remote.ts), so both sides read one shape.

/** GET /queue: one page of messages. */
export interface QueueListPage {
  messages: QueueListItem[];
  /** Pass as `after` for the following page; null on the last one (keyset pagination). */
  next: number | null;
}

/** A message in GET /queue. */
export interface QueueListItem {
  id: number;
  /** ISO 8601. */
  receivedAt: string;
  mailFrom: string;
  size: number;
  recipients: { id: number; address: string; status: string; attempts: number; lastCode: number | null }[];
}

/** GET /queue/:id: the envelope, the header section and every recipient (the body is /queue/:id/body). */
export interface QueueMessageView {
  id: number;
  /** ISO 8601. */
  receivedAt: string;
  mailFrom: string;
  size: number;
  chunkCount: number;
  clientIp: string;
  clientHelo: string;
  tls: boolean;
  bodyType: string | null;
  smtputf8: boolean;
  eightBit: boolean;
  envid: string | null;
  ret: string | null;
  headers: HeaderField[];
  /** The header section was longer than MAX_HEADER_BYTES and is cut there. */
  headersTruncated: boolean;
  recipients: QueueRecipientView[];
}

/** A recipient in GET /queue/:id; times are ISO 8601. */
export interface QueueRecipientView {
  id: number;
  address: string;
  domain: string;
  status: string;
  attempts: number;
  lastCode: number | null;
  lastText: string | null;
  lastAttemptAt: string | null;
  queuedAt: string;
  notify: string | null;
  orcpt: string | null;
}

/** DELETE /queue/:id. */
export interface QueueDeleteResult {
  deleted: number;
}

/** POST /queue/:id/bounce: how many recipients failed, and whether the sender gets a DSN. */
export interface QueueBounceResult {
  id: number;
  bounced: number;
  reason: string;
  dsn: "queued" | "none: null sender" | "none: NOTIFY";
}

/** POST /domains/:name/hold and /release. */
export interface DomainHoldResult {
  domain: string;
  hold: boolean;
}

/** What the queue routes are told about the rest of the relay. */
export interface QueueRouteHooks {
  /** An operator bounced a message: run the DSN step. */
  onBounced?: (() => void) | undefined;
  /** Domains being delivered right now. */
  busyDomains?: (() => Promise<readonly string[]>) | undefined;
}

/** Builds the administration routes (mounted behind requireAdmin). */
export function queueRoutes(store: Queue, logger: Logger, hooks: QueueRouteHooks = {}): Hono {
  const app = new Hono();

  app.get("/queue", async (c) => {
    const q = c.req.query();
    for (const key of Object.keys(q)) {
      if (!["domain", "status", "after", "limit"].includes(key)) {
        throw new BadRequest(`Unknown query parameter ${JSON.stringify(key)} (domain, status, after, limit)`);
      }
    }
    const status = q.status;
    if (status !== undefined && status !== "queued" && status !== "failed" && status !== "relayed") {
      throw new BadRequest("status must be queued, failed or relayed");
    }
    const domain = q.domain === undefined ? undefined : parseDomain(q.domain);
    if (domain !== undefined && !(await store.hasDomain(domain))) {
      return errorResponse(c, 404, `No hosted domain ${domain}`);
    }
    const after = parseIntParam(q.after, "after", 0, Number.MAX_SAFE_INTEGER) ?? 0;
    const limit = parseIntParam(q.limit, "limit", 1, MAX_PAGE) ?? DEFAULT_PAGE;
    const rows = await store.listQueue({
      afterId: after,
      limit,
      ...(domain === undefined ? {} : { domain }),
      ...(status === undefined ? {} : { status }),
    });
    const last = rows[rows.length - 1];
    const page: QueueListPage = {
      messages: rows.map((m) => ({ ...m, receivedAt: iso(m.receivedAt) })),
      // Keyset pagination: pass `next` as `after` for the following page; null on the last one.
      next: rows.length === limit && last ? last.id : null,
    };
    return c.json(page);
  });

  app.get("/queue/:id", async (c) => {
    const id = parseId(c.req.param("id"));
    const m = await store.getMessage(id);
    if (!m) return errorResponse(c, 404, `No message ${id}`);
    const { fields, truncated } = await readHeaders(store, id);
    const { bodyInline: _body, ...envelope } = m;
    const view: QueueMessageView = {
      ...envelope,
      receivedAt: iso(m.receivedAt),
      headers: fields,
      headersTruncated: truncated,
      recipients: m.recipients.map((r) => ({
        id: r.id,
        address: r.address,
        domain: r.domain,
        status: r.status,
        attempts: r.attempts,
        lastCode: r.lastCode,
        lastText: r.lastText,
        lastAttemptAt: iso(r.lastAttemptAt),
        queuedAt: iso(r.queuedAt),
        notify: r.notify,
        orcpt: r.orcpt,
      })),
    };
    return c.json(view);
  });

  // The body only on request, streamed one stored chunk at a time.
  app.get("/queue/:id/body", async (c) => {
    const id = parseId(c.req.param("id"));
    const m = await store.getMessage(id);
    if (!m) return errorResponse(c, 404, `No message ${id}`);
    const chunks = toAsyncIterator(store.readBody(id));
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const next = await chunks.next();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        } catch (error) {
          // Deleted while streaming: end the response with an error rather than hanging.
          controller.error(error);
        }
      },
      async cancel() {
        await chunks.return?.(undefined);
      },
    });
    // No Content-Length: `size` counts what the intake received, and the stream is the truth.
    return c.body(stream, 200, { "Content-Type": "message/rfc822" });
  });

  app.delete("/queue/:id", async (c) => {
    const id = parseId(c.req.param("id"));
    if (!(await store.deleteMessage(id))) return errorResponse(c, 404, `No message ${id}`);
    logger.info("message deleted by operator", { id });
    const result: QueueDeleteResult = { deleted: id };
    return c.json(result);
  });

  app.post("/queue/:id/bounce", async (c) => {
    const id = parseId(c.req.param("id"));
    let reason = DEFAULT_BOUNCE_REASON;
    const raw = await c.req.text();
    if (raw.trim() !== "") {
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        throw new BadRequest('Request body must be JSON: {"reason": "..."}');
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new BadRequest("Request body must be a JSON object");
      }
      const given = (body as Record<string, unknown>).reason;
      if (given !== undefined) {
        if (
          typeof given !== "string" || given.trim() === "" || given.length > MAX_REASON_LENGTH ||
          hasControlCharacter(given)
        ) {
          throw new BadRequest(`reason must be one line of 1 to ${MAX_REASON_LENGTH} printable characters`);
        }
        reason = given.trim();
      }
    }
    const message = await store.getMessage(id);
    if (!message) return errorResponse(c, 404, `No message ${id}`);
    const queued = message.recipients.filter((r) => r.status === "queued");
    // The customer may be accepting this very message now: bouncing it too would report a delivered
    // recipient as failed.
    const busy = new Set(await hooks.busyDomains?.() ?? []);
    if (queued.some((r) => busy.has(r.domain))) {
      return errorResponse(
        c,
        409,
        `Message ${id} is being delivered right now; try again when the session ends`,
      );
    }
    const bounced = await store.bounceMessage(id, reason);
    if (bounced === 0) return errorResponse(c, 409, `Message ${id} has no queued recipients to bounce`);
    logger.info("message bounced by operator", { id, recipients: bounced });
    // The recipients are failed now; the DSN step reports them to the sender (and says that an
    // operator returned the message) and removes them, right after this reply. Say honestly when no
    // DSN is due (RFC 3461 4.1, RFC 5321 6.1).
    hooks.onBounced?.();
    // The same policy the DSN step applies (src/dsn/policy.ts).
    const due = queued.some((r) =>
      needsDsn({ sender: message.mailFrom, notify: r.notify, action: "failed" })
    );
    const dsn: QueueBounceResult["dsn"] = message.mailFrom === ""
      ? "none: null sender"
      : !due
      ? "none: NOTIFY"
      : "queued";
    const result: QueueBounceResult = { id, bounced, reason, dsn };
    return c.json(result);
  });

  for (const [action, hold] of [["hold", true], ["release", false]] as const) {
    app.post(`/domains/:name/${action}`, async (c) => {
      const domain = parseDomain(c.req.param("name"));
      if (!(await store.hasDomain(domain))) return errorResponse(c, 404, `No hosted domain ${domain}`);
      await store.setDomainHold(domain, hold);
      logger.info(hold ? "domain held by operator" : "domain released by operator", { domain });
      const result: DomainHoldResult = { domain, hold };
      return c.json(result);
    });
  }
  return app;
}
