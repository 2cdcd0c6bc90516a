import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatLocalPart, formatPath, parseMailFrom, parseRcptTo } from "../../src/smtp/address.ts";
import { assertSmtpError } from "./helpers.ts";

const ascii = { smtputf8Allowed: false };
const utf8 = { smtputf8Allowed: true };

describe("parseMailFrom: accepted", () => {
  const table: { arg: string; address: string | null; local?: string; domain?: string; params?: string }[] = [
    { arg: "FROM:<alice@example.org>", address: "alice@example.org", local: "alice", domain: "example.org" },
    { arg: "from:<alice@example.org>", address: "alice@example.org" },
    { arg: "From:<Alice.Smith@Example.ORG>", address: "Alice.Smith@Example.ORG", local: "Alice.Smith" },
    // PROTOCOL 2.9 / RFC 2645 example: a space after the colon is tolerated.
    { arg: "FROM: <alice@example.org>", address: "alice@example.org" },
    { arg: "FROM:<>", address: null },
    { arg: "FROM: <>", address: null },
    { arg: "FROM:<> SIZE=100", address: null, params: "SIZE=100" },
    { arg: "FROM:<a@b.c> SIZE=100 BODY=8BITMIME", address: "a@b.c", params: "SIZE=100 BODY=8BITMIME" },
    { arg: "FROM:<a@b.c>   SIZE=1  ", address: "a@b.c", params: "SIZE=1" },
    // RFC 5321 4.1.2 / Appendix C: source routes accepted and dropped.
    { arg: "FROM:<@a.example,@b.example:user@d.example>", address: "user@d.example", domain: "d.example" },
    { arg: "FROM:<@a.example:user@d.example>", address: "user@d.example" },
    // Quoted local parts, re-emitted least-quoted.
    { arg: 'FROM:<"alice"@example.org>', address: "alice@example.org", local: "alice" },
    { arg: 'FROM:<"Joe\\,Smith"@example.org>', address: '"Joe,Smith"@example.org', local: '"Joe,Smith"' },
    { arg: 'FROM:<"a b"@example.org>', address: '"a b"@example.org' },
    { arg: 'FROM:<"a@b"@example.org>', address: '"a@b"@example.org' },
    { arg: 'FROM:<"a>b"@example.org>', address: '"a>b"@example.org' },
    { arg: 'FROM:<"a\\"b"@example.org>', address: '"a\\"b"@example.org' },
    { arg: 'FROM:<"a\\\\b"@example.org>', address: '"a\\\\b"@example.org' },
    { arg: 'FROM:<"\\a\\b"@example.org>', address: "ab@example.org", local: "ab" },
    { arg: 'FROM:<"a..b"@example.org>', address: '"a..b"@example.org' },
    { arg: 'FROM:<".a"@example.org>', address: '".a"@example.org' },
    { arg: 'FROM:<""@example.org>', address: '""@example.org' },
    { arg: "FROM:<!#$%&'*+-/=?^_`{|}~@example.org>", address: "!#$%&'*+-/=?^_`{|}~@example.org" },
    // Address literals (RFC 5321 4.1.3).
    { arg: "FROM:<a@[192.0.2.1]>", address: "a@[192.0.2.1]", domain: "[192.0.2.1]" },
    { arg: "FROM:<a@[IPv6:2001:db8::1]>", address: "a@[IPv6:2001:db8::1]" },
    { arg: "FROM:<a@[IPv6:::ffff:192.0.2.1]>", address: "a@[IPv6:::ffff:192.0.2.1]" },
    { arg: "FROM:<a@single>", address: "a@single" },
    { arg: "FROM:<" + "l".repeat(64) + "@example.org>", address: "l".repeat(64) + "@example.org" },
  ];
  for (const row of table) {
    test(row.arg, () => {
      const parsed = parseMailFrom(row.arg, ascii);
      assert.equal(parsed.path?.address ?? null, row.address);
      if (row.local !== undefined) assert.equal(parsed.path?.localPart, row.local);
      if (row.domain !== undefined) assert.equal(parsed.path?.domain, row.domain);
      assert.equal(parsed.params, row.params ?? "");
    });
  }

  test("domain kept as spelled, lower-cased copy for comparison", () => {
    const parsed = parseMailFrom("FROM:<Bob@MiXeD.Example>", ascii);
    assert.deepEqual(parsed.path, {
      localPart: "Bob",
      domain: "MiXeD.Example",
      domainKey: "mixed.example",
      address: "Bob@MiXeD.Example",
    });
  });

  test("a 256-octet path is accepted", () => {
    const domain = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(59)].join(".");
    const path = `<${"l".repeat(2)}@${domain}>`;
    assert.equal(path.length, 256);
    assert.equal(parseMailFrom(`FROM:${path}`, ascii).path?.domain, domain);
  });
});

describe("parseMailFrom: refused", () => {
  const table: {
    name: string;
    arg: string;
    code: number;
    enhanced: string;
    options?: { smtputf8Allowed: boolean };
  }[] = [
    { name: "missing FROM:", arg: "<a@b.c>", code: 501, enhanced: "5.5.4" },
    { name: "TO: instead of FROM:", arg: "TO:<a@b.c>", code: 501, enhanced: "5.5.4" },
    { name: "space before colon", arg: "FROM :<a@b.c>", code: 501, enhanced: "5.5.4" },
    { name: "missing angle brackets", arg: "FROM:a@b.c", code: 501, enhanced: "5.5.4" },
    { name: "missing angle brackets with space", arg: "FROM: a@b.c", code: 501, enhanced: "5.5.4" },
    { name: "empty", arg: "FROM:", code: 501, enhanced: "5.5.4" },
    { name: "unclosed bracket", arg: "FROM:<a@b.c", code: 501, enhanced: "5.1.7" },
    { name: "no domain", arg: "FROM:<alice>", code: 501, enhanced: "5.1.7" },
    { name: "postmaster is RCPT only", arg: "FROM:<postmaster>", code: 501, enhanced: "5.1.7" },
    { name: "empty domain", arg: "FROM:<a@>", code: 501, enhanced: "5.1.7" },
    { name: "empty local part", arg: "FROM:<@b.c>", code: 501, enhanced: "5.1.7" },
    { name: "double dot", arg: "FROM:<a..b@c.d>", code: 501, enhanced: "5.1.7" },
    { name: "leading dot", arg: "FROM:<.a@c.d>", code: 501, enhanced: "5.1.7" },
    { name: "trailing dot", arg: "FROM:<a.@c.d>", code: 501, enhanced: "5.1.7" },
    { name: "two @", arg: "FROM:<a@b@c.d>", code: 501, enhanced: "5.1.7" },
    { name: "space in local part", arg: "FROM:<a b@c.d>", code: 501, enhanced: "5.1.7" },
    { name: "underscore in domain", arg: "FROM:<a@b_c.d>", code: 501, enhanced: "5.1.7" },
    { name: "trailing dot in domain", arg: "FROM:<a@c.d.>", code: 501, enhanced: "5.1.7" },
    { name: "hyphen label end", arg: "FROM:<a@c-.d>", code: 501, enhanced: "5.1.7" },
    { name: "bad IPv4 literal", arg: "FROM:<a@[192.0.2.256]>", code: 501, enhanced: "5.1.7" },
    { name: "bad IPv6 literal", arg: "FROM:<a@[IPv6:1::2::3]>", code: 501, enhanced: "5.1.7" },
    { name: "literal without tag", arg: "FROM:<a@[hello]>", code: 501, enhanced: "5.1.7" },
    { name: "unterminated literal", arg: "FROM:<a@[1.2.3.4>", code: 501, enhanced: "5.1.7" },
    { name: "unterminated quote", arg: 'FROM:<"abc@d.e>', code: 501, enhanced: "5.1.7" },
    { name: "raw backslash unquoted", arg: "FROM:<a\\b@c.d>", code: 501, enhanced: "5.1.7" },
    { name: "no space before params", arg: "FROM:<a@b.c>SIZE=1", code: 501, enhanced: "5.1.7" },
    { name: "bad source route", arg: "FROM:<@a.b,c.d:u@e.f>", code: 501, enhanced: "5.1.7" },
    { name: "source route without colon", arg: "FROM:<@a.b u@e.f>", code: 501, enhanced: "5.1.7" },
    { name: "nested brackets", arg: "FROM:<<a@b.c>>", code: 501, enhanced: "5.1.7" },
    { name: "NUL", arg: "FROM:<a\0@b.c>", code: 501, enhanced: "5.5.2" },
    { name: "CR", arg: "FROM:<a@b.c>\r", code: 501, enhanced: "5.5.2" },
    { name: "LF", arg: "FROM:<a@b.c>\nRCPT TO:<x@y>", code: 501, enhanced: "5.5.2" },
    { name: "control char in quotes", arg: 'FROM:<"a\x01"@b.c>', code: 501, enhanced: "5.5.2" },
    { name: "DEL", arg: "FROM:<a\x7f@b.c>", code: 501, enhanced: "5.5.2" },
    { name: "local part 65", arg: "FROM:<" + "l".repeat(65) + "@b.c>", code: 501, enhanced: "5.5.4" },
    {
      name: "domain 256",
      arg: "FROM:<a@" + ("a".repeat(63) + ".").repeat(4).slice(0, 256) + ">",
      code: 501,
      enhanced: "5.5.4",
    },
    {
      name: "path 257",
      arg: "FROM:<lll@" + ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(59)].join(".") + ">",
      code: 501,
      enhanced: "5.5.4",
    },
    { name: "UTF-8 without SMTPUTF8", arg: "FROM:<j\u00f6rg@b.c>", code: 550, enhanced: "5.6.7" },
    {
      name: "UTF-8 domain without SMTPUTF8",
      arg: "FROM:<a@b\u00fccher.example>",
      code: 550,
      enhanced: "5.6.7",
    },
    {
      name: "UTF-8 advertised but not declared on MAIL",
      arg: "FROM:<j\u00f6rg@b.c>",
      code: 550,
      enhanced: "5.6.7",
      options: utf8,
    },
    {
      name: "latin-1 high octet without SMTPUTF8",
      arg: "FROM:<j\xf6rg@b.c>",
      code: 550,
      enhanced: "5.6.7",
    },
  ];
  for (const row of table) {
    test(
      row.name,
      () => void assertSmtpError(() => parseMailFrom(row.arg, row.options ?? ascii), row.code, row.enhanced),
    );
  }
});

describe("SMTPUTF8 addresses", () => {
  test("accepted on MAIL when declared", () => {
    const parsed = parseMailFrom("FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8", utf8);
    assert.equal(parsed.path?.address, "j\u00f6rg@b\u00fccher.example");
    assert.equal(parsed.params, "SMTPUTF8");
  });
  test("declared in any case", () => {
    assert.equal(parseMailFrom("FROM:<\u00f6@b.c> smtputf8", utf8).path?.localPart, "\u00f6");
  });
  test("ASCII address needs no declaration", () => {
    assert.equal(parseMailFrom("FROM:<a@b.c>", utf8).path?.address, "a@b.c");
  });
  test("accepted on RCPT inside an SMTPUTF8 transaction", () => {
    assert.equal(
      parseRcptTo("TO:<\u7528\u6237@\u4f8b\u5b50.\u6d4b\u8bd5>", utf8).path?.domain,
      "\u4f8b\u5b50.\u6d4b\u8bd5",
    );
  });
  test("refused on RCPT otherwise with 553 5.6.7", () => {
    assertSmtpError(() => parseRcptTo("TO:<\u00f6@b.c>", ascii), 553, "5.6.7");
  });
  test("quoted UTF-8 local part", () => {
    assert.equal(parseRcptTo('TO:<"\u00f6 x"@b.c>', utf8).path?.localPart, '"\u00f6 x"');
  });
  test("local part length counted in octets", () => {
    // 33 two-octet characters = 66 octets > 64.
    assertSmtpError(() => parseRcptTo(`TO:<${"\u00f6".repeat(33)}@b.c>`, utf8), 501, "5.5.4");
  });
});

describe("parseRcptTo", () => {
  const accepted: [string, string, string?][] = [
    ["TO:<bob@example.org>", "bob@example.org"],
    ["to:<bob@example.org>", "bob@example.org"],
    ["TO: <bob@example.org>", "bob@example.org"],
    ["TO:<Postmaster>", "Postmaster"],
    ["TO:<postmaster>", "postmaster"],
    ["TO:<POSTMASTER>", "POSTMASTER"],
    ['TO:<"postmaster">', "postmaster"],
    ["TO:<postmaster@example.org>", "postmaster@example.org"],
    ["TO:<@relay.example:bob@example.org>", "bob@example.org"],
    ["TO:<bob@example.org> NOTIFY=NEVER", "bob@example.org", "NOTIFY=NEVER"],
  ];
  for (const [arg, address, params] of accepted) {
    test(`accepts ${arg}`, () => {
      const parsed = parseRcptTo(arg, ascii);
      assert.equal(parsed.path?.address, address);
      assert.equal(parsed.params, params ?? "");
    });
  }

  test("bare postmaster has an empty domain", () => {
    assert.deepEqual(parseRcptTo("TO:<Postmaster>", ascii).path, {
      localPart: "Postmaster",
      domain: "",
      domainKey: "",
      address: "Postmaster",
    });
  });

  const refused: [string, string, number, string][] = [
    ["null recipient", "TO:<>", 501, "5.1.3"],
    ["null recipient with space", "TO: <>", 501, "5.1.3"],
    ["FROM: on RCPT", "FROM:<a@b.c>", 501, "5.5.4"],
    ["missing brackets", "TO:bob@example.org", 501, "5.5.4"],
    ["no domain", "TO:<bob>", 501, "5.1.3"],
    ["postmaster lookalike", "TO:<postmasters>", 501, "5.1.3"],
    ["NUL", "TO:<a@b.c\0>", 501, "5.5.2"],
  ];
  for (const [name, arg, code, enhanced] of refused) {
    test(`refuses ${name}`, () => void assertSmtpError(() => parseRcptTo(arg, ascii), code, enhanced));
  }
});

describe("formatLocalPart / formatPath", () => {
  const table: [string, string][] = [
    ["alice", "alice"],
    ["a.b", "a.b"],
    ["Joe,Smith", '"Joe,Smith"'],
    ["a b", '"a b"'],
    ['a"b', '"a\\"b"'],
    ["a\\b", '"a\\\\b"'],
    ["", '""'],
    ["a..b", '"a..b"'],
  ];
  for (const [value, formatted] of table) {
    test(JSON.stringify(value), () => assert.equal(formatLocalPart(value), formatted));
  }
  test("path", () => {
    assert.equal(formatPath(null), "<>");
    assert.equal(formatPath(parseRcptTo('TO:<"a b"@c.d>', ascii).path), '<"a b"@c.d>');
  });
  test("round trip through the parser", () => {
    for (const [value] of table) {
      const path = `<${formatLocalPart(value)}@example.org>`;
      const parsed = parseRcptTo(`TO:${path}`, ascii);
      assert.equal(formatPath(parsed.path), path);
    }
  });
});
