/**
 * The human-readable first part of a DSN (RFC 6522 3; for a person who does not read
 * status codes): what happened to each recipient, in plain words, with the receiving server's reply
 * quoted as it was, and what was attached.
 *
 * @module
 */

import { type DateFormatOptions, formatRfc5322Date } from "../smtp/rfc5322_date.ts";
import { safeText, wrapText } from "./field_text.ts";
import type { ReturnedContent } from "./original.ts";
import { actionFor } from "./policy.ts";
import { remoteMtaName, replyWireLines } from "./remote.ts";
import { statusFor } from "./status.ts";
import type { DsnAction, DsnMessage, DsnRecipient, DsnReply } from "./types.ts";

/** What {@link explanationText} needs. */
export interface ExplanationInput {
  reportingMta: string;
  message: DsnMessage;
  recipients: readonly DsnRecipient[];
  /** When the DSN is written (to say how long the relay kept the mail). */
  date: Date;
  dateOptions: DateFormatOptions;
  /** What the third part holds. */
  returned: ReturnedContent;
  /** The cap that made a RET=FULL return fall back to headers. */
  maxFullBytes: number;
}

const INTRO: Record<DsnAction, string> = {
  failed: "Your message could not be delivered to the recipients below. The relay has stopped trying " +
    "and will not deliver it.",
  delayed: "Your message has not been delivered yet to the recipients below. This is only a warning: " +
    "you do not need to send it again, the relay keeps trying.",
  relayed: "You asked to be told when your message was delivered. It has been handed to the mail " +
    "server of the recipients below. That server does not send such reports, so you will get no " +
    "further notice about this message from the relay.",
};

/** Plain words for the local refusals the relay makes (RFC 3463 codes). */
const LOCAL_REASONS: Record<string, string> = {
  "5.3.4": "The message is larger than the recipient's mail server accepts.",
  "5.6.3": "The message contains 8-bit data, and the recipient's mail server cannot accept that (it " +
    "does not support 8BITMIME).",
  "5.6.7": "The message uses international (non-ASCII) addresses or headers, and the recipient's mail " +
    "server does not support them (SMTPUTF8).",
};

/**
 * The text of the first part, CRLF line endings, lines of at most 78 octets where words allow. It is
 * UTF-8 where an address or a quoted reply is; control characters are replaced.
 */
export function explanationText(input: ExplanationInput): string {
  const out: string[] = [];
  const para = (text: string, indent = ""): void => {
    out.push(...wrapText(safeText(text, true), indent), "");
  };
  para(`This is the mail delivery system at ${input.reportingMta}.`);
  for (const action of ["failed", "delayed", "relayed"] as const) {
    const group = input.recipients.filter((r) => actionFor(r.cause) === action);
    if (group.length === 0) continue;
    para(INTRO[action]);
    for (const r of group) {
      out.push(`  <${safeText(r.address, true)}>`);
      for (const text of recipientParagraphs(r, input)) {
        if (typeof text === "string") para(text, "    ");
        else out.push(...text.map((l) => `      ${safeText(l, true)}`), "");
      }
    }
  }
  for (const note of returnedNotes(input)) para(note);
  const reference = input.message.queueId === undefined
    ? ""
    : ` and quote this reference: ${input.message.queueId}`;
  para(`If you need help, forward this whole notice to your own mail administrator${reference}.`);
  out.pop(); // the empty line after the last paragraph
  return out.map((line) => `${line}\r\n`).join("");
}

/** Paragraphs (strings) and quoted replies (arrays of lines) for one recipient. */
function recipientParagraphs(r: DsnRecipient, input: ExplanationInput): (string | string[])[] {
  const date = (d: Date): string => formatRfc5322Date(d, input.dateOptions);
  const server = (name: string | undefined): string => {
    const remote = remoteMtaName(name);
    return remote === undefined ? "The recipient's mail server" : `The recipient's mail server (${remote})`;
  };
  const domain = domainOf(r.address);
  const odmr = `${input.reportingMta} is an on-demand mail relay: it holds mail for ${domain} until ` +
    `that domain's own mail server connects and collects it.`;
  const replied = (
    reply: DsnReply | undefined,
    remote: string | undefined,
    lead: string,
  ): (string | string[])[] =>
    reply === undefined ? [] : [`${server(remote)} ${lead}:`, replyWireLines(reply)];

  switch (r.cause) {
    case "customer-rejected":
      return [
        `${server(r.remoteMta)} refused the message and replied:`,
        replyWireLines(r.reply),
        "Please check that the address is spelled correctly, or reach the recipient another way.",
      ];
    case "local-refusal":
      return [
        "The relay could not pass the message on to the recipient's mail server. " +
        (LOCAL_REASONS[statusFor(r)] ?? "It refused to send it on."),
        `Technical detail: ${r.text}`,
      ];
    case "expired": {
      const kept = duration(input.date.getTime() - input.message.arrivalDate.getTime());
      const last = r.lastCollected === undefined
        ? ""
        : r.lastCollected === null
        ? " It has never collected mail from the relay."
        : ` It last collected mail on ${date(r.lastCollected)}.`;
      return [
        `${odmr} The relay kept your message for ${kept}, but that server did not collect it in time.${last}`,
        ...replied(r.lastReply, r.remoteMta, "last replied"),
      ];
    }
    case "operator-bounce":
      return [
        `An administrator of the relay ${input.reportingMta} returned your message without delivering it.` +
        (r.reason === undefined || r.reason === "" ? "" : ` Reason given: ${r.reason}`),
      ];
    case "delayed": {
      const since = r.lastCollected === undefined
        ? "That server has not collected this message yet."
        : r.lastCollected === null
        ? "That server has not collected any mail from the relay yet."
        : `That server has not collected mail since ${date(r.lastCollected)}.`;
      return [
        `${odmr} ${since} The relay will keep trying until ${date(r.willRetryUntil)}; if the message is ` +
        "not collected by then, it will be returned to you.",
        ...replied(r.lastReply, r.remoteMta, "last replied"),
      ];
    }
    case "relayed":
      return [
        `Handed to the recipient's mail server${
          remoteMtaName(r.remoteMta) === undefined ? "" : ` (${remoteMtaName(r.remoteMta)})`
        }.`,
        ...replied(r.reply, r.remoteMta, "replied"),
      ];
  }
}

/** What the third part holds, when that needs saying. */
function returnedNotes(input: ExplanationInput): string[] {
  const { returned } = input;
  const notes: string[] = [];
  if (returned.fallback === "too-large") {
    notes.push(
      `You asked for your whole message to be returned, but it is larger than ${input.maxFullBytes} bytes; ` +
        "only its header section is attached.",
    );
  } else if (returned.fallback === "unsafe") {
    notes.push(
      "You asked for your whole message to be returned, but it has lines that mail cannot carry " +
        "unchanged; only its header section is attached.",
    );
  }
  if (returned.kind === "full") notes.push("Your message is attached.");
  else if (returned.fallback === undefined) notes.push("The header section of your message is attached.");
  if (returned.truncated) {
    notes.push(`The attached header section was shortened to ${returned.bytes.length} bytes.`);
  }
  return notes;
}

/** "5 days", "1 day", "7 hours", "12 minutes". */
function duration(ms: number): string {
  const unit = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (ms >= 86_400_000) return unit(Math.floor(ms / 86_400_000), "day");
  if (ms >= 3_600_000) return unit(Math.floor(ms / 3_600_000), "hour");
  return unit(Math.max(0, Math.floor(ms / 60_000)), "minute");
}

/** The domain part of an address (after the last "@"), or the whole address for a bare `Postmaster`. */
function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at === -1 ? address : address.slice(at + 1);
}
