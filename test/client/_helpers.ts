/**
 * Shared setup for the client tests: a real SQLite store with a customer domain, message seeding and
 * short timeouts.
 *
 * @module
 */

import type { DeliveryConfig } from "../../src/client/deliver_session.ts";
import type { IncomingMessage, QueueStore } from "../../src/queue/store.ts";
import { bodyOf, incoming, tempStore, testSecrets } from "../support/store.ts";

/** The customer's domain in every test. */
export const DOMAIN = "example.test";

/** Short client timeouts (ms) so misbehaving fakes fail fast; no test asserts on timing. */
export function testConfig(overrides: Partial<DeliveryConfig> = {}): DeliveryConfig {
  return {
    atrnGreetingTimeout: 2000,
    atrnCommandTimeout: 2000,
    atrnDataInitTimeout: 2000,
    atrnDataBlockTimeout: 2000,
    atrnDataTermTimeout: 2000,
    atrnSessionTimeout: 20_000,
    atrnPipelining: "never",
    ...overrides,
  };
}

/** A fresh store with account `cust` owning example.test and other.test. */
export function customerStore(): QueueStore {
  const { store } = tempStore();
  store.addAccount("cust", testSecrets("secret"));
  store.addDomain(DOMAIN, "cust");
  store.addDomain("other.test", "cust");
  return store;
}

/** Enqueues one message; `extra` overrides envelope fields (bodyType, smtputf8, envid, ret, ...). */
export function enqueue(
  store: QueueStore,
  rcpts: string[],
  body: string | Uint8Array,
  extra: Partial<IncomingMessage> & { notify?: string; orcpt?: string } = {},
  from = "sender@origin.test",
): number {
  const { notify, orcpt, ...envelope } = extra;
  const message = { ...incoming(from, rcpts), ...envelope };
  if (notify !== undefined || orcpt !== undefined) {
    message.recipients = message.recipients.map((r) => ({
      ...r,
      notify: notify ?? null,
      orcpt: orcpt ?? null,
    }));
  }
  return store.enqueue(message, bodyOf(body));
}

/** A simple message body with a given subject. */
export function textBody(subject: string): string {
  return `From: sender@origin.test\r\nTo: user@example.test\r\nSubject: ${subject}\r\n\r\nHello.\r\n`;
}

/** The queue state of one message: recipient address -> status/attempts/code, or null when deleted. */
export function queueState(
  store: QueueStore,
  id: number,
):
  | { address: string; status: string; attempts: number; lastCode: number | null; lastText: string | null }[]
  | null {
  const m = store.getMessage(id);
  if (m === null) return null;
  return m.recipients.map((r) => ({
    address: r.address,
    status: r.status,
    attempts: r.attempts,
    lastCode: r.lastCode,
    lastText: r.lastText,
  }));
}

/** UTF-8 text to bytes. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}
