import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sendOutbound } from "../../src/outbound/send.ts";
import { startFakeDns } from "../support/fake_dns.ts";
import { tempDir } from "../support/temp.ts";
import { hasSmtpSink, SMTP_SINK, startSmtpSink } from "../client/_smtp_sink.ts";
import { DSN_TEXT, messageOf, TEST_TIMEOUTS } from "./_helpers.ts";

const skip = hasSmtpSink() ? false : `${SMTP_SINK} is missing (apt-get install postfix)`;

describe("interop with Postfix smtp-sink as the sender's MX", () => {
  test("a DSN found through the fake DNS reaches smtp-sink intact", { skip }, async () => {
    const dir = tempDir("odmr-outbound-sink-");
    chmodSync(dir, 0o777); // smtp-sink drops to "nobody" when started as root
    const sink = await startSmtpSink(["-d", join(dir, "%M.")]);
    const dns = await startFakeDns({
      "origin.test": { mx: [{ preference: 10, exchange: "mx.origin.test" }] },
      "mx.origin.test": { a: ["127.0.0.1"] },
    });
    try {
      const result = await sendOutbound({
        destination: { kind: "mx", domain: "origin.test", mxPort: sink.port },
        ...messageOf(DSN_TEXT, ["sender@origin.test"]),
        hostname: "relay.test",
        dns: { dnsServers: [dns.server], timeoutMs: 500, tries: 1 },
        timeouts: TEST_TIMEOUTS,
      });
      assert.equal(result.recipients[0]?.result, "delivered", result.recipients[0]?.text);
      assert.equal(result.remoteMta, "mx.origin.test");
      await sink.waitForMessages(1);
      // The dump file is written when smtp-sink sees the final dot; give it a moment (bounded).
      let files: string[] = [];
      for (let i = 0; i < 100 && files.length === 0; i++) {
        files = readdirSync(dir);
        if (files.length === 0) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(files.length, 1);
      const dump = readFileSync(join(dir, files[0]!), "utf8");
      assert.match(dump, /^X-Mail-Args: <>/m);
      assert.match(dump, /^X-Rcpt-Args: <sender@origin\.test>/m);
      assert.match(dump, /^X-Helo-Args: relay\.test$/m);
      // smtp-sink writes lines ending in LF; the content must be there line for line, unstuffed.
      const body = DSN_TEXT.replaceAll("\r\n", "\n");
      assert.ok(dump.includes(body), dump);
    } finally {
      await sink.stop();
      await dns.close();
    }
  });
});
