import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { decodeBase64Strict, encodeBase64 } from "../../../src/server/sasl/base64.ts";

const text = (b: Uint8Array | null): string | null => b === null ? null : new TextDecoder().decode(b);

describe("base64", () => {
  // RFC 4648 10 test vectors.
  const vectors: [string, string][] = [
    ["", ""],
    ["f", "Zg=="],
    ["fo", "Zm8="],
    ["foo", "Zm9v"],
    ["foob", "Zm9vYg=="],
    ["fooba", "Zm9vYmE="],
    ["foobar", "Zm9vYmFy"],
    [
      "<1896.697170952@postoffice.reston.mci.net>",
      "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
    ],
    ["tim b913a602c7eda7a495b4e6e7334d3890", "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"],
  ];
  for (const [plain, encoded] of vectors) {
    test(`encodes and decodes ${JSON.stringify(plain)}`, () => {
      assert.equal(encodeBase64(plain), encoded);
      assert.equal(text(decodeBase64Strict(encoded)), plain);
    });
  }

  test("round-trips random bytes and agrees with Buffer", () => {
    for (let n = 0; n < 100; n++) {
      const data = new Uint8Array(randomBytes(n));
      const enc = encodeBase64(data);
      assert.equal(enc, Buffer.from(data).toString("base64"));
      assert.deepEqual(decodeBase64Strict(enc), data);
    }
  });

  test("decodes all 256 byte values", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.deepEqual(decodeBase64Strict(encodeBase64(all)), all);
  });

  // RFC 4954 4: reject characters outside the alphabet and "=" anywhere but at the end.
  const rejects: [string, string][] = [
    ["missing padding", "Zg"],
    ["missing one pad", "Zm8"],
    ["length 5", "Zm9vY"],
    ["pad in the middle", "Zg==Zg=="],
    ["pad inside a quantum", "Z=g="],
    ["three pads", "Z==="],
    ["four pads", "===="],
    ["lone =", "="],
    ["space", "Zm9v Zm9v"],
    ["trailing CRLF", "Zm9v\r\n"],
    ["trailing space", "Zm9vYmF y"],
    ["url-safe -", "Zm9-"],
    ["url-safe _", "Zm9_"],
    ["non-ASCII", "Zm9é"],
    ["asterisk", "*"],
    ["NUL", "Zm9\u0000"],
    ["non-zero bits before ==", "Zh=="],
    ["non-zero bits before =", "Zm9="],
  ];
  for (const [name, input] of rejects) {
    test(`rejects ${name}`, () => {
      assert.equal(decodeBase64Strict(input), null);
    });
  }
});
