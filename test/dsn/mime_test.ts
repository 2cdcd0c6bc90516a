import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { chooseBoundary, quotedPrintable } from "../../src/dsn/mime.ts";
import { bytes, seededRandom } from "../smtp/helpers.ts";

/** A small quoted-printable decoder (RFC 2045 6.7), independent of the encoder. */
function decodeQp(encoded: string): Uint8Array {
  const joined = encoded.replace(/=\r\n/g, "");
  const out: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    if (joined[i] === "=") {
      out.push(parseInt(joined.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(joined.charCodeAt(i));
    }
  }
  return new Uint8Array(out);
}

describe("quotedPrintable", () => {
  const table: [string, string, string][] = [
    ["plain lines", "a: b\r\nc\r\n", "a: b\r\nc\r\n"],
    ["equals sign", "a=b\r\n", "a=3Db\r\n"],
    ["space before a line end", "a \r\n", "a=20\r\n"],
    ["bare LF and CR", "a\nb\rc\r\n", "a=0Ab=0Dc\r\n"],
    ["8-bit", "\u00e9\r\n", "=E9\r\n"],
    ["no final CRLF", "end", "end=\r\n"],
  ];
  for (const [name, input, expected] of table) {
    test(name, () => assert.equal(quotedPrintable(bytes(input)), expected));
  }

  test("random octets round-trip, in lines of at most 76 characters", () => {
    const random = seededRandom(9);
    for (let round = 0; round < 50; round++) {
      const data = new Uint8Array(Math.floor(random() * 3000));
      for (let i = 0; i < data.length; i++) {
        // Plenty of CR, LF, spaces and "=" among the rest.
        const pick = random();
        data[i] = pick < 0.1
          ? 0x0d
          : pick < 0.2
          ? 0x0a
          : pick < 0.3
          ? 0x20
          : pick < 0.35
          ? 0x3d
          : random() * 256;
      }
      const encoded = quotedPrintable(data);
      assert.deepEqual(decodeQp(encoded), data);
      for (const line of encoded.split("\r\n")) {
        assert.ok(line.length <= 76, line);
        assert.ok(/^[\x21-\x7e \t]*$/.test(line));
        assert.ok(!/[ \t]$/.test(line), "white space at the end of an encoded line");
      }
    }
  });
});

describe("chooseBoundary", () => {
  test("derived from the Message-ID, only boundary characters", () => {
    assert.equal(chooseBoundary("dsn-1@relay.example.net", []), "=_dsn_dsn-1.relay.example.net");
  });

  test("lengthened until no part contains it", () => {
    const parts = [bytes("x\r\n--=_dsn_a\r\n"), bytes("--=_dsn_a_1--")];
    assert.equal(chooseBoundary("a", parts), "=_dsn_a_2");
  });

  test("a requested boundary is used, and lengthened the same way", () => {
    assert.equal(chooseBoundary("a", [], "b"), "b");
    assert.equal(chooseBoundary("a", [bytes("--b")], "b"), "b_1");
  });

  test("an invalid requested boundary is refused (RFC 2046 5.1.1)", () => {
    for (const bad of ["", "a b ", "a\r\nb", "x".repeat(71), "a;b"]) {
      assert.throws(() => chooseBoundary("a", [], bad), RangeError, bad);
    }
  });
});
