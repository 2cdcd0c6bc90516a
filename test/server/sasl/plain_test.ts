import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  LOGIN_PASSWORD_PROMPT,
  LOGIN_USERNAME_PROMPT,
  parseLoginResponse,
  parsePlainMessage,
  parsePlainResponse,
} from "../../../src/server/sasl/plain.ts";
import { decodeBase64Strict, encodeBase64 } from "../../../src/server/sasl/base64.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("parsePlainMessage", () => {
  const ok: [string, string, string, string][] = [
    // RFC 4616 4 examples.
    ["RFC 4616: empty authzid", "\u0000tim\u0000tanstaaftanstaaf", "tim", "tanstaaftanstaaf"],
    ["authzid equal to authcid", "tim\u0000tim\u0000secret", "tim", "secret"],
    ["UTF-8 identity and password", "\u0000jörg\u0000pässwörd", "jörg", "pässwörd"],
    ["spaces in password", "\u0000tim\u0000a b c", "tim", "a b c"],
    ["control characters in password", "\u0000tim\u0000a\tb\u007f", "tim", "a\tb\u007f"],
    [
      "255-octet fields",
      `${"z".repeat(255)}\u0000${"z".repeat(255)}\u0000${"p".repeat(255)}`,
      "z".repeat(255),
      "p".repeat(255),
    ],
    ["1000-octet password", `\u0000tim\u0000${"p".repeat(1000)}`, "tim", "p".repeat(1000)],
  ];
  for (const [name, message, authcid, password] of ok) {
    test(`accepts: ${name}`, () => {
      assert.deepEqual(parsePlainMessage(bytes(message)), { ok: true, authcid, password });
    });
  }

  const bad: [string, Uint8Array | string, string][] = [
    ["no NUL", "timsecret", "malformed"],
    ["one NUL", "tim\u0000secret", "malformed"],
    ["three NULs", "\u0000tim\u0000sec\u0000ret", "malformed"],
    ["trailing NUL", "\u0000tim\u0000secret\u0000", "malformed"],
    ["empty authcid", "\u0000\u0000secret", "malformed"],
    ["empty password", "\u0000tim\u0000", "malformed"],
    ["all empty", "\u0000\u0000", "malformed"],
    ["empty message", "", "malformed"],
    ["invalid UTF-8 in password", Uint8Array.from([0, 0x74, 0, 0xc3, 0x28]), "malformed"],
    ["invalid UTF-8 in authcid", Uint8Array.from([0, 0xff, 0, 0x70]), "malformed"],
    ["overlong UTF-8", Uint8Array.from([0, 0xc0, 0xaf, 0, 0x70]), "malformed"],
    ["CR LF in authcid", "\u0000tim\r\nx\u0000secret", "malformed"],
    ["control in authzid", "a\u0001\u0000tim\u0000secret", "malformed"],
    // We do not support proxy authorisation.
    ["authzid differs", "admin\u0000tim\u0000secret", "authzid-mismatch"],
    ["authzid differs only in case", "Tim\u0000tim\u0000secret", "authzid-mismatch"],
  ];
  for (const [name, message, reason] of bad) {
    test(`rejects: ${name}`, () => {
      const m = typeof message === "string" ? bytes(message) : message;
      assert.deepEqual(parsePlainMessage(m), { ok: false, reason });
    });
  }
});

describe("parsePlainResponse", () => {
  test("decodes and parses", () => {
    assert.deepEqual(parsePlainResponse("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), {
      ok: true,
      authcid: "tim",
      password: "tanstaaftanstaaf",
    });
  });

  for (
    const line of ["AHRpbQB0YW5zdGFhZnRhbnN0YWFm=", "AHRp bQB0", "=", "*", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"]
  ) {
    test(`bad base64: ${JSON.stringify(line)}`, () => {
      assert.deepEqual(parsePlainResponse(line), { ok: false, reason: "bad-base64" });
    });
  }

  test("empty line decodes to an empty (malformed) message", () => {
    assert.deepEqual(parsePlainResponse(""), { ok: false, reason: "malformed" });
  });
});

describe("LOGIN", () => {
  test("prompts are base64 of Username: and Password:", () => {
    assert.equal(new TextDecoder().decode(decodeBase64Strict(LOGIN_USERNAME_PROMPT)!), "Username:");
    assert.equal(new TextDecoder().decode(decodeBase64Strict(LOGIN_PASSWORD_PROMPT)!), "Password:");
  });

  const cases: [string, string, "username" | "password", unknown][] = [
    ["username", encodeBase64("tim"), "username", { ok: true, value: "tim" }],
    ["UTF-8 username", encodeBase64("jörg"), "username", { ok: true, value: "jörg" }],
    ["password with tab", encodeBase64("a\tb"), "password", { ok: true, value: "a\tb" }],
    ["username with tab", encodeBase64("a\tb"), "username", { ok: false, reason: "malformed" }],
    ["empty", "", "username", { ok: false, reason: "malformed" }],
    ["empty password", "", "password", { ok: false, reason: "malformed" }],
    ["NUL", encodeBase64("ti\u0000m"), "password", { ok: false, reason: "malformed" }],
    ["invalid UTF-8", encodeBase64(Uint8Array.from([0xfe])), "password", { ok: false, reason: "malformed" }],
    ["bad base64", "dGlt=", "username", { ok: false, reason: "bad-base64" }],
    ["abort marker", "*", "password", { ok: false, reason: "bad-base64" }],
  ];
  for (const [name, line, kind, want] of cases) {
    test(`parseLoginResponse: ${name}`, () => {
      assert.deepEqual(parseLoginResponse(line, kind), want);
    });
  }
});
