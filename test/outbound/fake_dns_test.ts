import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import {
  aaaaData,
  CLASS_IN,
  decodeMessage,
  decodeName,
  DnsFormatError,
  encodeMessage,
  type FakeDns,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  RCODE_SERVFAIL,
  startFakeDns,
  TYPE_A,
  TYPE_MX,
} from "../support/fake_dns.ts";

/** Sends one packet to the fake and waits (bounded) for the answer; `null` when none comes. */
async function ask(dns: FakeDns, packet: Uint8Array, waitMs = 500): Promise<Uint8Array | null> {
  const socket = dgram.createSocket("udp4");
  try {
    return await new Promise<Uint8Array | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), waitMs);
      socket.on("message", (msg: Uint8Array) => {
        clearTimeout(timer);
        resolve(new Uint8Array(msg));
      });
      socket.send(packet, dns.port, "127.0.0.1");
    });
  } finally {
    socket.close();
  }
}

function queryFor(name: string, type: number, id = 0x1234): Uint8Array {
  return encodeMessage({
    id,
    flags: 0x0100, // RD
    questions: [{ name, type, class: CLASS_IN }],
    answers: [],
    authorities: [],
    additionals: [],
  });
}

describe("fake DNS wire format (RFC 1035 4.1)", () => {
  test("a query survives encode and decode", () => {
    const decoded = decodeMessage(queryFor("Mail.Example.TEST", TYPE_MX, 7));
    assert.equal(decoded.id, 7);
    assert.deepEqual(decoded.questions, [{ name: "mail.example.test", type: TYPE_MX, class: CLASS_IN }]);
  });

  test("names with compression pointers decode (RFC 1035 4.1.4)", () => {
    // "a.test" at offset 12, then "mx" + pointer to it at offset 20.
    const packet = new Uint8Array([
      ...new Array(12).fill(0),
      1,
      0x61,
      4,
      0x74,
      0x65,
      0x73,
      0x74,
      0,
      2,
      0x6d,
      0x78,
      0xc0,
      12,
    ]);
    assert.deepEqual(decodeName(packet, 12), { name: "a.test", next: 20 });
    assert.deepEqual(decodeName(packet, 20), { name: "mx.a.test", next: 25 });
  });

  test("a pointer loop and a truncated message are format errors, not hangs", () => {
    const loop = new Uint8Array([...new Array(12).fill(0), 0xc0, 12]);
    assert.throws(() => decodeName(loop, 12), DnsFormatError);
    assert.throws(() => decodeMessage(queryFor("x.test", TYPE_A).subarray(0, 20)), DnsFormatError);
    assert.throws(() => decodeMessage(new Uint8Array(5)), DnsFormatError);
  });

  test("AAAA data from the compressed text form", () => {
    assert.deepEqual([...aaaaData("::1")], [...new Array(15).fill(0), 1]);
    assert.deepEqual([...aaaaData("2001:db8::2:1")].slice(0, 4), [0x20, 0x01, 0x0d, 0xb8]);
    assert.throws(() => aaaaData("1::2::3"));
  });
});

describe("fake DNS server over UDP", () => {
  test("answers MX, NXDOMAIN, SERVFAIL, FORMERR, and stays silent when told to", async () => {
    const dns = await startFakeDns({
      "a.test": { mx: [{ preference: 10, exchange: "mx.a.test" }] },
      "bad.test": { all: "servfail" },
      "hang.test": { all: "timeout" },
    });
    try {
      const mx = decodeMessage((await ask(dns, queryFor("a.test", TYPE_MX)))!);
      assert.equal(mx.id, 0x1234);
      assert.equal(mx.flags & 0x8000, 0x8000); // QR
      assert.equal(mx.flags & 0x000f, RCODE_NOERROR);
      assert.equal(mx.answers.length, 1);
      const rdata = mx.answers[0]!.data;
      assert.equal((rdata[0]! << 8) | rdata[1]!, 10);
      assert.equal(decodeName(rdata, 2).name, "mx.a.test");

      const nodata = decodeMessage((await ask(dns, queryFor("a.test", TYPE_A)))!);
      assert.equal(nodata.flags & 0x000f, RCODE_NOERROR);
      assert.equal(nodata.answers.length, 0);

      const nx = decodeMessage((await ask(dns, queryFor("nope.test", TYPE_MX)))!);
      assert.equal(nx.flags & 0x000f, RCODE_NXDOMAIN);

      const fail = decodeMessage((await ask(dns, queryFor("bad.test", TYPE_A)))!);
      assert.equal(fail.flags & 0x000f, RCODE_SERVFAIL);

      const junk = decodeMessage((await ask(dns, new Uint8Array([0xab, 0xcd, 1, 2, 3])))!);
      assert.equal(junk.id, 0xabcd);
      assert.equal(junk.flags & 0x000f, RCODE_FORMERR);

      assert.equal(await ask(dns, queryFor("hang.test", TYPE_MX), 200), null);
      assert.deepEqual(dns.queries.map((q) => q.name), [
        "a.test",
        "a.test",
        "nope.test",
        "bad.test",
        "hang.test",
      ]);
    } finally {
      await dns.close();
    }
  });
});
