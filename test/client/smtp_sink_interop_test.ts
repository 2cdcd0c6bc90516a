import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { deliverQueued } from "../../src/client/deliver_session.ts";
import { LineConnection } from "../../src/net/line_connection.ts";
import { hasSmtpSink, SMTP_SINK, startSmtpSink } from "./_smtp_sink.ts";
import { customerStore, DOMAIN, enqueue, testConfig, textBody } from "./_helpers.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

const skip = hasSmtpSink() ? false : `${SMTP_SINK} is missing (apt-get install postfix)`;

describe("interop with Postfix smtp-sink", () => {
  for (const mode of ["never", "always", "auto"] as const) {
    test(`drains the queue into the real smtp-sink (pipelining ${mode})`, { skip }, async () => {
      const sink = await startSmtpSink();
      try {
        const store = customerStore();
        const count = 40;
        for (let i = 0; i < count; i++) {
          const body = textBody(`message ${i}`) + (i % 5 === 0 ? ".dot line\r\n..two\r\n" : "") +
            "x".repeat(900) +
            "\r\n";
          enqueue(store, [`user${i}@example.test`, `other${i}@example.test`], body);
        }
        const big = "y".repeat(76) + "\r\n";
        enqueue(store, ["big@example.test"], big.repeat(30_000)); // ~2.3 MB, chunked in the store
        const conn = new LineConnection(await sink.connect());
        const result = await deliverQueued({
          conn,
          store: new SqliteQueue(store),
          domains: [DOMAIN],
          hostname: "relay.test",
          config: testConfig({
            atrnPipelining: mode,
            atrnCommandTimeout: 10_000,
            atrnDataTermTimeout: 10_000,
          }),
        });
        assert.equal(result.outcome, "completed", result.detail ?? "");
        assert.equal(result.delivered, count * 2 + 1);
        assert.equal(result.deferred + result.failed, 0);
        if (mode === "never") assert.equal(result.pipelining, false);
        if (mode === "always") assert.equal(result.pipelining, true);
        assert.equal(store.totals().messages, 0);
        assert.equal(store.totals().queuedRecipients, 0);
        await sink.waitForMessages(count + 1);
        assert.equal(sink.messages(), count + 1);
      } finally {
        await sink.stop();
      }
    });
  }
});
