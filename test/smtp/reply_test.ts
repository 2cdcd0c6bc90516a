import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatReply, type ParsedReply, ReplyParseError, ReplyParser } from "../../src/smtp/reply.ts";
import { C250Ok, C334Challenge, C354StartInput, type Reply } from "../../src/smtp/reply_codes.ts";

describe("formatReply", () => {
  const table: { name: string; reply: Reply; enhanced: boolean; wire: string }[] = [
    { name: "single line", reply: C250Ok, enhanced: false, wire: "250 Ok\r\n" },
    { name: "single line enhanced", reply: C250Ok, enhanced: true, wire: "250 2.0.0 Ok\r\n" },
    {
      name: "multi-line enhanced on every line",
      reply: { code: 550, enhanced: "5.7.1", lines: ["one", "two", "three"] },
      enhanced: true,
      wire: "550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n",
    },
    {
      name: "multi-line plain",
      reply: { code: 250, lines: ["mx.example hello", "PIPELINING", "SIZE 1000"] },
      enhanced: true,
      wire: "250-mx.example hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
    },
    {
      name: "3xx never enhanced",
      reply: C354StartInput,
      enhanced: true,
      wire: "354 End data with <CR><LF>.<CR><LF>\r\n",
    },
    {
      name: "3xx with enhanced field still plain",
      reply: { code: 334, enhanced: "3.0.0", lines: ["abc"] },
      enhanced: true,
      wire: "334 abc\r\n",
    },
    {
      name: "empty SASL challenge keeps the space",
      reply: C334Challenge(""),
      enhanced: false,
      wire: "334 \r\n",
    },
    { name: "no lines", reply: { code: 250, lines: [] }, enhanced: false, wire: "250 \r\n" },
    {
      name: "CR LF NUL in text cannot break the line",
      reply: { code: 250, lines: ["a\r\n250 b\0c"] },
      enhanced: false,
      wire: "250 a??250 b?c\r\n",
    },
    {
      name: "non-ASCII replaced",
      reply: { code: 250, lines: ["caf\u00e9"] },
      enhanced: false,
      wire: "250 caf?\r\n",
    },
  ];
  for (const row of table) {
    test(row.name, () => assert.equal(formatReply(row.reply, { enhanced: row.enhanced }), row.wire));
  }
});

describe("ReplyParser", () => {
  const good: { name: string; lines: string[]; reply: ParsedReply }[] = [
    { name: "single line", lines: ["250 Ok"], reply: { code: 250, lines: ["Ok"] } },
    { name: "bare code", lines: ["250"], reply: { code: 250, lines: [""] } },
    { name: "code and space", lines: ["250 "], reply: { code: 250, lines: [""] } },
    {
      name: "enhanced split off",
      lines: ["250 2.1.5 Ok"],
      reply: { code: 250, enhanced: "2.1.5", lines: ["Ok"] },
    },
    { name: "enhanced alone", lines: ["250 2.0.0"], reply: { code: 250, enhanced: "2.0.0", lines: [""] } },
    {
      name: "enhanced class mismatch kept as text",
      lines: ["550 2.0.0 odd"],
      reply: { code: 550, lines: ["2.0.0 odd"] },
    },
    { name: "not an enhanced code", lines: ["250 2.0.0x"], reply: { code: 250, lines: ["2.0.0x"] } },
    {
      name: "multi-line EHLO",
      lines: ["250-mx.example hi", "250-PIPELINING", "250 SIZE 10"],
      reply: { code: 250, lines: ["mx.example hi", "PIPELINING", "SIZE 10"] },
    },
    {
      name: "multi-line enhanced",
      lines: ["451-4.3.0 a", "451 4.3.0 b"],
      reply: { code: 451, enhanced: "4.3.0", lines: ["a", "b"] },
    },
    {
      name: "multi-line with bare continuation",
      lines: ["220-", "220 ready"],
      reply: { code: 220, lines: ["", "ready"] },
    },
  ];
  for (const row of good) {
    test(row.name, () => {
      const parser = new ReplyParser();
      row.lines.slice(0, -1).forEach((line) => assert.equal(parser.push(line), undefined));
      assert.equal(parser.inProgress, row.lines.length > 1);
      assert.deepEqual(parser.push(row.lines.at(-1) ?? ""), row.reply);
      assert.equal(parser.inProgress, false);
    });
  }

  const bad: {
    name: string;
    lines: string[];
    kind: string;
    options?: { maxLines?: number; maxLineLength?: number };
  }[] = [
    { name: "two digits", lines: ["25 Ok"], kind: "malformed-line" },
    { name: "four digits", lines: ["2500 Ok"], kind: "malformed-line" },
    { name: "letters", lines: ["abc Ok"], kind: "malformed-line" },
    { name: "first digit 1", lines: ["150 Ok"], kind: "malformed-line" },
    { name: "first digit 6", lines: ["650 Ok"], kind: "malformed-line" },
    { name: "bad separator", lines: ["250_Ok"], kind: "malformed-line" },
    { name: "empty line", lines: [""], kind: "malformed-line" },
    { name: "bare LF inside", lines: ["250 a\n250 b"], kind: "malformed-line" },
    { name: "CR inside", lines: ["250 a\rb"], kind: "malformed-line" },
    { name: "code changes", lines: ["250-a", "251 b"], kind: "code-mismatch" },
    { name: "line too long", lines: ["250 " + "x".repeat(507)], kind: "line-too-long" },
    {
      name: "configured line cap",
      lines: ["250 abcdef"],
      kind: "line-too-long",
      options: { maxLineLength: 8 },
    },
    {
      name: "too many lines",
      lines: ["250-a", "250-b", "250 c"],
      kind: "too-many-lines",
      options: { maxLines: 2 },
    },
    { name: "default 100 lines", lines: [...Array(100).fill("250-x"), "250 y"], kind: "too-many-lines" },
  ];
  for (const row of bad) {
    test(`refuses ${row.name}`, () => {
      const parser = new ReplyParser(row.options);
      let error: unknown;
      try {
        for (const line of row.lines) parser.push(line);
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof ReplyParseError, `expected ReplyParseError, got ${String(error)}`);
      assert.equal(error.kind, row.kind);
      assert.equal(parser.inProgress, false, "parser resets after an error");
    });
  }

  test("510 characters plus CRLF is exactly the 512 cap", () => {
    const parser = new ReplyParser();
    assert.equal(parser.push("250 " + "x".repeat(506))?.code, 250);
  });

  test("100 lines are accepted", () => {
    const parser = new ReplyParser();
    for (let i = 0; i < 99; i++) assert.equal(parser.push("250-x"), undefined);
    assert.equal(parser.push("250 y")?.lines.length, 100);
  });

  test("parses consecutive replies", () => {
    const parser = new ReplyParser();
    assert.equal(parser.push("220 hi")?.code, 220);
    assert.equal(parser.push("250-a"), undefined);
    assert.deepEqual(parser.push("250 b"), { code: 250, lines: ["a", "b"] });
  });
});
