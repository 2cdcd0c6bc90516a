import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { bytesToState, Md5, md5, MD5_INITIAL_STATE, stateToBytes } from "../../../src/server/sasl/md5.ts";

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const nodeMd5 = (b: Uint8Array): string => createHash("md5").update(b).digest("hex");
const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("md5", () => {
  // RFC 1321 A.5 test suite.
  const vectors: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
    [
      "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
      "57edf4a22be3c955ac49da2e2107b67a",
    ],
  ];
  for (const [input, want] of vectors) {
    test(`RFC 1321 vector ${JSON.stringify(input.slice(0, 20))}`, () => {
      assert.equal(hex(md5(ascii(input))), want);
    });
  }

  test("matches node:crypto for random inputs of lengths 0..300 and a few large ones", () => {
    const lengths = [...Array.from({ length: 301 }, (_, i) => i), 1000, 4095, 4096, 65537];
    for (const n of lengths) {
      const data = new Uint8Array(randomBytes(n));
      assert.equal(hex(md5(data)), nodeMd5(data), `length ${n}`);
    }
  });

  test("incremental updates in odd chunk sizes equal one-shot", () => {
    const data = new Uint8Array(randomBytes(1000));
    for (const chunk of [1, 3, 7, 63, 64, 65, 127, 500]) {
      const h = new Md5();
      for (let i = 0; i < data.length; i += chunk) h.update(data.subarray(i, i + chunk));
      assert.equal(hex(h.digest()), nodeMd5(data), `chunk ${chunk}`);
    }
  });

  test("state exported after N blocks resumes to the same digest", () => {
    for (const blocks of [0, 1, 2, 5]) {
      const prefix = new Uint8Array(randomBytes(blocks * 64));
      const tail = new Uint8Array(randomBytes(77));
      const saved = new Md5().update(prefix).exportState();
      const resumed = Md5.fromState(saved, prefix.length).update(tail).digest();
      const whole = new Uint8Array(prefix.length + tail.length);
      whole.set(prefix);
      whole.set(tail, prefix.length);
      assert.equal(hex(resumed), nodeMd5(whole), `blocks ${blocks}`);
    }
  });

  test("fresh state is the RFC 1321 initial state", () => {
    assert.deepEqual(new Md5().exportState(), MD5_INITIAL_STATE);
  });

  test("state bytes round-trip little-endian", () => {
    const bytes = stateToBytes([0x01020304, 0xa0b0c0d0, 0, 0xffffffff]);
    assert.equal(hex(bytes), "04030201d0c0b0a000000000ffffffff");
    assert.deepEqual(bytesToState(bytes), [0x01020304, 0xa0b0c0d0, 0, 0xffffffff]);
  });

  const misuse: [string, () => unknown][] = [
    ["export mid-block", () => new Md5().update(new Uint8Array(10)).exportState()],
    ["resume at non-multiple of 64", () => Md5.fromState(MD5_INITIAL_STATE, 10)],
    ["resume at negative length", () => Md5.fromState(MD5_INITIAL_STATE, -64)],
    ["update after digest", () => {
      const h = new Md5();
      h.digest();
      h.update(new Uint8Array(1));
    }],
    ["digest twice", () => {
      const h = new Md5();
      h.digest();
      h.digest();
    }],
  ];
  for (const [name, fn] of misuse) {
    test(`throws on ${name}`, () => {
      assert.throws(fn);
    });
  }
});
