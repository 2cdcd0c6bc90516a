import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  generateSecret,
  hashPassword,
  makeDummyHash,
  needsRehash,
  parsePasswordHash,
  SECRET_LENGTH,
  verifyPassword,
} from "../../../src/server/sasl/password.ts";

// Cheap cost so the suite stays fast; the format and code path are the same as production.
const CHEAP = { N: 16, r: 1, p: 1 } as const;
const STORED_RE = /^\$scrypt\$N=16,r=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;

describe("hashPassword / verifyPassword", () => {
  const passwords: [string, string | Uint8Array][] = [
    ["ASCII", "correct horse battery staple"],
    ["UTF-8", "pässwörd ✓"],
    ["bytes", Uint8Array.from([0, 1, 2, 255])],
    ["long", "x".repeat(1000)],
  ];
  for (const [name, password] of passwords) {
    test(`round trip: ${name}`, async () => {
      const stored = await hashPassword(password, { params: CHEAP });
      assert.match(stored, STORED_RE);
      assert.equal(await verifyPassword(stored, password), true);
      assert.equal(await verifyPassword(stored, "wrong"), false);
    });
  }

  test("same password hashes differently (random salt)", async () => {
    const a = await hashPassword("pw", { params: CHEAP });
    const b = await hashPassword("pw", { params: CHEAP });
    assert.notEqual(a, b);
  });

  test("string and its UTF-8 bytes are the same password", async () => {
    const stored = await hashPassword("pässwörd", { params: CHEAP });
    assert.equal(await verifyPassword(stored, new TextEncoder().encode("pässwörd")), true);
  });

  test("default parameters are N=16384,r=8,p=1", async () => {
    const stored = await hashPassword("pw");
    assert.match(stored, /^\$scrypt\$N=16384,r=8,p=1\$/);
    assert.equal(await verifyPassword(stored, "pw"), true);
  });

  test("custom salt and key lengths", async () => {
    const stored = await hashPassword("pw", { params: CHEAP, saltBytes: 32, keyBytes: 64 });
    const parsed = parsePasswordHash(stored);
    assert.ok(parsed);
    assert.equal(parsed.salt.length, 32);
    assert.equal(parsed.key.length, 64);
    assert.equal(await verifyPassword(stored, "pw"), true);
  });

  const badOptions: [string, Parameters<typeof hashPassword>[1]][] = [
    ["N not a power of two", { params: { N: 15, r: 1, p: 1 } }],
    ["N too large", { params: { N: 1 << 21, r: 1, p: 1 } }],
    ["r zero", { params: { N: 16, r: 0, p: 1 } }],
    ["salt too short", { params: CHEAP, saltBytes: 4 }],
    ["key too short", { params: CHEAP, keyBytes: 8 }],
  ];
  for (const [name, options] of badOptions) {
    test(`refuses ${name}`, async () => {
      await assert.rejects(hashPassword("pw", options), RangeError);
    });
  }

  const salt = "c2FsdHNhbHRzYWx0c2FsdA";
  const key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U";
  const malformed: [string, string][] = [
    ["empty", ""],
    ["other scheme", `$argon2id$v=19$m=65536,t=3,p=4$${salt}$${key}`],
    ["missing hash", `$scrypt$N=16,r=1,p=1$${salt}`],
    ["N not power of two", `$scrypt$N=17,r=1,p=1$${salt}$${key}`],
    ["N huge (memory bomb)", `$scrypt$N=16777216,r=8,p=1$${salt}$${key}`],
    ["p huge", `$scrypt$N=16,r=1,p=999$${salt}$${key}`],
    ["padded base64", `$scrypt$N=16,r=1,p=1$${salt}==$${key}`],
    ["key too short", `$scrypt$N=16,r=1,p=1$${salt}$a2V5`],
    ["trailing junk", `$scrypt$N=16,r=1,p=1$${salt}$${key}$`],
  ];
  for (const [name, stored] of malformed) {
    test(`malformed stored hash is false, not an error: ${name}`, async () => {
      assert.equal(parsePasswordHash(stored), null);
      assert.equal(await verifyPassword(stored, "pw"), false);
    });
  }
});

describe("needsRehash", () => {
  test("true when parameters differ or hash is malformed, false when equal", async () => {
    const stored = await hashPassword("pw", { params: CHEAP });
    assert.equal(needsRehash(stored, CHEAP), false);
    assert.equal(needsRehash(stored), true);
    assert.equal(needsRehash("junk", CHEAP), true);
  });
});

describe("makeDummyHash", () => {
  test("is a valid hash that no empty or common password matches", async () => {
    const dummy = await makeDummyHash({ params: CHEAP });
    assert.match(dummy, STORED_RE);
    assert.equal(await verifyPassword(dummy, ""), false);
    assert.equal(await verifyPassword(dummy, "password"), false);
  });
});

describe("generateSecret", () => {
  test("26 characters from the unambiguous alphabet", () => {
    for (let i = 0; i < 200; i++) {
      const s = generateSecret();
      assert.equal(s.length, SECRET_LENGTH);
      assert.match(s, /^[a-km-np-z2-9]{26}$/);
    }
  });

  test("carries at least 128 bits (26 symbols x 5 bits)", () => {
    assert.ok(SECRET_LENGTH * Math.log2(32) >= 128);
  });

  test("does not repeat", () => {
    const seen = new Set(Array.from({ length: 1000 }, generateSecret));
    assert.equal(seen.size, 1000);
  });
});
