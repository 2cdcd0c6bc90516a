/**
 * Fills a queue for the scale benchmarks: the account `bench` with `domains` domains
 * (d0000.bench.test ...) and `recipients` queued 1 KB recipients, four per message, each in another
 * domain. Uses the real enqueue path (and its triggers) with `synchronous = OFF`: thousands of fsyncs
 * prove nothing about the reads measured afterwards, which run with the relay's own pragmas.
 *
 * @module
 */
import type { QueueStore } from "../../src/queue/store.ts";

/** Recipients per seeded message, each in a different domain. */
export const RECIPIENTS_PER_MESSAGE = 4;

/** The name of seeded domain `i` (wrapping at `domains`). */
export function seededDomain(i: number, domains: number): string {
  return `d${String(i % domains).padStart(4, "0")}.bench.test`;
}

/** Seeds `store`; `afterMessage` runs after each message (a test clock can move there). */
export function seedQueue(
  store: QueueStore,
  options: { recipients: number; domains: number; cramMd5Secret?: string; afterMessage?: () => void },
): void {
  const { recipients, domains } = options;
  store.database.raw.exec("PRAGMA synchronous = OFF");
  store.addAccount("bench", {
    cramMd5Secret: options.cramMd5Secret ?? "unused",
    passwordHash: "$scrypt$unused",
  });
  for (let i = 0; i < domains; i++) store.addDomain(seededDomain(i, domains), "bench");
  const body = new TextEncoder().encode("Subject: bench\r\n\r\n" + "x".repeat(1000) + "\r\n");
  for (let made = 0, m = 0; made < recipients; m++) {
    const n = Math.min(RECIPIENTS_PER_MESSAGE, recipients - made);
    store.enqueue({
      mailFrom: `sender${m}@example.org`,
      clientIp: "192.0.2.1",
      clientHelo: "bench.example.org",
      tls: false,
      bodyType: null,
      smtputf8: false,
      envid: null,
      ret: null,
      recipients: Array.from({ length: n }, (_, k) => {
        const domain = seededDomain(m * RECIPIENTS_PER_MESSAGE + k, domains);
        return { address: `user${m}@${domain}`, domain, notify: null, orcpt: null };
      }),
    }, { size: body.length, eightBit: false, chunks: () => [body] });
    made += n;
    options.afterMessage?.();
  }
  store.database.raw.exec("PRAGMA synchronous = FULL");
}
