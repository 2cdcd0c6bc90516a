// The message count of a bridged session: replies to end-of-data (RFC 5321 4.1.1.4) and to BDAT LAST
// (RFC 3030), followed through pipelining, content that looks like commands, and chunks cut anywhere.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_TALLY_LINE, SessionTally } from "../../src/customer/session_tally.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

/** A session as the bridge sees it: what each side sends, in the order it is sent. */
type Step = { provider: string } | { local: string };

/** Plays `steps` into a tally, each side's text cut into pieces of `size` octets. */
function play(steps: Step[], size = Infinity): SessionTally {
  const tally = new SessionTally();
  for (const step of steps) {
    const [text, feed] = "provider" in step
      ? [step.provider, (c: Uint8Array) => tally.fromProvider(c)]
      : [step.local, (c: Uint8Array) => tally.fromLocal(c)];
    const all = bytes(text);
    for (let i = 0; i < all.length; i += size) feed(all.slice(i, Math.min(all.length, i + size)));
  }
  return tally;
}

const message = (body: string) => [
  { provider: "MAIL FROM:<a@x.test>\r\n" },
  { local: "250 2.1.0 Ok\r\n" },
  { provider: "RCPT TO:<b@y.test>\r\n" },
  { local: "250 2.1.5 Ok\r\n" },
  { provider: "DATA\r\n" },
  { local: "354 go ahead\r\n" },
  { provider: body + ".\r\n" },
];

const greeting: Step[] = [
  { local: "220-local.test ESMTP\r\n220 ready\r\n" },
  { provider: "EHLO relay.test\r\n" },
  { local: "250-local.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n" },
];

const tricky = [
  "Subject: looks like commands\r\n\r\nMAIL FROM:<evil@x.test>\r\nDATA\r\n",
  "..\r\n", // a dot-stuffed line holding one dot, not the end
  "\r\n.. still content\r\n",
  "BDAT 100 LAST\r\n",
  ". \r\n", // a dot and a space: content
].join("");

const cases: { name: string; steps: Step[]; accepted: number; refused: number }[] = [
  {
    name: "three messages one after another, the second refused",
    steps: [
      ...greeting,
      ...message("a\r\n"),
      { local: "250 2.0.0 queued\r\n" },
      ...message(tricky),
      { local: "552 5.3.4 too big\r\n" },
      ...message(""),
      { local: "250 2.0.0 queued\r\n" },
      { provider: "QUIT\r\n" },
      { local: "221 bye\r\n" },
    ],
    accepted: 2,
    refused: 1,
  },
  {
    name: "pipelined (RFC 2920): MAIL, RCPT, DATA in one batch, the next MAIL right after the dot",
    steps: [
      ...greeting,
      { provider: "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n" },
      { local: "250 Ok\r\n550 no such user\r\n250 Ok\r\n354 go\r\n" },
      { provider: "Subject: 1\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n" },
      { local: "250 queued\r\n250 Ok\r\n250 Ok\r\n354 go\r\n" },
      { provider: "Subject: 2\r\n\r\nbody\r\n.\r\nQUIT\r\n" },
      { local: "250 queued\r\n221 bye\r\n" },
    ],
    accepted: 2,
    refused: 0,
  },
  {
    name: "DATA refused (no valid recipients): the next lines are commands, not content",
    steps: [
      ...greeting,
      { provider: "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n" },
      { local: "250 Ok\r\n550 no\r\n554 5.5.1 no valid recipients\r\n" },
      ...message("x\r\n"),
      { local: "250 queued\r\n" },
    ],
    accepted: 1,
    refused: 0,
  },
  {
    name: "CHUNKING (RFC 3030): only BDAT LAST's reply counts, chunk bytes are skipped",
    steps: [
      ...greeting,
      { provider: "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n" },
      { local: "250 Ok\r\n250 Ok\r\n" },
      { provider: "BDAT 21\r\nMAIL FROM:<no@x.test>" },
      { local: "250 21 octets\r\n" },
      { provider: "BDAT 7 LAST\r\n\r\n.\r\nab" },
      { local: "250 queued\r\n" },
      { provider: "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 0 LAST\r\n" },
      { local: "250 Ok\r\n250 Ok\r\n450 try later\r\n" },
    ],
    accepted: 1,
    refused: 1,
  },
];

describe("SessionTally", () => {
  for (const c of cases) {
    it(`${c.name}: whole chunks and chunks cut at every size from 1 to 7 octets`, () => {
      for (const size of [Infinity, 1, 2, 3, 4, 5, 6, 7]) {
        const tally = play(c.steps, size);
        assert.deepEqual(
          [tally.accepted, tally.refused, tally.counted],
          [c.accepted, c.refused, true],
          `size ${size}`,
        );
      }
    });
  }

  it("a terminator split across chunks at every position is found once", () => {
    const body = "line one\r\n..dot\r\nline three\r\n.\r\n";
    for (let cut = 0; cut <= body.length; cut++) {
      const tally = play([
        ...greeting,
        ...message("").slice(0, 6),
        { provider: body.slice(0, cut) },
        { provider: body.slice(cut) },
        { local: "250 queued\r\n" },
      ]);
      assert.equal(tally.accepted, 1, `cut at ${cut}`);
    }
  });

  it("random content of CR, LF, dots and letters, cut at random: the end is found exactly where it is", () => {
    let seed = 12345;
    const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let round = 0; round < 300; round++) {
      let content = "";
      for (let i = random(200); i > 0; i--) content += "\r\n.a"[random(4)];
      if (!content.endsWith("\r\n")) content += "\r\n";
      // The first terminator decides; make sure the content holds none before the one we add.
      if (("\r\n" + content).includes("\r\n.\r\n")) continue;
      const tally = new SessionTally();
      for (const step of [...greeting, ...message("").slice(0, 6)]) {
        if ("provider" in step) tally.fromProvider(bytes(step.provider));
        else tally.fromLocal(bytes(step.local));
      }
      const stream = bytes(content + ".\r\nMAIL FROM:<a@x.test>\r\n");
      for (let i = 0; i < stream.length;) {
        const n = 1 + random(9);
        tally.fromProvider(stream.slice(i, i + n));
        i += n;
      }
      tally.fromLocal(bytes("250 queued\r\n250 Ok\r\n"));
      assert.deepEqual([tally.accepted, tally.refused], [1, 0], JSON.stringify(content));
    }
  });

  it("an over-long line stops the count and says so, without throwing", () => {
    const tally = play([...greeting, { provider: `MAIL FROM:<${"a".repeat(MAX_TALLY_LINE)}@x.test>\r\n` }]);
    assert.equal(tally.counted, false);
    assert.match(tally.lostTrack!, /longer than/);
  });
});
