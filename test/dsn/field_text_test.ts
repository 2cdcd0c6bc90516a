import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { foldField, octets, safeText, wrapText } from "../../src/dsn/field_text.ts";

/** RFC 5322 2.2.3: unfolding removes each CRLF that is followed by WSP. */
function unfold(folded: string): string {
  return folded.replace(/\r\n$/, "").replace(/\r\n(?=[ \t])/g, "");
}

function lines(folded: string): string[] {
  return folded.replace(/\r\n$/, "").split("\r\n");
}

describe("foldField", () => {
  test("a short field is one line", () => {
    assert.equal(foldField("Action", "failed"), "Action: failed\r\n");
  });

  test("a long field folds before spaces, at most 78 octets a line, and unfolds back", () => {
    const value = "smtp; 550-5.1.1 " + Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
    const folded = foldField("Diagnostic-Code", value);
    assert.equal(unfold(folded), `Diagnostic-Code: ${value}`);
    for (const line of lines(folded)) assert.ok(octets(line) <= 78, line);
    assert.ok(lines(folded).slice(1).every((l) => l.startsWith(" ")));
  });

  test("runs of spaces survive folding", () => {
    const value = `${"a".repeat(70)}   ${"b".repeat(20)}`;
    assert.equal(unfold(foldField("X", value)), `X: ${value}`);
  });

  test("a word longer than 998 octets is cut so no line exceeds 998", () => {
    const folded = foldField("X", "\u00e9".repeat(1500));
    for (const line of lines(folded)) assert.ok(octets(line) <= 998);
    assert.equal(unfold(folded).replace(/ /g, ""), `X:${"\u00e9".repeat(1500)}`);
  });
});

describe("wrapText", () => {
  test("wraps at 78 octets with the indent on every line", () => {
    const wrapped = wrapText(Array.from({ length: 30 }, () => "lorem").join(" "), "    ");
    assert.ok(wrapped.length > 1);
    for (const line of wrapped) {
      assert.ok(line.startsWith("    ") && octets(line) <= 78, line);
    }
  });

  test("a word over 998 octets is cut", () => {
    const wrapped = wrapText("x".repeat(2500), "  ");
    assert.deepEqual(wrapped.map((l) => l.length), [998, 998, 2500 - 2 * 996 + 2]);
  });
});

describe("safeText", () => {
  const table: [string, boolean, string][] = [
    ["a\r\nb", false, "a??b"],
    ["tab\there", false, "tab?here"],
    ["nul\u0000", true, "nul?"],
    ["gr\u00fc\u00df", false, "gr??"],
    ["gr\u00fc\u00df", true, "gr\u00fc\u00df"],
    ["del\u007f", true, "del?"],
  ];
  for (const [input, utf8, expected] of table) {
    test(JSON.stringify(input) + (utf8 ? " utf8" : ""), () => assert.equal(safeText(input, utf8), expected));
  }
});
