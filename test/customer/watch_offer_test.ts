import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { WatchAdvertiser } from "../../src/customer/watch_offer.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Feeds the local server's output in the given pieces, after the provider's first command. */
function run(command: string, pieces: string[]): string {
  const a = new WatchAdvertiser();
  let out = dec(a.fromLocal(enc(pieces[0]!)));
  a.fromProvider(enc(command));
  for (const piece of pieces.slice(1)) out += dec(a.fromLocal(enc(piece)));
  return out;
}

describe("WatchAdvertiser", () => {
  test("adds XWATCH before the last line of the EHLO reply, in any chunking", () => {
    const greeting = "220 local.test ESMTP\r\n";
    const ehlo = "250-local.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
    const want = greeting +
      "250-local.test\r\n250-PIPELINING\r\n250-XWATCH\r\n250 8BITMIME\r\n250 2.1.0 Ok\r\n";
    assert.equal(run("EHLO relay.test\r\n", [greeting, ehlo, "250 2.1.0 Ok\r\n"]), want);
    const split = [
      greeting.slice(0, 5),
      greeting.slice(5),
      ehlo.slice(0, 7),
      ehlo.slice(7, 30),
      ehlo.slice(30),
    ];
    assert.equal(
      run("EHLO relay.test\r\n", [
        split[0]!,
        split[1]!,
        split[2]!,
        split[3]!,
        split[4]! + "250 2.1.0 Ok\r\n",
      ]),
      want,
    );
  });

  test("a single-line EHLO reply keeps its domain line first and gets the keyword after it", () => {
    assert.equal(
      run("EHLO r\r\n", ["220 x\r\n", "250 local.test\r\n"]),
      "220 x\r\n250-local.test\r\n250 XWATCH\r\n",
    );
  });

  test("HELO, a refused EHLO and everything after are copied unchanged", () => {
    assert.equal(run("HELO r\r\n", ["220 x\r\n", "250 local.test\r\n"]), "220 x\r\n250 local.test\r\n");
    assert.equal(run("EHLO r\r\n", ["220 x\r\n", "502 5.5.1 no\r\n"]), "220 x\r\n502 5.5.1 no\r\n");
  });
});
