import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatRfc5322Date } from "../../src/smtp/rfc5322_date.ts";

describe("formatRfc5322Date", () => {
  const table: [string, number, string][] = [
    ["2025-06-03T10:15:02Z", 0, "Tue, 3 Jun 2025 10:15:02 +0000"],
    ["2025-06-03T10:15:02Z", 120, "Tue, 3 Jun 2025 12:15:02 +0200"],
    ["2025-06-03T10:15:02Z", -330, "Tue, 3 Jun 2025 04:45:02 -0530"],
    ["2024-12-31T23:59:59Z", 60, "Wed, 1 Jan 2025 00:59:59 +0100"],
    ["2024-01-01T00:00:00Z", -60, "Sun, 31 Dec 2023 23:00:00 -0100"],
    ["2024-02-29T07:08:09Z", 0, "Thu, 29 Feb 2024 07:08:09 +0000"],
    ["2025-11-22T14:43:00Z", 345, "Sat, 22 Nov 2025 20:28:00 +0545"],
  ];
  for (const [iso, offset, expected] of table) {
    test(`${iso} at ${offset}`, () => {
      assert.equal(formatRfc5322Date(new Date(iso), { utcOffsetMinutes: offset }), expected);
    });
  }

  test("default uses the local offset and the RFC 5322 shape", () => {
    const date = new Date("2025-06-03T10:15:02Z");
    const formatted = formatRfc5322Date(date);
    assert.match(
      formatted,
      /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/,
    );
    assert.equal(formatted, formatRfc5322Date(date, { utcOffsetMinutes: -date.getTimezoneOffset() }));
  });
});
