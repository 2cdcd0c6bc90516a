import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  cramMd5Digest,
  cramMd5Secret,
  makeChallenge,
  parseCramMd5Response,
  parseCramMd5Secret,
  verifyCramMd5,
} from "../../../src/server/sasl/cram_md5.ts";
import { encodeBase64 } from "../../../src/server/sasl/base64.ts";

const RFC2195_CHALLENGE = "<1896.697170952@postoffice.reston.mci.net>";
const RFC2195_DIGEST = "b913a602c7eda7a495b4e6e7334d3890";

describe("cramMd5Secret", () => {
  // PROTOCOL.md 4.3; the first matches `doveadm pw -s CRAM-MD5 -p password`.
  const vectors: [string, string][] = [
    ["password", "{CRAM-MD5}9186d855e11eba527a7a52ca82b313e180d62234f0acc9051b527243d41e2740"],
    ["tanstaaftanstaaf", "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"],
  ];
  for (const [password, stored] of vectors) {
    test(`derives Dovecot contexts for ${password}`, () => {
      assert.equal(cramMd5Secret(password), stored);
      assert.equal(cramMd5Secret(new TextEncoder().encode(password)), stored);
    });
  }

  test("is 64 lower-case hex digits after the prefix", () => {
    assert.match(cramMd5Secret("x"), /^\{CRAM-MD5\}[0-9a-f]{64}$/);
  });
});

describe("cramMd5Digest", () => {
  test("RFC 2195 example", () => {
    assert.equal(cramMd5Digest(cramMd5Secret("tanstaaftanstaaf"), RFC2195_CHALLENGE), RFC2195_DIGEST);
  });

  test("matches createHmac('md5') for random secrets (0..200 bytes) and challenges", () => {
    for (let n = 0; n <= 200; n += 3) {
      const secret = new Uint8Array(randomBytes(n));
      const challenge = `<${randomBytes(8).readBigUInt64BE()}.${n}@mx.example.net>` + "x".repeat(n % 90);
      const want = createHmac("md5", secret).update(challenge).digest("hex");
      assert.equal(cramMd5Digest(cramMd5Secret(secret), challenge), want, `secret length ${n}`);
    }
  });

  test("keys of exactly 64 and 65 bytes (boundary of the hash-the-key rule)", () => {
    for (const n of [63, 64, 65, 128]) {
      const secret = "k".repeat(n);
      const want = createHmac("md5", secret).update(RFC2195_CHALLENGE).digest("hex");
      assert.equal(cramMd5Digest(cramMd5Secret(secret), RFC2195_CHALLENGE), want, `length ${n}`);
    }
  });

  test("non-ASCII challenge bytes are hashed as UTF-8", () => {
    const challenge = "<1.2@hôte.example>";
    const want = createHmac("md5", "s").update(Buffer.from(challenge, "utf8")).digest("hex");
    assert.equal(cramMd5Digest(cramMd5Secret("s"), challenge), want);
  });

  test("throws on a malformed stored secret", () => {
    assert.throws(() => cramMd5Digest("{CRAM-MD5}abc", RFC2195_CHALLENGE), TypeError);
  });
});

describe("parseCramMd5Secret", () => {
  const good = "d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b";
  const cases: [string, string, boolean][] = [
    ["with prefix", `{CRAM-MD5}${good}`, true],
    ["HMAC-MD5 alias", `{HMAC-MD5}${good}`, true],
    ["lower-case prefix", `{cram-md5}${good}`, true],
    ["bare hex", good, true],
    ["upper-case hex", good.toUpperCase(), true],
    ["too short", `{CRAM-MD5}${good.slice(2)}`, false],
    ["too long", `{CRAM-MD5}${good}00`, false],
    ["non-hex", `{CRAM-MD5}${good.slice(1)}g`, false],
    ["other scheme", `{PLAIN}${good}`, false],
    ["empty", "", false],
  ];
  for (const [name, input, ok] of cases) {
    test(name, () => {
      assert.equal(parseCramMd5Secret(input) !== null, ok);
    });
  }

  test("upper-case hex yields the same digest", () => {
    assert.equal(cramMd5Digest(good.toUpperCase(), RFC2195_CHALLENGE), RFC2195_DIGEST);
  });
});

describe("makeChallenge", () => {
  test("has the RFC 2195 msg-id shape with 16 digits and the unix time", () => {
    const c = makeChallenge("odmr.example.net", 1_700_000_000_999);
    assert.match(c, /^<\d{16}\.1700000000@odmr\.example\.net>$/);
  });

  test("is unique per attempt", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) seen.add(makeChallenge("h.example", 0));
    assert.equal(seen.size, 1000);
  });

  test("uses the current time by default", () => {
    const before = Math.floor(Date.now() / 1000);
    const t = Number(/\.(\d+)@/.exec(makeChallenge("h.example"))![1]);
    assert.ok(t >= before && t <= before + 5);
  });

  test("accepts an address literal", () => {
    assert.match(makeChallenge("[IPv6:2001:db8::1]", 0), /@\[IPv6:2001:db8::1\]>$/);
  });

  for (const bad of ["", "a b", "x>", "<x", "h\r\nx", "a@b", "x".repeat(256)]) {
    test(`rejects host name ${JSON.stringify(bad.slice(0, 10))}`, () => {
      assert.throws(() => makeChallenge(bad), TypeError);
    });
  }
});

describe("parseCramMd5Response", () => {
  test("RFC 2195 example reply", () => {
    assert.deepEqual(parseCramMd5Response("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"), {
      ok: true,
      username: "tim",
      digest: RFC2195_DIGEST,
    });
  });

  const D = RFC2195_DIGEST;
  const ok: [string, string, string, string][] = [
    ["RFC 4954 example", "rjs3 ec3a59fed395aba1ec6367c4f4b41ac0", "rjs3", "ec3a59fed395aba1ec6367c4f4b41ac0"],
    ["spaces in username split at the last space", `john q public ${D}`, "john q public", D],
    ["upper-case digest is lower-cased", `tim ${D.toUpperCase()}`, "tim", D],
    ["UTF-8 username", `jörg ${D}`, "jörg", D],
    ["username with trailing space", `tim  ${D}`, "tim ", D],
  ];
  for (const [name, plain, username, digest] of ok) {
    test(`accepts: ${name}`, () => {
      assert.deepEqual(parseCramMd5Response(encodeBase64(plain)), { ok: true, username, digest });
    });
  }

  // PROTOCOL.md 7 item 13: all of these are 535 5.7.8, the same as a wrong secret.
  const malformed: [string, Uint8Array | string][] = [
    ["no space", `tim${D}`],
    ["empty username", ` ${D}`],
    ["empty digest", "tim "],
    ["short digest", `tim ${D.slice(1)}`],
    ["long digest", `tim ${D}0`],
    ["non-hex digest", `tim ${D.slice(1)}z`],
    ["digest then trailing space", `tim ${D} `],
    ["NUL in username", `t\u0000im ${D}`],
    ["NUL in digest", `tim ${D.slice(1)}\u0000`],
    ["CR LF in username", `tim\r\nx ${D}`],
    ["tab separator", `tim\t${D}`],
    ["invalid UTF-8", Uint8Array.from([0xff, 0x20, ...new TextEncoder().encode(D)])],
    ["empty", ""],
  ];
  for (const [name, plain] of malformed) {
    test(`malformed: ${name}`, () => {
      assert.deepEqual(parseCramMd5Response(encodeBase64(plain)), { ok: false, reason: "malformed" });
    });
  }

  for (const line of ["dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw=", "dGlt IGI5", "*", "dGl=tIGI5"]) {
    test(`bad base64: ${JSON.stringify(line.slice(0, 12))}`, () => {
      assert.deepEqual(parseCramMd5Response(line), { ok: false, reason: "bad-base64" });
    });
  }
});

describe("verifyCramMd5", () => {
  const stored = cramMd5Secret("tanstaaftanstaaf");
  const cases: [string, string, string, string, boolean][] = [
    ["RFC 2195 example", stored, RFC2195_CHALLENGE, RFC2195_DIGEST, true],
    ["upper-case digest", stored, RFC2195_CHALLENGE, RFC2195_DIGEST.toUpperCase(), true],
    ["wrong secret", cramMd5Secret("tanstaaftanstaag"), RFC2195_CHALLENGE, RFC2195_DIGEST, false],
    ["other challenge", stored, "<1896.697170953@postoffice.reston.mci.net>", RFC2195_DIGEST, false],
    ["one digit off", stored, RFC2195_CHALLENGE, RFC2195_DIGEST.slice(0, 31) + "1", false],
    ["short digest", stored, RFC2195_CHALLENGE, RFC2195_DIGEST.slice(0, 30), false],
    ["long digest", stored, RFC2195_CHALLENGE, RFC2195_DIGEST + "00", false],
    ["non-hex digest", stored, RFC2195_CHALLENGE, "zz" + RFC2195_DIGEST.slice(2), false],
    ["malformed stored secret", "{CRAM-MD5}nope", RFC2195_CHALLENGE, RFC2195_DIGEST, false],
    ["empty stored secret", "", RFC2195_CHALLENGE, RFC2195_DIGEST, false],
  ];
  for (const [name, s, challenge, digest, want] of cases) {
    test(name, () => {
      assert.equal(verifyCramMd5(s, challenge, digest), want);
    });
  }

  test("round trip: client HMAC over a fresh challenge verifies", () => {
    for (let i = 0; i < 20; i++) {
      const secret = randomBytes(16).toString("base64url");
      const challenge = makeChallenge("odmr.example.net");
      const clientLine = encodeBase64(
        `cust${i} ${createHmac("md5", secret).update(challenge).digest("hex")}`,
      );
      const parsed = parseCramMd5Response(clientLine);
      assert.ok(parsed.ok);
      assert.equal(parsed.username, `cust${i}`);
      assert.ok(verifyCramMd5(cramMd5Secret(secret), challenge, parsed.digest));
    }
  });
});
