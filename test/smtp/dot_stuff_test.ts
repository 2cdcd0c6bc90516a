import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { dotStuff, DotStuffer } from "../../src/smtp/dot_stuff.ts";
import { bytes, concat, splitAt, text } from "./helpers.ts";

const table: [string, string, string][] = [
  ["empty message", "", ".\r\n"],
  ["one line", "a\r\n", "a\r\n.\r\n"],
  ["unterminated last line gets CRLF", "a", "a\r\n.\r\n"],
  ["leading dot doubled", ".a\r\n", "..a\r\n.\r\n"],
  ["lone dot line", ".\r\n", "..\r\n.\r\n"],
  ["double dot tripled", "..\r\n", "...\r\n.\r\n"],
  ["dot on later line", "a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"],
  ["inner dots untouched", "a.b.\r\n", "a.b.\r\n.\r\n"],
  ["empty lines", "\r\n\r\n", "\r\n\r\n.\r\n"],
  ["unterminated lone dot", ".", "..\r\n.\r\n"],
  // Defence in depth: stray line endings become CRLF, so `\n.\r\n` can never reach the peer.
  ["bare LF", "a\nb\r\n", "a\r\nb\r\n.\r\n"],
  ["bare CR", "a\rb\r\n", "a\r\nb\r\n.\r\n"],
  ["smuggle LF.CRLF", "a\n.\r\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"],
  ["smuggle LF.LF", "a\n.\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"],
  ["smuggle CR.CRLF", "a\r.\r\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"],
  ["CR CR LF", "a\r\r\n", "a\r\n\r\n.\r\n"],
  ["trailing CR", "a\r", "a\r\n.\r\n"],
  ["LF CR", "a\n\r", "a\r\n\r\n.\r\n"],
  ["8-bit untouched", "\xc3\xa9\r\n", "\xc3\xa9\r\n.\r\n"],
];

describe("DotStuffer", () => {
  for (const [name, input, output] of table) {
    test(`${name}, at every split point`, () => {
      const data = bytes(input);
      assert.equal(text(dotStuff(data)), output, "whole");
      for (let a = 0; a <= data.length; a++) {
        for (let b = a; b <= data.length; b++) {
          const stuffer = new DotStuffer();
          const out = concat([
            ...splitAt(data, [a, b]).map((chunk) => stuffer.push(chunk)),
            stuffer.finish(),
          ]);
          assert.equal(text(out), output, `split ${a},${b}`);
        }
      }
    });
  }

  test("output never contains a bare CR or LF", () => {
    const alphabet = ["\r", "\n", ".", "a"];
    // Every string of length 5 over the alphabet: 4^5 = 1024 inputs.
    for (let n = 0; n < 4 ** 5; n++) {
      let input = "";
      for (let k = n, i = 0; i < 5; i++, k = Math.floor(k / 4)) input += alphabet[k % 4];
      const out = text(dotStuff(bytes(input)));
      assert.doesNotMatch(out, /\r(?!\n)|(?<!\r)\n/, JSON.stringify(input));
      assert.ok(out.endsWith("\r\n.\r\n") || out === ".\r\n", JSON.stringify(input));
    }
  });

  test("push after finish is an error", () => {
    const stuffer = new DotStuffer();
    stuffer.finish();
    assert.throws(() => stuffer.push(bytes("a")), /already finished/);
    assert.throws(() => stuffer.finish(), /already finished/);
  });
});
