// pull reads the provider's EHLO before AUTH: a missing CRAM-MD5, or AUTH offered only under TLS
// (Exim 4.99's default), is reported as such, and AUTH is never sent where it would only earn a 503.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { offerProblem, readEhloOffer } from "../../src/customer/ehlo_offer.ts";
import { startOdmrRelay } from "../server/odmr_helpers.ts";
import { makeTestCert } from "../support/certs.ts";
import { freePort } from "../support/fetchmail.ts";
import type { TestRelay } from "../support/relay.ts";
import { pullArgs, runCliCaptured } from "./_helpers.ts";

describe("readEhloOffer and offerProblem", () => {
  const problem = (lines: string[], tls: boolean) => offerProblem(readEhloOffer(["mx.test", ...lines]), tls);
  const cases: [string, string[], boolean, RegExp | null][] = [
    ["CRAM-MD5 offered", ["AUTH PLAIN CRAM-MD5", "ATRN"], false, null],
    ["lower case and the old AUTH= form", ["AUTH=login cram-md5", "atrn"], true, null],
    ["no ATRN", ["AUTH CRAM-MD5"], true, /does not offer ATRN/],
    [
      "AUTH only under TLS (plaintext, STARTTLS offered)",
      ["STARTTLS", "ATRN"],
      false,
      /offers AUTH only under TLS/,
    ],
    ["no AUTH at all under TLS", ["ATRN"], true, /does not offer AUTH$/],
    ["no AUTH, no STARTTLS", ["ATRN"], false, /does not offer AUTH$/],
    [
      "other mechanisms under TLS",
      ["AUTH PLAIN LOGIN", "ATRN"],
      true,
      /does not offer CRAM-MD5, .*\(it offers PLAIN LOGIN\)/,
    ],
    [
      "other mechanisms before TLS",
      ["AUTH PLAIN", "STARTTLS", "ATRN"],
      false,
      /does not offer CRAM-MD5 before TLS \(it offers PLAIN\): try --tls starttls/,
    ],
  ];
  for (const [name, lines, tls, expected] of cases) {
    it(name, () => {
      const found = problem(lines, tls);
      if (expected === null) assert.equal(found, null);
      else assert.match(found ?? "(none)", expected);
    });
  }
});

/** A scripted provider with a fixed EHLO reply; records every command line it receives. */
async function fakeProvider(
  ehloKeywords: string[],
): Promise<{ port: number; commands: string[]; close(): void }> {
  const commands: string[] = [];
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.write("220 provider.test ESMTP\r\n");
    let buffer = "";
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      for (let i; (i = buffer.indexOf("\r\n")) >= 0;) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        commands.push(line);
        if (/^EHLO /i.test(line)) {
          const lines = ["provider.test", ...ehloKeywords];
          socket.write(lines.map((l, n) => `250${n === lines.length - 1 ? " " : "-"}${l}\r\n`).join(""));
        } else if (/^QUIT/i.test(line)) socket.end("221 bye\r\n");
        else socket.write("503 5.5.1 bad sequence of commands\r\n");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as net.AddressInfo).port, commands, close: () => server.close() };
}

/** `pull` at `server` with a local server where nothing listens (no session gets that far). */
async function runPull(server: string, extra: string[]): Promise<{ code: number; out: string }> {
  return runCliCaptured(pullArgs(server, await freePort(), ["--timeout", "10s", ...extra]));
}

describe("pull and the provider's EHLO", () => {
  it("a provider without CRAM-MD5: a clear message, exit 4, and AUTH is never sent", async () => {
    const provider = await fakeProvider(["AUTH PLAIN LOGIN", "ATRN"]);
    try {
      const r = await runPull(`127.0.0.1:${provider.port}`, []);
      assert.equal(r.code, 4, r.out);
      assert.match(
        r.out,
        /the provider does not offer CRAM-MD5, the mechanism pull uses \(it offers PLAIN LOGIN\)/,
      );
      assert.doesNotMatch(r.out, /authentication failed|503/);
      assert.deepEqual(provider.commands.filter((c) => /^AUTH/i.test(c)), []);
    } finally {
      provider.close();
    }
  });

  describe("a relay that offers AUTH only under TLS (like Exim 4.99)", () => {
    const cert = makeTestCert();
    let relay: TestRelay;
    before(async () => {
      relay = await startOdmrRelay({ cert, flags: { odmrAllowCramMd5WithoutTls: "false" } });
    });
    after(() => relay?.stop());

    it("--tls none says the provider offers AUTH only under TLS (exit 4, not a bad secret)", async () => {
      const r = await runPull(`127.0.0.1:${relay.odmrPort}`, []);
      assert.equal(r.code, 4, r.out);
      assert.match(
        r.out,
        /the provider offers AUTH only under TLS: collect with --tls starttls \(the default\)/,
      );
    });

    it("the default STARTTLS gets AUTH offered after TLS and goes on to ATRN", async () => {
      const r = await runPull(`127.0.0.1:${relay.odmrPort}`, ["--tls", "starttls", "--ca", cert.caFile]);
      assert.equal(r.code, 1, r.out); // 453: no mail waiting, so AUTH and ATRN worked
      assert.match(r.out, /no mail/);
    });
  });
});
