import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  advertisedMechanisms,
  authEhloKeyword,
  checkMechanism,
  MECHANISM_INFO,
  type MechanismPolicy,
} from "../../../src/server/sasl/mechanisms.ts";

describe("advertisedMechanisms", () => {
  const cases: [string, MechanismPolicy, string[]][] = [
    ["plaintext connection: CRAM-MD5 only", { tlsActive: false }, ["CRAM-MD5"]],
    ["TLS: all three", { tlsActive: true }, ["CRAM-MD5", "PLAIN", "LOGIN"]],
    ["plaintext with PLAIN allowed", { tlsActive: false, allowPlainWithoutTls: true }, [
      "CRAM-MD5",
      "PLAIN",
      "LOGIN",
    ]],
    ["CRAM-MD5 turned off, no TLS", { tlsActive: false, cramMd5Enabled: false }, []],
    ["CRAM-MD5 turned off, TLS", { tlsActive: true, cramMd5Enabled: false }, ["PLAIN", "LOGIN"]],
    ["PLAIN turned off, TLS", { tlsActive: true, plainEnabled: false }, ["CRAM-MD5"]],
    ["PLAIN turned off overrides allowPlainWithoutTls", {
      tlsActive: false,
      allowPlainWithoutTls: true,
      plainEnabled: false,
    }, ["CRAM-MD5"]],
  ];
  for (const [name, policy, want] of cases) {
    test(name, () => {
      assert.deepEqual(advertisedMechanisms(policy), want);
    });
  }
});

describe("authEhloKeyword", () => {
  test("lists mechanisms, or null when none", () => {
    assert.equal(authEhloKeyword({ tlsActive: false }), "AUTH CRAM-MD5");
    assert.equal(authEhloKeyword({ tlsActive: true }), "AUTH CRAM-MD5 PLAIN LOGIN");
    assert.equal(authEhloKeyword({ tlsActive: false, cramMd5Enabled: false }), null);
  });
});

describe("checkMechanism", () => {
  const unknown = {
    ok: false,
    reason: "unknown-mechanism",
    code: 504,
    enhanced: "5.5.4",
    text: "Unrecognized authentication type",
  };
  const needsTls = {
    ok: false,
    reason: "encryption-required",
    code: 504,
    enhanced: "5.5.4",
    text: "Encryption required for requested authentication mechanism",
  };
  const ok = (m: "CRAM-MD5" | "PLAIN" | "LOGIN") => ({ ok: true, mechanism: m, info: MECHANISM_INFO[m] });

  const cases: [string, string, MechanismPolicy, unknown][] = [
    ["CRAM-MD5 without TLS", "CRAM-MD5", { tlsActive: false }, ok("CRAM-MD5")],
    ["CRAM-MD5 lower case", "cram-md5", { tlsActive: false }, ok("CRAM-MD5")],
    ["PLAIN without TLS", "PLAIN", { tlsActive: false }, needsTls],
    ["LOGIN without TLS", "login", { tlsActive: false }, needsTls],
    ["PLAIN under TLS", "PLAIN", { tlsActive: true }, ok("PLAIN")],
    ["LOGIN under TLS", "LOGIN", { tlsActive: true }, ok("LOGIN")],
    ["PLAIN allowed without TLS", "plain", { tlsActive: false, allowPlainWithoutTls: true }, ok("PLAIN")],
    ["unknown mechanism", "DIGEST-MD5", { tlsActive: true }, unknown],
    ["unknown mechanism without TLS", "SCRAM-SHA-256", { tlsActive: false }, unknown],
    ["empty name", "", { tlsActive: true }, unknown],
    ["junk name", "CRAM-MD5\u0000", { tlsActive: true }, unknown],
    ["disabled CRAM-MD5 reads as unknown", "CRAM-MD5", { tlsActive: true, cramMd5Enabled: false }, unknown],
    ["disabled PLAIN reads as unknown", "PLAIN", { tlsActive: true, plainEnabled: false }, unknown],
  ];
  for (const [name, mech, policy, want] of cases) {
    test(name, () => {
      assert.deepEqual(checkMechanism(mech, policy), want);
    });
  }

  test("CRAM-MD5 is server-first, PLAIN and LOGIN accept an initial response", () => {
    assert.equal(MECHANISM_INFO["CRAM-MD5"].serverFirst, true);
    assert.equal(MECHANISM_INFO.PLAIN.serverFirst, false);
    assert.equal(MECHANISM_INFO.LOGIN.serverFirst, false);
  });
});
