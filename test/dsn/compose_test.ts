// Golden files: test/dsn/golden/<case>.eml. After an intended change, rewrite them with
//   UPDATE_GOLDEN=1 TEST_RUNTIMES=deno npm test -- test/dsn
// and review the diff. Every case is also parsed back by Python's email package (parse_dsn.py).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { composeDsn, type DsnInput } from "../../src/dsn/compose.ts";
import { formatRfc5322Date } from "../../src/smtp/rfc5322_date.ts";
import {
  assertGolden,
  assertWireFormat,
  type Field,
  field,
  fromBase64,
  type ParsedDsn,
  type ParsedPart,
  parseWithPython,
} from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const HEADER = "Received: from client.sender.example (client.sender.example [192.0.2.10])\r\n" +
  "\tby mx.relay.example.net (odmr-relay) with ESMTPS id 42; Tue, 3 Jun 2025 10:15:02 +0000\r\n" +
  "From: Alice Example <alice@sender.example>\r\n" +
  "To: Bob <bob@customer.example>, Carol <carol@customer.example>\r\n" +
  "Subject: Quarterly report\r\n" +
  "Date: Tue, 3 Jun 2025 12:14:58 +0200\r\n" +
  "Message-ID: <q3-report@sender.example>\r\n" +
  "MIME-Version: 1.0\r\n" +
  "Content-Type: text/plain; charset=us-ascii\r\n";
const BODY = "Hello Bob, hello Carol,\r\n\r\nthe figures are attached.\r\n\r\nAlice\r\n";
const ORIGINAL = encoder.encode(`${HEADER}\r\n${BODY}`);

const ARRIVAL = new Date("2025-06-03T10:15:02Z");
const ARRIVAL_TEXT = "Tue, 3 Jun 2025 10:15:02 +0000";
const EXPIRY = new Date("2025-06-08T10:15:02Z");
const EXPIRY_TEXT = "Sun, 8 Jun 2025 10:15:02 +0000";
const ATTEMPT = new Date("2025-06-04T08:01:44Z");
const ATTEMPT_TEXT = "Wed, 4 Jun 2025 08:01:44 +0000";
const REPORTING = ["Reporting-MTA", "dns; relay.example.net"] satisfies Field;
const ARRIVAL_FIELD = ["Arrival-Date", ARRIVAL_TEXT] satisfies Field;

/** Cuts `data` at the given offsets. */
function chunks(data: Uint8Array, offsets: number[]): Uint8Array[] {
  return [0, ...offsets].map((start, i) => data.subarray(start, offsets[i] ?? data.length));
}

/** What part 3 must hold. */
type Returned =
  | { type: "text/rfc822-headers" | "message/global-headers"; cte: string; bytes: Uint8Array }
  | { type: "message/rfc822" | "message/global"; cte: string; subject: string; body: string };

interface Case {
  name: string;
  input: Omit<DsnInput, "reportingMta" | "content" | "date" | "messageId"> & {
    content?: Uint8Array[];
    date?: Date;
  };
  subject: string;
  global?: boolean;
  smtputf8?: boolean;
  eightBit?: boolean;
  charset?: string;
  boundary?: string;
  perMessage: Field[];
  perRecipient: Field[][];
  returned: Returned;
  /** Phrases part 1 must contain (white space normalised). */
  text: string[];
  /** Phrases part 1 must not contain. */
  notText?: string[];
}

const cases: Case[] = [
  {
    name: "rejected_multiline",
    input: {
      message: {
        sender: "alice@sender.example",
        arrivalDate: ARRIVAL,
        envid: "Q3+2Breport+3D1",
        queueId: 42,
      },
      // Carol was delivered in the same session: only Bob is reported.
      recipients: [{
        cause: "customer-rejected",
        address: "bob@customer.example",
        orcpt: "rfc822;Bob@Customer.example",
        reply: {
          code: 550,
          enhanced: "5.1.1",
          lines: [
            "<bob@customer.example>: Recipient address rejected:",
            "User unknown in local recipient table",
          ],
        },
        remoteMta: "mail.customer.example",
        lastAttempt: ATTEMPT,
      }],
    },
    subject: "Undelivered mail returned to sender",
    // RFC 3461 4.4: ENVID decoded from xtext ("+2B" is "+", "+3D" is "=").
    perMessage: [["Original-Envelope-Id", "Q3+report=1"], REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Original-Recipient", "rfc822; Bob@Customer.example"],
      ["Final-Recipient", "rfc822; bob@customer.example"],
      ["Action", "failed"],
      ["Status", "5.1.1"],
      ["Remote-MTA", "dns; mail.customer.example"],
      [
        "Diagnostic-Code",
        "smtp; 550-5.1.1 <bob@customer.example>: Recipient address rejected: " +
        "550 5.1.1 User unknown in local recipient table",
      ],
      ["Last-Attempt-Date", ATTEMPT_TEXT],
    ]],
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "could not be delivered to the recipients below",
      "<bob@customer.example>",
      "The recipient's mail server (mail.customer.example) refused the message and replied:",
      "550-5.1.1 <bob@customer.example>: Recipient address rejected:\r\n",
      "550 5.1.1 User unknown in local recipient table\r\n",
      "The header section of your message is attached.",
      "quote this reference: 42.",
    ],
    notText: ["carol@"],
  },
  {
    name: "expired",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL, ret: "HDRS" },
      recipients: [{
        cause: "expired",
        address: "carol@customer.example",
        lastCollected: new Date("2025-06-01T07:00:00Z"),
      }],
    },
    subject: "Undelivered mail returned to sender",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    // RFC 3463 2: 4.x.x with Action failed, "sending in the future may be successful".
    perRecipient: [[["Final-Recipient", "rfc822; carol@customer.example"], ["Action", "failed"], [
      "Status",
      "4.4.7",
    ]]],
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "relay.example.net is an on-demand mail relay: it holds mail for customer.example until that " +
      "domain's own mail server connects and collects it.",
      "kept your message for 5 days, but that server did not collect it in time.",
      "It last collected mail on Sun, 1 Jun 2025 07:00:00 +0000.",
    ],
  },
  {
    name: "operator_bounce",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL },
      recipients: ["bob", "carol"].map((name) => ({
        cause: "operator-bounce" as const,
        address: `${name}@customer.example`,
        reason: "Returned at the customer's request",
      })),
    },
    subject: "Undelivered mail returned to sender",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: ["bob", "carol"].map((name) => [
      ["Final-Recipient", `rfc822; ${name}@customer.example`],
      ["Action", "failed"],
      ["Status", "5.0.0"],
      ["Diagnostic-Code", "X-ODMR-Relay; Returned by the relay operator: Returned at the customer's request"],
    ]),
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "An administrator of the relay relay.example.net returned your message without delivering it.",
      "Reason given: Returned at the customer's request",
      "<bob@customer.example>",
      "<carol@customer.example>",
    ],
  },
  {
    name: "delayed",
    input: {
      date: new Date("2025-06-04T10:15:02Z"),
      // RET=FULL applies to failure reports only (RFC 3461 4.3): a warning returns headers.
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL, ret: "FULL" },
      recipients: [
        { cause: "delayed", address: "bob@customer.example", willRetryUntil: EXPIRY, lastCollected: null },
        {
          cause: "delayed",
          address: "carol@customer.example",
          willRetryUntil: EXPIRY,
          lastCollected: new Date("2025-06-02T09:00:00Z"),
          lastReply: { code: 452, enhanced: "4.2.2", lines: ["Mailbox full"] },
          remoteMta: "mail.customer.example",
          lastAttempt: new Date("2025-06-02T09:00:05Z"),
        },
      ],
    },
    subject: "Delayed mail (still being retried)",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [
      [
        ["Final-Recipient", "rfc822; bob@customer.example"],
        ["Action", "delayed"],
        ["Status", "4.4.1"],
        ["Will-Retry-Until", EXPIRY_TEXT],
      ],
      [
        ["Final-Recipient", "rfc822; carol@customer.example"],
        ["Action", "delayed"],
        ["Status", "4.2.2"],
        ["Remote-MTA", "dns; mail.customer.example"],
        ["Diagnostic-Code", "smtp; 452 4.2.2 Mailbox full"],
        ["Last-Attempt-Date", "Mon, 2 Jun 2025 09:00:05 +0000"],
        ["Will-Retry-Until", EXPIRY_TEXT],
      ],
    ],
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "This is only a warning: you do not need to send it again",
      "is an on-demand mail relay: it holds mail for customer.example until that domain's own mail " +
      "server connects and collects it.",
      "That server has not collected any mail from the relay yet.",
      "That server has not collected mail since Mon, 2 Jun 2025 09:00:00 +0000.",
      `The relay will keep trying until ${EXPIRY_TEXT}; if the message is not collected by then, it ` +
      "will be returned to you.",
      "452 4.2.2 Mailbox full",
    ],
  },
  {
    name: "relayed",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL },
      recipients: [{
        cause: "relayed",
        address: "bob@customer.example",
        reply: { code: 250, enhanced: "2.0.0", lines: ["Ok: queued as 4bXyz"] },
        remoteMta: "mail.customer.example",
        lastAttempt: ATTEMPT,
      }],
    },
    subject: "Mail handed to the recipient's server",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Final-Recipient", "rfc822; bob@customer.example"],
      ["Action", "relayed"],
      ["Status", "2.0.0"],
      ["Remote-MTA", "dns; mail.customer.example"],
      ["Diagnostic-Code", "smtp; 250 2.0.0 Ok: queued as 4bXyz"],
      ["Last-Attempt-Date", ATTEMPT_TEXT],
    ]],
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "It has been handed to the mail server of the recipients below.",
      "you will get no further notice about this message from the relay.",
      "Handed to the recipient's mail server (mail.customer.example).",
    ],
  },
  {
    name: "local_refusal",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL },
      content: [encoder.encode(`${HEADER}\r\nGr\u00fc\u00dfe aus K\u00f6ln\r\n`)],
      recipients: [{
        cause: "local-refusal",
        address: "carol@customer.example",
        text: "5.6.3 Message has 8-bit content and the customer lacks 8BITMIME",
        lastAttempt: ATTEMPT,
      }],
    },
    subject: "Undelivered mail returned to sender",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Final-Recipient", "rfc822; carol@customer.example"],
      ["Action", "failed"],
      ["Status", "5.6.3"],
      ["Diagnostic-Code", "X-ODMR-Relay; 5.6.3 Message has 8-bit content and the customer lacks 8BITMIME"],
      ["Last-Attempt-Date", ATTEMPT_TEXT],
    ]],
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "The relay could not pass the message on to the recipient's mail server.",
      "The message contains 8-bit data, and the recipient's mail server cannot accept that (it does not " +
      "support 8BITMIME).",
    ],
  },
  {
    name: "full_chunked",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL, ret: "FULL" },
      // Cuts inside a field, between the CR and LF of the empty line, and just after it.
      content: chunks(ORIGINAL, [7, HEADER.length + 1, HEADER.length + 2, HEADER.length + 20]),
      recipients: [{
        cause: "customer-rejected",
        address: "bob@customer.example",
        // No enhanced code: the class alone (RFC 3463 3.1).
        reply: { code: 554, lines: ["Transaction failed"] },
        remoteMta: "[192.0.2.77]",
      }],
    },
    subject: "Undelivered mail returned to sender",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Final-Recipient", "rfc822; bob@customer.example"],
      ["Action", "failed"],
      ["Status", "5.0.0"],
      ["Remote-MTA", "dns; [192.0.2.77]"],
      ["Diagnostic-Code", "smtp; 554 Transaction failed"],
    ]],
    returned: { type: "message/rfc822", cte: "7bit", subject: "Quarterly report", body: BODY },
    text: ["Your message is attached.", "554 Transaction failed"],
  },
  {
    name: "full_too_large",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL, ret: "full" },
      content: chunks(ORIGINAL, [100, 200]),
      maxFullBytes: 100,
      recipients: [{ cause: "operator-bounce", address: "bob@customer.example" }],
    },
    subject: "Undelivered mail returned to sender",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Final-Recipient", "rfc822; bob@customer.example"],
      ["Action", "failed"],
      ["Status", "5.0.0"],
      ["Diagnostic-Code", "X-ODMR-Relay; Returned by the relay operator"],
    ]],
    returned: { type: "text/rfc822-headers", cte: "7bit", bytes: encoder.encode(HEADER) },
    text: [
      "You asked for your whole message to be returned, but it is larger than 100 bytes; only its " +
      "header section is attached.",
    ],
    notText: ["Reason given"],
  },
  {
    name: "utf8",
    input: {
      message: { sender: "j\u00fcrgen@sender.example", arrivalDate: ARRIVAL, smtputf8: true },
      content: [encoder.encode(
        "From: J\u00fcrgen <j\u00fcrgen@sender.example>\r\nTo: \u7528\u6237@customer.example\r\n" +
          "Subject: Gr\u00fc\u00dfe\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
          "Content-Transfer-Encoding: 8bit\r\n\r\nHallo!\r\n",
      )],
      recipients: [{
        cause: "customer-rejected",
        address: "\u7528\u6237@customer.example",
        // RFC 6533 3: a utf-8 ORCPT keeps its \x{HHHH} escapes in the queue.
        orcpt: "utf-8;\\x{7528}\\x{6237}@customer.example",
        reply: { code: 550, enhanced: "5.1.1", lines: ["User unknown: \u7528\u6237"] },
        remoteMta: "mail.customer.example",
      }],
    },
    subject: "Undelivered mail returned to sender",
    global: true,
    smtputf8: true,
    eightBit: true,
    charset: "utf-8",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Original-Recipient", "utf-8; \u7528\u6237@customer.example"],
      ["Final-Recipient", "utf-8; \u7528\u6237@customer.example"],
      ["Action", "failed"],
      ["Status", "5.1.1"],
      ["Remote-MTA", "dns; mail.customer.example"],
      ["Diagnostic-Code", "smtp; 550 5.1.1 User unknown: \u7528\u6237"],
    ]],
    returned: {
      type: "message/global-headers",
      cte: "8bit",
      bytes: encoder.encode(
        "From: J\u00fcrgen <j\u00fcrgen@sender.example>\r\nTo: \u7528\u6237@customer.example\r\n" +
          "Subject: Gr\u00fc\u00dfe\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
          "Content-Transfer-Encoding: 8bit\r\n",
      ),
    },
    text: ["<\u7528\u6237@customer.example>", "550 5.1.1 User unknown: \u7528\u6237"],
  },
  {
    name: "full_utf8",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL, ret: "FULL", smtputf8: true },
      content: [encoder.encode(
        "From: Alice <alice@sender.example>\r\nTo: J\u00fcrgen <j\u00fcrgen@customer.example>\r\n" +
          "Subject: Gr\u00fc\u00dfe\r\n\r\nHallo J\u00fcrgen!\r\n",
      )],
      recipients: [{ cause: "expired", address: "j\u00fcrgen@customer.example", lastCollected: null }],
    },
    subject: "Undelivered mail returned to sender",
    // The sender's address is ASCII: no SMTPUTF8 needed, 8BITMIME carries the UTF-8 parts.
    global: true,
    eightBit: true,
    charset: "utf-8",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [[
      ["Final-Recipient", "utf-8; j\u00fcrgen@customer.example"],
      ["Action", "failed"],
      ["Status", "4.4.7"],
    ]],
    // RFC 6532 3.7: an SMTPUTF8 message is returned as message/global.
    returned: {
      type: "message/global",
      cte: "8bit",
      subject: "Gr\u00fc\u00dfe",
      body: "Hallo J\u00fcrgen!\r\n",
    },
    text: [
      "<j\u00fcrgen@customer.example>",
      "It has never collected mail from the relay.",
      "Your message is attached.",
    ],
  },
  {
    name: "hostile",
    input: {
      message: { sender: "alice@sender.example", arrivalDate: ARRIVAL },
      content: [encoder.encode(
        "Subject: trap\r\n--=_dsn_hostile-1.relay.example.net\r\nContent-Type: text/html\r\n" +
          "--=_dsn_hostile-1.relay.example.net_1--\r\n" +
          `X-Long: ${"x".repeat(1500)}\r\nX-Bare: one\ntwo\r\n\r\nbody\r\n`,
      )],
      recipients: [
        {
          cause: "customer-rejected",
          address: "bob@customer.example",
          reply: {
            code: 550,
            enhanced: "5.7.1",
            lines: [
              "Rejected\r\nContent-Type: text/html",
              "--=_dsn_hostile-1.relay.example.net--",
              "\u0000evil",
            ],
          },
          // Not a valid host name: no Remote-MTA field rather than a broken one.
          remoteMta: "mail.customer.example\r\nX-Injected: 1",
        },
        {
          cause: "operator-bounce",
          address: "carol@customer.example",
          reason: "spam\r\n\r\n--=_dsn_hostile-1.relay.example.net_1--\r\nX: y",
        },
      ],
    },
    subject: "Undelivered mail returned to sender",
    // The derived boundary and its first variant occur in the content.
    boundary: "=_dsn_hostile-1.relay.example.net_2",
    perMessage: [REPORTING, ARRIVAL_FIELD],
    perRecipient: [
      [
        ["Final-Recipient", "rfc822; bob@customer.example"],
        ["Action", "failed"],
        ["Status", "5.7.1"],
        [
          "Diagnostic-Code",
          "smtp; 550-5.7.1 Rejected??Content-Type: text/html 550-5.7.1 " +
          "--=_dsn_hostile-1.relay.example.net-- 550 5.7.1 ?evil",
        ],
      ],
      [
        ["Final-Recipient", "rfc822; carol@customer.example"],
        ["Action", "failed"],
        ["Status", "5.0.0"],
        [
          "Diagnostic-Code",
          "X-ODMR-Relay; Returned by the relay operator: " +
          "spam????--=_dsn_hostile-1.relay.example.net_1--??X: y",
        ],
      ],
    ],
    // A 1500-octet line and a bare LF cannot go as 7bit: quoted-printable keeps them intact.
    returned: {
      type: "text/rfc822-headers",
      cte: "quoted-printable",
      bytes: encoder.encode(
        "Subject: trap\r\n--=_dsn_hostile-1.relay.example.net\r\nContent-Type: text/html\r\n" +
          "--=_dsn_hostile-1.relay.example.net_1--\r\n" +
          `X-Long: ${"x".repeat(1500)}\r\nX-Bare: one\ntwo\r\n`,
      ),
    },
    text: ["550-5.7.1 Rejected??Content-Type: text/html\r\n", "Reason given: spam????--=_dsn"],
    notText: ["X-Injected"],
  },
];

function compose(c: Case): ReturnType<typeof composeDsn> {
  const { content, date, ...rest } = c.input;
  return composeDsn({
    reportingMta: "relay.example.net",
    messageId: `${c.name.replace(/_/g, "-")}-1`,
    date: date ?? new Date("2025-06-08T10:15:02Z"),
    utcOffsetMinutes: 0,
    content: content ?? [ORIGINAL],
    ...rest,
  });
}

function partText(part: ParsedPart): string {
  return decoder.decode(fromBase64(part.payload_b64));
}

describe("composeDsn", () => {
  for (const c of cases) {
    describe(c.name, () => {
      // Composed and parsed on first use, so a failure is reported by the tests, not while collecting them.
      let result: { dsn: ReturnType<typeof composeDsn>; parsed: ParsedDsn } | undefined;
      const get = () =>
        result ??= (() => {
          const dsn = compose(c);
          return { dsn, parsed: parseWithPython(dsn.bytes) };
        })();

      test("matches its golden file", () => assertGolden(c.name, get().dsn.bytes));

      test("CRLF only, lines of at most 998 octets", () => assertWireFormat(get().dsn.bytes));

      test("the result describes how to send it", () => {
        const { dsn } = get();
        assert.equal(dsn.rcptTo, c.input.message.sender);
        assert.equal(dsn.smtputf8, c.smtputf8 ?? false);
        assert.equal(dsn.eightBit, c.eightBit ?? false);
        assert.equal(dsn.global, c.global ?? false);
        assert.equal(dsn.subject, c.subject);
        assert.equal(dsn.messageId, `<${c.name.replace(/_/g, "-")}-1@relay.example.net>`);
      });

      test("top-level header fields", () => {
        const { dsn, parsed } = get();
        assert.deepEqual(parsed.defects, []);
        assert.deepEqual(parsed.headers.map(([name]) => name), [
          "From",
          "To",
          "Subject",
          "Date",
          "Message-ID",
          "Auto-Submitted",
          "MIME-Version",
          "Content-Type",
        ]);
        assert.equal(field(parsed.headers, "From"), "Mail Delivery System <MAILER-DAEMON@relay.example.net>");
        assert.equal(field(parsed.headers, "To"), `<${c.input.message.sender}>`);
        // The email package's address parser reads the same sender.
        assert.equal(field(parsed.interpreted, "To"), c.input.message.sender);
        assert.equal(field(parsed.headers, "Subject"), c.subject);
        assert.equal(
          field(parsed.headers, "Date"),
          formatRfc5322Date(c.input.date ?? new Date("2025-06-08T10:15:02Z"), { utcOffsetMinutes: 0 }),
        );
        assert.equal(field(parsed.headers, "Message-ID"), dsn.messageId);
        assert.equal(field(parsed.headers, "Auto-Submitted"), "auto-replied");
        assert.equal(field(parsed.headers, "MIME-Version"), "1.0");
      });

      test("multipart/report with report-type and boundary (RFC 6522 3)", () => {
        const { dsn, parsed } = get();
        assert.equal(parsed.content_type, "multipart/report");
        assert.equal(parsed.params["report-type"], c.global ? "global-delivery-status" : "delivery-status");
        assert.equal(parsed.boundary, dsn.boundary);
        if (c.boundary !== undefined) assert.equal(dsn.boundary, c.boundary);
        assert.deepEqual(parsed.parts.map((p) => p.content_type), [
          "text/plain",
          c.global ? "message/global-delivery-status" : "message/delivery-status",
          c.returned.type,
        ]);
      });

      test("part 1: the explanation", () => {
        const { parsed } = get();
        const part = parsed.parts[0] as ParsedPart;
        assert.equal(part.params.charset, c.charset ?? "us-ascii");
        assert.equal(part.cte, c.charset === "utf-8" ? "8bit" : "7bit");
        const text = partText(part);
        const flat = text.replace(/\s+/g, " ");
        for (const phrase of c.text) {
          const found = phrase.includes("\r\n") ? text.includes(phrase) : flat.includes(phrase);
          assert.ok(found, `part 1 lacks ${JSON.stringify(phrase)}:\n${text}`);
        }
        for (const phrase of c.notText ?? []) assert.ok(!text.includes(phrase), `part 1 has ${phrase}`);
      });

      test("part 2: every per-message and per-recipient field", () => {
        const { parsed } = get();
        const part = parsed.parts[1] as ParsedPart;
        assert.equal(part.cte, c.global ? "8bit" : "7bit");
        const [perMessage, ...perRecipient] = part.blocks ?? [];
        assert.deepEqual(perMessage, c.perMessage);
        assert.deepEqual(perRecipient, c.perRecipient);
      });

      test("part 3: the returned content", () => {
        const { parsed } = get();
        const part = parsed.parts[2] as ParsedPart;
        const expected = c.returned;
        assert.equal(part.cte, expected.cte);
        if ("bytes" in expected) {
          if (expected.type === "message/global-headers") {
            const fields = decoder.decode(expected.bytes).replace(/\r\n$/, "").split("\r\n")
              .map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]);
            assert.deepEqual(part.inner_headers, fields);
          } else {
            assert.deepEqual(fromBase64(part.payload_b64), expected.bytes);
          }
        } else {
          assert.equal(field(part.inner_headers ?? [], "Subject"), expected.subject);
          assert.equal(decoder.decode(fromBase64(part.inner_body_b64)), expected.body);
        }
      });
    });
  }
});

describe("composeDsn refuses", () => {
  const base: DsnInput = {
    reportingMta: "relay.example.net",
    messageId: "x-1",
    date: EXPIRY,
    message: { sender: "alice@sender.example", arrivalDate: ARRIVAL },
    recipients: [{ cause: "operator-bounce", address: "bob@customer.example" }],
    content: [ORIGINAL],
  };
  const bad: [string, Partial<DsnInput>][] = [
    ["the null sender (no DSN about a DSN)", { message: { sender: "", arrivalDate: ARRIVAL } }],
    ["no recipients", { recipients: [] }],
    ["a Message-ID with angle brackets", { messageId: "<x@y>" }],
    ["a Message-ID with a space", { messageId: "x y" }],
    ["an invalid boundary", { boundary: "a\r\nb" }],
  ];
  for (const [name, change] of bad) {
    test(name, () => assert.throws(() => composeDsn({ ...base, ...change }), RangeError));
  }

  test("a requested boundary is used when the content lacks it", () => {
    assert.equal(composeDsn({ ...base, boundary: "simple" }).boundary, "simple");
  });

  test("reads only the header section of a large body for a headers-only return", () => {
    let pulled = 0;
    function* body(): Generator<Uint8Array> {
      pulled++;
      yield ORIGINAL.subarray(0, HEADER.length + 2);
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield new Uint8Array(256 * 1024).fill(0x61);
      }
    }
    const dsn = composeDsn({ ...base, content: body() });
    assert.equal(dsn.returned, "headers");
    assert.equal(pulled, 1);
  });
});
