// The ODMR AUTH exchange (src/server/odmr_auth.ts) driven directly: `begin()` and the `next()` of each
// `continue` effect, the way the session loop calls them, over a real store and a real throttle on a
// ManualClock. CRAM-MD5 responses are computed independently with node:crypto.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import { ManualClock } from "../../src/clock.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { memoryPipe } from "../../src/net/memory_connection.ts";
import type { Account } from "../../src/queue/store.ts";
import { RelayState } from "../../src/relay_state.ts";
import { AUTH_LINE_LIMIT, type OdmrAuthDeps, OdmrAuthentication } from "../../src/server/odmr_auth.ts";
import { AuthThrottle, type AuthThrottleOptions } from "../../src/server/sasl/auth_throttle.ts";
import { cramMd5Secret } from "../../src/server/sasl/cram_md5.ts";
import type { MechanismPolicy } from "../../src/server/sasl/mechanisms.ts";
import { generateSecret, hashPassword, makeDummyHash } from "../../src/server/sasl/password.ts";
import type { Effect, HandlerResult } from "../../src/server/session.ts";
import { formatReply } from "../../src/smtp/reply.ts";
import { tempStore } from "../support/store.ts";
import { SqliteQueue } from "../../src/queue/sqlite_queue.ts";

const HOST = "mx.relay.test";
const IP = "192.0.2.7";
const OTHER_IP = "198.51.100.9";
// Cheap scrypt so the file stays fast; the code path is the production one.
const CHEAP = { N: 16, r: 1, p: 1 } as const;
const TLS: MechanismPolicy = { tlsActive: true };

const WRONG = "535 5.7.8 Authentication credentials invalid";
const OK = "235 2.7.0 Authentication successful";

type ContinueEffect = Extract<Effect, { kind: "continue" }>;

interface Harness {
  clock: ManualClock;
  throttle: AuthThrottle;
  state: RelayState;
  /** Delays the exchange waited, and how many sessions had authenticated when each began. */
  slept: { ms: number; authenticatedBefore: number }[];
  /** A new session's AUTH exchange from `ip`, and the accounts it authenticated. */
  session(ip?: string): { auth: OdmrAuthentication; authenticated: Account[] };
}

/** alice (secret alice-secret) and eve (disabled, secret eve-secret), on a fresh store. */
async function setup(options: AuthThrottleOptions = {}): Promise<Harness> {
  const clock = new ManualClock(1_000_000);
  const throttle = new AuthThrottle(clock, options);
  const { store } = tempStore(clock);
  for (const name of ["alice", "eve"]) {
    store.addAccount(name, {
      cramMd5Secret: cramMd5Secret(`${name}-secret`),
      passwordHash: await hashPassword(`${name}-secret`, { params: CHEAP }),
    });
  }
  store.setAccountDisabled("eve", true);
  const state = new RelayState();
  const slept: Harness["slept"] = [];
  let successes = 0;
  const deps: OdmrAuthDeps = {
    config: { hostname: HOST },
    store: new SqliteQueue(store),
    state,
    logger: silentLogger(),
    throttle,
    dummyCramSecret: cramMd5Secret(generateSecret()),
    dummyPasswordHash: await makeDummyHash({ params: CHEAP }),
    // The throttle's delays pass on the test clock instead of in real time.
    sleep: (ms) => {
      slept.push({ ms, authenticatedBefore: successes });
      clock.advance(ms);
      return Promise.resolve();
    },
  };
  return {
    clock,
    throttle,
    state,
    slept,
    session(ip = IP) {
      const [server] = memoryPipe({ clientAddress: ip });
      const authenticated: Account[] = [];
      const auth = new OdmrAuthentication(deps, server, (account) => {
        successes++;
        authenticated.push(account);
      });
      return { auth, authenticated };
    },
  };
}

/** The reply as the wire would carry it, without CRLF. */
function wire(result: HandlerResult): string {
  assert.ok(result.reply, "a reply");
  return formatReply(result.reply, { enhanced: true }).replace(/\r\n$/, "");
}

/** The `continue` effect of a 334 challenge. */
function challenge(result: HandlerResult): ContinueEffect {
  assert.match(wire(result), /^334 /);
  assert.equal(result.effect?.kind, "continue");
  return result.effect as ContinueEffect;
}

/** The base64 text of a 334 challenge. */
const challengeText = (result: HandlerResult): string => result.reply!.lines[0]!;

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

/** RFC 2195: base64("user " + hex(HMAC-MD5(secret, challenge))), from the challenge as sent. */
function cramResponse(challengeB64: string, user: string, secret: string): string {
  const plain = Buffer.from(challengeB64, "base64").toString("latin1");
  const digest = createHmac("md5", secret).update(plain, "latin1").digest("hex");
  return b64(`${user} ${digest}`);
}

/** One whole CRAM-MD5 exchange; the final result. */
async function cram(auth: OdmrAuthentication, user: string, secret: string): Promise<HandlerResult> {
  const first = await auth.begin("CRAM-MD5", TLS);
  return await challenge(first).next(cramResponse(challengeText(first), user, secret));
}

/** PLAIN with an initial response; the result. */
const plain = (auth: OdmrAuthentication, user: string, password: string) =>
  Promise.resolve(auth.begin(`PLAIN ${b64(`\0${user}\0${password}`)}`, TLS));

describe("OdmrAuthentication CRAM-MD5", () => {
  test("the challenge is a fresh msg-id naming the host; its response line may be AUTH-long", async () => {
    const { session } = await setup();
    const { auth } = session();
    const first = await auth.begin("CRAM-MD5", TLS);
    const effect = challenge(first);
    assert.match(
      Buffer.from(challengeText(first), "base64").toString("latin1"),
      /^<\d{16}\.\d+@mx\.relay\.test>$/,
    );
    assert.equal(effect.maxLength, AUTH_LINE_LIMIT);
    assert.equal(wire({ reply: effect.tooLong! }), "500 5.5.6 Error: authentication exchange line too long");
    const second = await auth.begin("CRAM-MD5", TLS);
    assert.notEqual(challengeText(second), challengeText(first));
  });

  test("the right secret authenticates: 235, and the account is handed to the session", async () => {
    const { session, throttle } = await setup();
    const { auth, authenticated } = session();
    assert.equal(wire(await cram(auth, "alice", "alice-secret")), OK);
    assert.deepEqual(authenticated.map((a) => a.username), ["alice"]);
    assert.equal(throttle.ipFailures(IP), 0);
  });

  test("a wrong secret gets 535 5.7.8 and counts as a failure naming the user", async () => {
    const { session, throttle, state } = await setup();
    const { auth, authenticated } = session();
    const result = await cram(auth, "alice", "guess");
    assert.equal(wire(result), WRONG);
    assert.equal(result.effect, undefined);
    assert.deepEqual(authenticated, []);
    assert.equal(throttle.ipFailures(IP), 1);
    assert.equal(throttle.accountIpFailures("alice", IP), 1);
    assert.equal(state.authFailures.get("bad-secret"), 1);
  });

  test("a response computed for one challenge fails on another (no replay)", async () => {
    const { session } = await setup();
    const { auth, authenticated } = session();
    const first = await auth.begin("CRAM-MD5", TLS);
    const second = await auth.begin("CRAM-MD5", TLS);
    const forFirst = cramResponse(challengeText(first), "alice", "alice-secret");
    assert.equal(wire(await challenge(second).next(forFirst)), WRONG);
    assert.deepEqual(authenticated, []);
  });

  test("an initial response is refused with 501 5.7.0: the server speaks first", async () => {
    const { session, throttle } = await setup();
    const result = await session().auth.begin(`CRAM-MD5 ${b64("alice 0123")}`, TLS);
    assert.equal(wire(result), "501 5.7.0 Error: initial response not allowed for this mechanism");
    assert.equal(result.effect, undefined);
    assert.equal(throttle.ipFailures(IP), 0);
  });

  test("a response that is not strict base64 gets 501 5.5.2", async () => {
    const { session } = await setup();
    const first = await session().auth.begin("CRAM-MD5", TLS);
    const next = challenge(first).next;
    assert.equal(wire(await next("not base64!")), "501 5.5.2 Error: invalid base64 data");
    const again = await session().auth.begin("CRAM-MD5", TLS);
    assert.equal(wire(await challenge(again).next("YWxpY2U")), "501 5.5.2 Error: invalid base64 data");
  });

  test("a response that decodes but is not `user digest` gets the same 535 as a wrong secret", async () => {
    const { session, state, throttle } = await setup();
    const first = await session().auth.begin("CRAM-MD5", TLS);
    assert.equal(wire(await challenge(first).next(b64("alice"))), WRONG);
    assert.equal(state.authFailures.get("malformed"), 1);
    assert.equal(throttle.ipFailures(IP), 1);
  });

  test('"*" aborts the exchange with 501 5.7.0 and is not a failed attempt', async () => {
    const { session, throttle } = await setup();
    const first = await session().auth.begin("CRAM-MD5", TLS);
    const result = await challenge(first).next("*");
    assert.equal(wire(result), "501 5.7.0 Authentication aborted");
    assert.equal(result.effect, undefined);
    assert.equal(throttle.ipFailures(IP), 0);
  });
});

describe("OdmrAuthentication PLAIN", () => {
  test("an initial response with the right password authenticates at once", async () => {
    const { session } = await setup();
    const { auth, authenticated } = session();
    const result = await plain(auth, "alice", "alice-secret");
    assert.equal(wire(result), OK);
    assert.equal(result.effect, undefined);
    assert.deepEqual(authenticated.map((a) => a.username), ["alice"]);
  });

  test("an initial response with a wrong password gets 535", async () => {
    const { session, state } = await setup();
    const { auth, authenticated } = session();
    assert.equal(wire(await plain(auth, "alice", "alice-guess")), WRONG);
    assert.deepEqual(authenticated, []);
    assert.equal(state.authFailures.get("bad-secret"), 1);
  });

  test("without an initial response: an empty 334, then the response line", async () => {
    const { session } = await setup();
    const { auth, authenticated } = session();
    const first = await auth.begin("PLAIN", TLS);
    assert.equal(wire(first), "334 ", 'RFC 4954 4: an empty challenge is "334 "');
    assert.equal(wire(await challenge(first).next(b64("\0alice\0alice-secret"))), OK);
    assert.deepEqual(authenticated.map((a) => a.username), ["alice"]);
  });

  test('"=" is an empty initial response: no challenge, and an empty PLAIN message is refused with 535', async () => {
    const { session, state } = await setup();
    const { auth, authenticated } = session();
    const result = await auth.begin("PLAIN =", TLS);
    assert.equal(wire(result), WRONG);
    assert.equal(result.effect, undefined);
    assert.deepEqual(authenticated, []);
    assert.equal(state.authFailures.get("malformed"), 1);
  });

  test("an initial response that is not strict base64 gets 501 5.5.2", async () => {
    const { session, throttle } = await setup();
    const result = await session().auth.begin("PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA", TLS);
    assert.equal(wire(result), "501 5.5.2 Error: invalid base64 data");
    assert.equal(throttle.ipFailures(IP), 0);
  });

  test('"*" aborts the exchange with 501 5.7.0', async () => {
    const { session } = await setup();
    const first = await session().auth.begin("PLAIN", TLS);
    assert.equal(wire(await challenge(first).next("*")), "501 5.7.0 Authentication aborted");
  });

  test("an initial response over the AUTH line limit gets 500 5.5.6; one at the limit is read", async () => {
    const { session } = await setup();
    const { auth } = session();
    // At the limit the line is decoded (and, 12290 being no multiple of 4, refused as base64).
    const atLimit = await auth.begin(`PLAIN ${"A".repeat(AUTH_LINE_LIMIT)}`, TLS);
    assert.equal(wire(atLimit), "501 5.5.2 Error: invalid base64 data");
    const over = await auth.begin(`PLAIN ${"A".repeat(AUTH_LINE_LIMIT + 1)}`, TLS);
    assert.equal(wire(over), "500 5.5.6 Error: authentication exchange line too long");
    assert.equal(over.effect, undefined);
  });

  test("the length limit comes first, even for CRAM-MD5", async () => {
    const { session } = await setup();
    const result = await session().auth.begin(`CRAM-MD5 ${"A".repeat(AUTH_LINE_LIMIT + 1)}`, TLS);
    assert.equal(wire(result), "500 5.5.6 Error: authentication exchange line too long");
  });
});

describe("OdmrAuthentication LOGIN", () => {
  test("two steps: Username:, then Password:, then 235", async () => {
    const { session } = await setup();
    const { auth, authenticated } = session();
    const first = await auth.begin("LOGIN", TLS);
    assert.equal(wire(first), "334 VXNlcm5hbWU6");
    assert.equal(Buffer.from(challengeText(first), "base64").toString(), "Username:");
    const second = await challenge(first).next(b64("alice"));
    assert.equal(wire(second), "334 UGFzc3dvcmQ6");
    assert.equal(Buffer.from(challengeText(second), "base64").toString(), "Password:");
    assert.equal(authenticated.length, 0, "nothing is decided before the password");
    assert.equal(wire(await challenge(second).next(b64("alice-secret"))), OK);
    assert.deepEqual(authenticated.map((a) => a.username), ["alice"]);
  });

  test("a username sent as the initial response: only Password: is asked, then 235", async () => {
    const { session } = await setup();
    const { auth, authenticated } = session();
    const first = await auth.begin(`LOGIN ${b64("alice")}`, TLS);
    assert.equal(wire(first), "334 UGFzc3dvcmQ6");
    assert.equal(wire(await challenge(first).next(b64("alice-secret"))), OK);
    assert.deepEqual(authenticated.map((a) => a.username), ["alice"]);
  });

  test("a wrong password gets 535", async () => {
    const { session, throttle } = await setup();
    const { auth, authenticated } = session();
    const second = await challenge(await auth.begin("LOGIN", TLS)).next(b64("alice"));
    assert.equal(wire(await challenge(second).next(b64("guess"))), WRONG);
    assert.deepEqual(authenticated, []);
    assert.equal(throttle.accountIpFailures("alice", IP), 1);
  });

  test("bad base64 gets 501 5.5.2 at either step", async () => {
    const { session } = await setup();
    const atUser = await challenge(await session().auth.begin("LOGIN", TLS)).next("%%%%");
    assert.equal(wire(atUser), "501 5.5.2 Error: invalid base64 data");
    const second = await challenge(await session().auth.begin("LOGIN", TLS)).next(b64("alice"));
    assert.equal(wire(await challenge(second).next("%%%%")), "501 5.5.2 Error: invalid base64 data");
  });

  test('"*" aborts with 501 5.7.0 at either step', async () => {
    const { session, throttle } = await setup();
    const atUser = await challenge(await session().auth.begin("LOGIN", TLS)).next("*");
    assert.equal(wire(atUser), "501 5.7.0 Authentication aborted");
    const second = await challenge(await session().auth.begin("LOGIN", TLS)).next(b64("alice"));
    assert.equal(wire(await challenge(second).next("*")), "501 5.7.0 Authentication aborted");
    assert.equal(throttle.ipFailures(IP), 0);
  });
});

describe("OdmrAuthentication refusals look alike", () => {
  test("CRAM-MD5: unknown user, disabled account and wrong secret get the same 535", async () => {
    const { session, state } = await setup();
    const unknown = session();
    const disabled = session();
    const wrong = session();
    const replies = [
      wire(await cram(unknown.auth, "nobody", "nobody-secret")),
      wire(await cram(disabled.auth, "eve", "eve-secret")),
      wire(await cram(wrong.auth, "alice", "guess")),
    ];
    assert.deepEqual(replies, [WRONG, WRONG, WRONG]);
    assert.deepEqual([...unknown.authenticated, ...disabled.authenticated, ...wrong.authenticated], []);
    assert.equal(state.authFailures.get("unknown-user"), 1);
    assert.equal(state.authFailures.get("disabled"), 1);
    assert.equal(state.authFailures.get("bad-secret"), 1);
  });

  test("PLAIN: unknown user, disabled account and wrong password get the same 535", async () => {
    const { session, state } = await setup();
    const a = session();
    const b = session();
    const c = session();
    const replies = [
      wire(await plain(a.auth, "nobody", "nobody-secret")),
      wire(await plain(b.auth, "eve", "eve-secret")),
      wire(await plain(c.auth, "alice", "guess")),
    ];
    assert.deepEqual(replies, [WRONG, WRONG, WRONG]);
    assert.deepEqual([...a.authenticated, ...b.authenticated, ...c.authenticated], []);
    assert.equal(state.authFailures.get("unknown-user"), 1);
    assert.equal(state.authFailures.get("disabled"), 1);
  });

  test("a name that matches no account counts against that name like a real one", async () => {
    const { session, throttle } = await setup();
    await cram(session().auth, "nobody", "x");
    assert.equal(throttle.accountFailures("nobody"), 1);
    assert.equal(throttle.accountIpFailures("nobody", IP), 1);
  });

  test("an unknown or disabled mechanism, and PLAIN without TLS, get 504 5.5.4", async () => {
    const { session } = await setup();
    const { auth } = session();
    assert.match(wire(await auth.begin("DIGEST-MD5", TLS)), /^504 5\.5\.4 /);
    assert.match(
      wire(await auth.begin("CRAM-MD5", { tlsActive: true, cramMd5Enabled: false })),
      /^504 5\.5\.4 /,
    );
    assert.match(
      wire(await auth.begin(`PLAIN ${b64("\0alice\0alice-secret")}`, { tlsActive: false })),
      /^504 5\.5\.4 /,
    );
  });
});

describe("OdmrAuthentication throttling", () => {
  test("the third failure in a session gets 421 4.7.0 and a close effect", async () => {
    const { session } = await setup();
    const { auth } = session();
    assert.equal(wire(await cram(auth, "alice", "guess-1")), WRONG);
    assert.equal(wire(await plain(auth, "nobody", "guess-2")), WRONG);
    const third = await cram(auth, "alice", "guess-3");
    assert.equal(wire(third), "421 4.7.0 mx.relay.test Error: too many errors");
    assert.deepEqual(third.effect, { kind: "close" });
  });

  test("the failure count is per session: a new session starts with 535 again", async () => {
    const { session } = await setup();
    const first = session();
    for (let i = 0; i < 2; i++) await cram(first.auth, "alice", `guess-${i}`);
    const second = session();
    assert.equal(wire(await cram(second.auth, "alice", "guess-3")), WRONG);
  });

  test("after a failure, the next response waits the earned delay before it is verified, right or wrong", async () => {
    const right = await setup();
    await cram(right.session().auth, "alice", "guess");
    assert.deepEqual(right.slept, [], "the first attempt did not wait");
    const { auth, authenticated } = right.session();
    assert.equal(wire(await cram(auth, "alice", "alice-secret")), OK);
    assert.deepEqual(right.slept, [{ ms: 1000, authenticatedBefore: 0 }], "waited, then verified");
    assert.equal(authenticated.length, 1);

    const wrong = await setup();
    await cram(wrong.session().auth, "alice", "guess");
    assert.equal(wire(await cram(wrong.session().auth, "alice", "guess-2")), WRONG);
    assert.deepEqual(wrong.slept.map((s) => s.ms), [1000]);
  });

  test("a success forgets that name's failures from that address", async () => {
    const { session, throttle } = await setup();
    await cram(session().auth, "alice", "guess");
    assert.equal(throttle.accountIpFailures("alice", IP), 1);
    assert.equal(wire(await cram(session().auth, "alice", "alice-secret")), OK);
    assert.equal(throttle.accountIpFailures("alice", IP), 0);
    assert.equal(throttle.ipFailures(IP), 0);
  });

  test("a locked (name, address) pair gets 535 even for the right secret; another address does not", async () => {
    const { session, state } = await setup({ maxFailuresPerAccountIp: 2 });
    const guesser = session();
    await cram(guesser.auth, "alice", "guess-1");
    await cram(guesser.auth, "alice", "guess-2");
    const locked = session();
    assert.equal(wire(await cram(locked.auth, "alice", "alice-secret")), WRONG);
    assert.deepEqual(locked.authenticated, []);
    assert.equal(state.authFailures.get("locked"), 1);
    const owner = session(OTHER_IP);
    assert.equal(wire(await cram(owner.auth, "alice", "alice-secret")), OK);
    assert.deepEqual(owner.authenticated.map((a) => a.username), ["alice"]);
  });

  test("a blocked address gets 454 4.7.0 at AUTH, and again for a challenge fetched before the block", async () => {
    const { session, state } = await setup({ maxFailuresPerIp: 2 });
    const early = session();
    const pending = await early.auth.begin("CRAM-MD5", TLS);
    const guesser = session();
    await cram(guesser.auth, "nobody", "guess-1");
    await cram(guesser.auth, "nobody", "guess-2");
    const blocked = await session().auth.begin("CRAM-MD5", TLS);
    assert.equal(wire(blocked), "454 4.7.0 Temporary authentication failure");
    assert.equal(blocked.effect, undefined);
    const late = await challenge(pending).next(cramResponse(challengeText(pending), "alice", "alice-secret"));
    assert.equal(wire(late), "454 4.7.0 Temporary authentication failure");
    assert.deepEqual(early.authenticated, []);
    assert.equal(state.authFailures.get("ip-blocked"), 2);
    assert.match(wire(await session(OTHER_IP).auth.begin("CRAM-MD5", TLS)), /^334 /);
  });

  test("the block lifts when the failures leave the window", async () => {
    const { session, clock } = await setup({ maxFailuresPerIp: 2, windowMs: 60_000 });
    const guesser = session();
    await cram(guesser.auth, "nobody", "guess-1");
    await cram(guesser.auth, "nobody", "guess-2");
    assert.match(wire(await session().auth.begin("CRAM-MD5", TLS)), /^454 /);
    clock.advance(60_000);
    assert.equal(wire(await cram(session().auth, "alice", "alice-secret")), OK);
  });
});
