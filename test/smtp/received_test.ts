import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  buildReceivedHeader,
  countReceivedHeaders,
  foldHeaderLine,
  ReceivedHeaderCounter,
  type ReceivedOptions,
  receivedProtocol,
  sanitizeHeloName,
} from "../../src/smtp/received.ts";
import { bytes, splitAt } from "./helpers.ts";

const base: ReceivedOptions = {
  heloName: "client.example.org",
  remoteIp: "192.0.2.10",
  remoteHost: "mail.example.org",
  byHost: "mx.provider.example",
  software: "odmr-relay",
  protocol: "ESMTPS",
  id: "01J9Z6ABC",
  recipients: ["alice@customer.example"],
  date: new Date("2025-06-03T10:15:02Z"),
  utcOffsetMinutes: 0,
};

describe("buildReceivedHeader", () => {
  test("PROTOCOL 2.11 example", () => {
    assert.equal(
      buildReceivedHeader(base),
      "Received: from client.example.org (mail.example.org [192.0.2.10])\r\n" +
        "\tby mx.provider.example (odmr-relay) with ESMTPS id 01J9Z6ABC\r\n" +
        "\tfor <alice@customer.example>; Tue, 3 Jun 2025 10:15:02 +0000\r\n",
    );
  });

  const table: {
    name: string;
    options: Partial<ReceivedOptions>;
    first?: string;
    second?: string;
    lines?: number;
  }[] = [
    {
      name: "no reverse DNS",
      options: { remoteHost: undefined as unknown as string },
      first: "Received: from client.example.org ([192.0.2.10])",
    },
    {
      name: "IPv6 peer",
      options: { remoteIp: "2001:db8::1" },
      first: "Received: from client.example.org (mail.example.org [IPv6:2001:db8::1])",
    },
    {
      name: "address literal EHLO",
      options: { heloName: "[192.0.2.10]" },
      first: "Received: from [192.0.2.10] (mail.example.org [192.0.2.10])",
    },
    {
      name: "invalid EHLO goes into a comment",
      options: { heloName: "bad_name" },
      first: "Received: from [192.0.2.10] (helo=bad_name mail.example.org)",
    },
    {
      name: "parentheses escaped",
      options: { heloName: "a(b)c\\" },
      first: "Received: from [192.0.2.10] (helo=a\\(b\\)c\\\\ mail.example.org)",
    },
    {
      name: "header injection via CRLF is neutralised",
      options: { heloName: "x\r\nBcc: victim@example.org" },
      first: "Received: from [192.0.2.10] (helo=x??Bcc:?victim@example.org mail.example.org)",
    },
    {
      name: "spaces and 8-bit replaced",
      options: { heloName: "caf\u00e9 host" },
      first: "Received: from [192.0.2.10] (helo=caf??host mail.example.org)",
    },
    {
      name: "empty EHLO",
      options: { heloName: "", remoteHost: undefined as unknown as string },
      first: "Received: from [192.0.2.10]",
    },
    {
      name: "bogus reverse DNS is dropped",
      options: { remoteHost: "evil)(name" },
      first: "Received: from client.example.org ([192.0.2.10])",
    },
    {
      name: "two recipients: no for clause (RFC 5321 7.2)",
      options: { recipients: ["a@x.example", "b@x.example"] },
      second:
        "\tby mx.provider.example (odmr-relay) with ESMTPS id 01J9Z6ABC; Tue, 3 Jun 2025 10:15:02 +0000",
      lines: 2,
    },
    {
      name: "no recipients",
      options: { recipients: [] },
      lines: 2,
    },
    {
      name: "no software comment",
      options: { software: undefined as unknown as string },
      second: "\tby mx.provider.example with ESMTPS id 01J9Z6ABC",
    },
  ];
  for (const row of table) {
    test(row.name, () => {
      const options = { ...base } as ReceivedOptions;
      for (const [key, value] of Object.entries(row.options)) {
        if (value === undefined) delete (options as unknown as Record<string, unknown>)[key];
        else (options as unknown as Record<string, unknown>)[key] = value;
      }
      const header = buildReceivedHeader(options);
      const lines = header.split("\r\n");
      assert.equal(lines.pop(), "", "ends with CRLF");
      if (row.first !== undefined) assert.equal(lines[0], row.first);
      if (row.second !== undefined) assert.equal(lines[1], row.second);
      if (row.lines !== undefined) assert.equal(lines.length, row.lines);
      for (const line of lines.slice(1)) assert.match(line, /^\t/, "continuation lines start with TAB");
      assert.doesNotMatch(header.replace(/\r\n/g, ""), /[\r\n]/, "no bare CR or LF");
    });
  }

  test("EHLO name is capped at 255 characters", () => {
    const header = buildReceivedHeader({ ...base, heloName: "a".repeat(10_000) });
    assert.ok((header.split("\r\n")[0] ?? "").length < 400);
  });

  test("a token without spaces longer than 998 is cut hard rather than overflowing", () => {
    const header = buildReceivedHeader({ ...base, id: "z".repeat(2500) });
    const lines = header.split("\r\n");
    assert.ok(lines.length > 4);
    for (const line of lines) assert.ok(line.length <= 998);
    assert.ok(header.replace(/\r\n\t/g, "").includes("z".repeat(2500)));
  });
});

describe("foldHeaderLine", () => {
  const octets = (line: string) => new TextEncoder().encode(line).length;
  test("short line untouched", () => assert.deepEqual(foldHeaderLine("Received: a"), ["Received: a"]));
  test("folds at spaces, every piece at most 998 octets, unfolds to the original", () => {
    const line = "Received: " + "word ".repeat(500) + "end";
    const pieces = foldHeaderLine(line);
    assert.ok(pieces.length >= 3);
    for (const piece of pieces) assert.ok(octets(piece) <= 998);
    for (const piece of pieces.slice(1)) assert.match(piece, /^\t\S/);
    assert.equal(pieces.join("\r\n").replace(/\r\n\t/g, " "), line);
  });
  test("exactly 998 octets is not folded", () => {
    const line = "X: " + "a ".repeat(497) + "b";
    assert.equal(line.length, 998);
    assert.deepEqual(foldHeaderLine(line), [line]);
  });
  test("multi-octet characters are measured in octets", () => {
    const line = "X: " + "\u00e9 ".repeat(400);
    for (const piece of foldHeaderLine(line)) assert.ok(octets(piece) <= 998);
  });
});

describe("receivedProtocol", () => {
  const table: [boolean, boolean, boolean, boolean, string][] = [
    [false, false, false, false, "SMTP"],
    [false, true, true, false, "SMTP"],
    [true, false, false, false, "ESMTP"],
    [true, true, false, false, "ESMTPS"],
    [true, false, true, false, "ESMTPA"],
    [true, true, true, false, "ESMTPSA"],
    [true, false, false, true, "UTF8SMTP"],
    [true, true, false, true, "UTF8SMTPS"],
    [true, true, true, true, "UTF8SMTPSA"],
  ];
  for (const [ehlo, tls, auth, utf8, expected] of table) {
    test(expected + ` ehlo=${ehlo} tls=${tls} auth=${auth}`, () => {
      assert.equal(receivedProtocol({ ehlo, tls, auth, utf8 }), expected);
    });
  }
});

describe("sanitizeHeloName", () => {
  const table: [string, string, boolean][] = [
    ["mail.example.org", "mail.example.org", true],
    ["[192.0.2.1]", "[192.0.2.1]", true],
    ["localhost", "localhost", true],
    ["bad_name", "bad_name", false],
    ["a b", "a?b", false],
    ["a\u00e9", "a?", false],
    ["mail.example.org\r\n", "mail.example.org??", false],
  ];
  for (const [input, text, valid] of table) {
    test(JSON.stringify(input), () => assert.deepEqual(sanitizeHeloName(input), { text, valid }));
  }
});

describe("ReceivedHeaderCounter", () => {
  const table: [string, string, number][] = [
    ["none", "Subject: x\r\n\r\nbody\r\n", 0],
    ["one", "Received: from a\r\nSubject: x\r\n\r\n", 1],
    ["case-insensitive", "received: a\r\nRECEIVED: b\r\nReCeIvEd: c\r\n\r\n", 3],
    ["WSP before colon", "Received : a\r\nReceived\t: b\r\n\r\n", 2],
    ["folded field counted once", "Received: from a\r\n\tby b\r\n Received: not a field\r\n\r\n", 1],
    ["not at line start", "X-Received: a\r\nSubject: Received: b\r\n\r\n", 0],
    ["prefix only", "Receive: a\r\nReceivedX: b\r\nReceived\r\n\r\n", 0],
    ["body not counted", "Received: a\r\n\r\nReceived: b\r\nReceived: c\r\n", 1],
    ["empty header section", "\r\nReceived: b\r\n", 0],
    ["no body separator", "Received: a\r\nReceived: b\r\n", 2],
    ["lone CR at line start is not an empty line", "\rReceived: a\r\nReceived: b\r\n\r\n", 1],
  ];
  for (const [name, message, count] of table) {
    test(`${name}, at every split point`, () => {
      const data = bytes(message);
      assert.equal(countReceivedHeaders(data), count, "whole");
      for (let a = 0; a <= data.length; a++) {
        for (let b = a; b <= data.length; b++) {
          const counter = new ReceivedHeaderCounter();
          for (const chunk of splitAt(data, [a, b])) counter.push(chunk);
          assert.equal(counter.count, count, `split ${a},${b}`);
        }
      }
    });
  }

  test("loop detection over many hops", () => {
    const message = "Received: x\r\n".repeat(120) + "\r\nbody\r\n";
    const counter = new ReceivedHeaderCounter();
    counter.push(bytes(message));
    assert.equal(counter.count, 120);
    assert.equal(counter.headerEnded, true);
  });
});
