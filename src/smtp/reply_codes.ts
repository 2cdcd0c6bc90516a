/**
 * Named SMTP replies used by the intake (port 25) and ODMR (port 366) servers.
 *
 * Every constant carries its numeric code in its name and cites the RFC that defines the code, so
 * handlers never contain a bare `250`; the number itself comes from the named codes in
 * src/smtp/codes.ts, the vocabulary the client and the customer side use too.
 *
 * Enhanced status codes (RFC 2034 / RFC 3463) are attached to every 2xx/4xx/5xx reply except the
 * greeting and the EHLO/HELO reply (RFC 2034 section 3); `formatReply` decides whether to print them.
 * 3xx replies never carry one.
 *
 * Texts are fixed or built from values we control (our hostname, a queue id). Text that came from the
 * peer or from an exception never goes into a reply: put it in `SmtpError.logReason` instead.
 *
 * @module
 */

import {
  Code214Help,
  Code220Ready,
  Code221Closing,
  Code235AuthSucceeded,
  Code250Ok,
  Code252CannotVerify,
  Code334Challenge,
  Code354StartInput,
  Code421Closing,
  Code450NotTaken,
  Code451LocalError,
  Code452InsufficientStorage,
  Code452TooManyRecipients,
  Code453NoMail,
  Code454TemporaryFailure,
  Code500Unrecognized,
  Code501SyntaxError,
  Code502NotImplemented,
  Code503BadSequence,
  Code504ParamNotImplemented,
  Code530AuthRequired,
  Code535AuthFailed,
  Code550NotTaken,
  Code552ExceededStorage,
  Code553NameNotAllowed,
  Code554Failed,
  Code555ParamsNotRecognized,
} from "./codes.ts";

/** One SMTP reply: a code, an optional enhanced status code and one or more text lines. */
export interface Reply {
  /** Three-digit reply code, first digit 2 to 5 (RFC 5321 4.2). */
  code: number;
  /** Enhanced status code `class.subject.detail` (RFC 3463), printed only when enabled. */
  enhanced?: string;
  /** Text lines without code, separator or CRLF. */
  lines: string[];
}

/** Builds an immutable reply so a shared constant cannot be changed by one connection. */
function define(code: number, enhanced: string | undefined, ...lines: string[]): Reply {
  const reply: Reply = enhanced === undefined ? { code, lines } : { code, enhanced, lines };
  Object.freeze(reply.lines);
  return Object.freeze(reply);
}

// ---------------------------------------------------------------------------------------------
// 2yz: positive completion
// ---------------------------------------------------------------------------------------------

/** `214 2.0.0` help text (RFC 5321 4.1.1.8). */
export const C214Help = define(Code214Help, "2.0.0", "See RFC 5321 and RFC 2645");

/** `220 <host> <text>` greeting (RFC 5321 4.2, 3.1); greetings carry no enhanced code (RFC 2034 3). */
export const C220Greeting = (host: string, text = "ESMTP"): Reply =>
  define(Code220Ready, undefined, `${host} ${text}`);

/** `220 2.0.0 Ready to start TLS` (RFC 3207 4). */
export const C220ReadyToStartTls = define(Code220Ready, "2.0.0", "Ready to start TLS");

/** `221 2.0.0 Bye` after QUIT (RFC 5321 4.1.1.10). */
export const C221Bye = define(Code221Closing, "2.0.0", "Bye");

/**
 * `221 2.7.0` to an HTTP request or TLS ClientHello on a plaintext SMTP port, then close
 * (docs/protocol.md#non-smtp-clients).
 */
export const C221ForbiddenCommand = define(
  Code221Closing,
  "2.7.0",
  "Error: this is an SMTP service, closing connection",
);

/** `235 2.7.0 Authentication successful` (RFC 4954 6). */
export const C235AuthSucceeded = define(Code235AuthSucceeded, "2.7.0", "Authentication successful");

/** `250 2.0.0 Ok` generic success (RFC 5321 4.2.2). */
export const C250Ok = define(Code250Ok, "2.0.0", "Ok");

/** `250 2.1.0 Ok` to MAIL (RFC 3463 X.1.0 "other address status"). */
export const C250SenderOk = define(Code250Ok, "2.1.0", "Ok");

/** `250 2.1.5 Ok` to RCPT (RFC 3463 X.1.5 "destination address valid"). */
export const C250RecipientOk = define(Code250Ok, "2.1.5", "Ok");

/** `250 2.0.0 Ok: queued as <id>` after the final dot; sent only once the message is durable (RFC 5321 6.1). */
export const C250Queued = (id: string): Reply => define(Code250Ok, "2.0.0", `Ok: queued as ${id}`);

/** `250 <host>` reply to HELO: a single line, never the EHLO keyword list (RFC 5321 4.1.1.1). */
export const C250Helo = (host: string): Reply => define(Code250Ok, undefined, host);

/** `250 2.0.0` to XWATCH: the turned session will stay open for new mail (src/smtp/ehlo.ts). */
export const C250WatchAccepted = define(
  Code250Ok,
  "2.0.0",
  "Watch: after ATRN the session stays open for new mail",
);

/** `250 2.0.0 OK now reversing the connection` to ATRN (RFC 2645 5.2.1, wording from its example). */
export const C250AtrnReversing = define(Code250Ok, "2.0.0", "OK now reversing the connection");

/** `252 2.0.0` to VRFY: VRFY is disabled, which RFC 5321 7.3 says to answer with 252. */
export const C252CannotVrfy = define(
  Code252CannotVerify,
  "2.0.0",
  "Cannot VRFY user, but will accept message and attempt delivery",
);

// ---------------------------------------------------------------------------------------------
// 3yz: positive intermediate (never an enhanced code, RFC 2034 3)
// ---------------------------------------------------------------------------------------------

/** `334 <base64>` SASL challenge; empty challenge is exactly `334 ` (RFC 4954 4). */
export const C334Challenge = (base64: string): Reply => define(Code334Challenge, undefined, base64);

/** `354 End data with <CR><LF>.<CR><LF>` (RFC 5321 4.1.1.4). */
export const C354StartInput = define(Code354StartInput, undefined, "End data with <CR><LF>.<CR><LF>");

// ---------------------------------------------------------------------------------------------
// 4yz: transient negative completion
// ---------------------------------------------------------------------------------------------

/** `421 4.3.2 <host> Service shutting down` (RFC 5321 3.8, 4.2.3). */
export const C421ShuttingDown = (host: string): Reply =>
  define(Code421Closing, "4.3.2", `${host} Service shutting down, closing transmission channel`);

/** `421 4.4.2 <host> Error: timeout exceeded` (RFC 5321 4.5.3.2; closing after a timeout is allowed, 3.8). */
export const C421Timeout = (host: string): Reply =>
  define(Code421Closing, "4.4.2", `${host} Error: timeout exceeded`);

/** `421 4.7.0 <host> Error: too many errors` (RFC 5321 7.8 defensive close). */
export const C421TooManyErrors = (host: string): Reply =>
  define(Code421Closing, "4.7.0", `${host} Error: too many errors`);

/** `421 4.7.0 <host> Error: too many connections` at connect (RFC 5321 3.1, 7.8). */
export const C421TooManyConnections = (host: string): Reply =>
  define(Code421Closing, "4.7.0", `${host} Error: too many connections`);

/** `421 4.7.0 <host>` to an idle connection closed to make room for another (RFC 5321 3.8, 7.8). */
export const C421Evicted = (host: string): Reply =>
  define(Code421Closing, "4.7.0", `${host} Error: too many connections, closing an idle one`);

/** `421 4.7.0 <host>` when no AUTH succeeded within the pre-authentication time (RFC 5321 3.8, 7.8). */
export const C421AuthTimeLimit = (host: string): Reply =>
  define(Code421Closing, "4.7.0", `${host} Error: authentication time limit exceeded`);

/** `421 4.3.0 <host> Error: internal error`, for bugs caught at the connection boundary (docs/design.md#seams, 3). */
export const C421LocalError = (host: string): Reply =>
  define(Code421Closing, "4.3.0", `${host} Error: internal error`);

/** `421 4.5.2 <host> Error: line too long` past the hard cap on a line (docs/protocol.md#line-limits). */
export const C421LineTooLong = (host: string): Reply =>
  define(Code421Closing, "4.5.2", `${host} Error: line too long`);

/** `421 4.3.4 <host>` when DATA passes the hard byte cap (docs/protocol.md#line-limits; RFC 3463 X.3.4). */
export const C421MessageTooBig = (host: string): Reply =>
  define(Code421Closing, "4.3.4", `${host} Error: message too big, closing connection`);

/** `450 4.7.1 ATRN request refused` (RFC 2645 5.2.1): one text for every refusal, so no domain enumeration. */
export const C450AtrnRefused = define(Code450NotTaken, "4.7.1", "ATRN request refused");

/** `452 4.3.2` to XWATCH when `atrnMaxWatching` sessions already watch: poll as usual. */
export const C452TooManyWatching = define(
  Code452InsufficientStorage,
  "4.3.2",
  "Too many watching sessions; poll instead",
);

/** `450 4.7.0` to an account polling faster than `atrnMaxPerMinute` (RFC 2645 5.2.1 allows 450). */
export const C450AtrnRateLimited = define(
  Code450NotTaken,
  "4.7.0",
  "Too many ATRN requests, try again later",
);

/** `451 4.3.0 Error: local error in processing` (RFC 5321 4.2.3). */
export const C451LocalError = define(Code451LocalError, "4.3.0", "Error: local error in processing");

/** `451 4.3.0 Unable to process ATRN request now` (RFC 2645 5.2.1). */
export const C451AtrnUnavailable = define(Code451LocalError, "4.3.0", "Unable to process ATRN request now");

/** `452 4.5.3 Error: too many recipients` (RFC 5321 4.5.3.1.10: 452, not 552). */
export const C452TooManyRecipients = define(Code452TooManyRecipients, "4.5.3", "Error: too many recipients");

/** `452 4.3.1 Error: insufficient system storage` (RFC 5321 4.2.3; RFC 1870 6.2). */
export const C452InsufficientStorage = define(
  Code452InsufficientStorage,
  "4.3.1",
  "Error: insufficient system storage",
);

/** `452 4.2.2` the domain's queue is over its quota: temporary until the customer collects (RFC 3463 X.2.2). */
export const C452QuotaExceeded = define(
  Code452InsufficientStorage,
  "4.2.2",
  "Error: the domain's mail queue is full, try again later",
);

/**
 * `453 4.2.0 You have no mail` (RFC 2645 5.2.1). No enhanced code is registered for "no mail";
 * X.2.0 ("other mailbox status") is the closest fit (docs/protocol.md#atrn-decisions).
 */
export const C453NoMail = define(Code453NoMail, "4.2.0", "You have no mail");

/** `454 4.7.0 Temporary authentication failure` (RFC 4954 6). */
export const C454AuthTemporaryFailure = define(
  Code454TemporaryFailure,
  "4.7.0",
  "Temporary authentication failure",
);

// ---------------------------------------------------------------------------------------------
// 5yz: permanent negative completion
// ---------------------------------------------------------------------------------------------

/** `500 5.5.2 Error: command not recognized` (RFC 5321 4.2.4). */
export const C500SyntaxError = define(Code500Unrecognized, "5.5.2", "Error: command not recognized");

/** `500 5.5.2 Error: line too long` (RFC 5321 4.5.3.1.4). */
export const C500LineTooLong = define(Code500Unrecognized, "5.5.2", "Error: line too long");

/** `500 5.5.2 Error: bare <LF> received` (RFC 5321 2.3.8; docs/protocol.md#bare-line-endings). */
export const C500BareLf = define(Code500Unrecognized, "5.5.2", "Error: bare <LF> received");

/** `500 5.5.2 Error: bare <CR> received` (RFC 5321 2.3.8; docs/protocol.md#bare-line-endings). */
export const C500BareCr = define(Code500Unrecognized, "5.5.2", "Error: bare <CR> received");

/** `500 5.5.6 Error: authentication exchange line too long` (RFC 4954 4). */
export const C500AuthLineTooLong = define(
  Code500Unrecognized,
  "5.5.6",
  "Error: authentication exchange line too long",
);

/** `501 5.5.2 Error: invalid characters in command` for NUL/control/8-bit bytes (RFC 5321 4.1.2). */
export const C501InvalidCharacters = define(
  Code501SyntaxError,
  "5.5.2",
  "Error: invalid characters in command",
);

/** `501 5.5.4 Syntax error in parameters or arguments` (RFC 5321 4.2.2). */
export const C501SyntaxError = define(Code501SyntaxError, "5.5.4", "Syntax error in parameters or arguments");

/** `501 5.5.4 Syntax: <verb> takes no arguments` for RSET, DATA, QUIT, STARTTLS (RFC 5321 4.3.2). */
export const C501NoArguments = (verb: string): Reply =>
  define(Code501SyntaxError, "5.5.4", `Syntax: ${verb} takes no arguments`);

/** `501 5.5.4 Syntax: <verb> needs an argument`, e.g. `VRFY` without a string (RFC 5321 4.1.1.6). */
export const C501ArgumentRequired = (verb: string, what: string): Reply =>
  define(Code501SyntaxError, "5.5.4", `Syntax: ${verb} ${what}`);

/** `501 5.5.4 Syntax: MAIL FROM:<address>` (RFC 5321 4.1.1.2). */
export const C501MailSyntax = define(Code501SyntaxError, "5.5.4", "Syntax: MAIL FROM:<address>");

/** `501 5.5.4 Syntax: RCPT TO:<address>` (RFC 5321 4.1.1.3). */
export const C501RcptSyntax = define(Code501SyntaxError, "5.5.4", "Syntax: RCPT TO:<address>");

/** `501 5.5.4 Syntax: EHLO hostname` / HELO (RFC 5321 4.1.1.1). */
export const C501HeloSyntax = (verb: string): Reply =>
  define(Code501SyntaxError, "5.5.4", `Syntax: ${verb} hostname`);

/** `501 5.5.4 Error: address must be enclosed in <>` (RFC 5321 4.1.2 Path; docs/protocol.md#addresses). */
export const C501MissingAngleBrackets = define(
  Code501SyntaxError,
  "5.5.4",
  "Error: address must be enclosed in <>",
);

/** `501 5.1.7 Error: bad sender address syntax` (RFC 5321 4.1.2; RFC 3463 X.1.7). */
export const C501BadSenderSyntax = define(Code501SyntaxError, "5.1.7", "Error: bad sender address syntax");

/** `501 5.1.3 Error: bad recipient address syntax` (RFC 5321 4.1.2; RFC 3463 X.1.3). */
export const C501BadRecipientSyntax = define(
  Code501SyntaxError,
  "5.1.3",
  "Error: bad recipient address syntax",
);

/** `501 5.1.3 Error: null recipient not allowed` for `RCPT TO:<>` (RFC 5321 4.1.1.3). */
export const C501NullRecipient = define(Code501SyntaxError, "5.1.3", "Error: null recipient not allowed");

/** `501 5.5.4 Error: path too long` (RFC 5321 4.5.3.1.3; also local part 4.5.3.1.1 and domain 4.5.3.1.2). */
export const C501PathTooLong = define(Code501SyntaxError, "5.5.4", "Error: path too long");

/** `501 5.5.4 Error: duplicate parameter` (RFC 5321 4.1.2 esmtp-param; RFC 3461 4). */
export const C501DuplicateParam = define(Code501SyntaxError, "5.5.4", "Error: duplicate parameter");

/** `501 5.5.4 Error: bad parameter syntax` (RFC 5321 4.1.2 esmtp-param). */
export const C501BadParamSyntax = define(Code501SyntaxError, "5.5.4", "Error: bad parameter syntax");

/** `501 5.5.4 Error: bad <KEYWORD> parameter value` (RFC 1870, 6152, 6531, 3461: bad value means 501). */
export const C501BadParamValue = (keyword: string): Reply =>
  define(Code501SyntaxError, "5.5.4", `Error: bad ${keyword} parameter value`);

/** `501 5.5.2 Error: invalid base64 data` (RFC 4954 4). */
export const C501BadBase64 = define(Code501SyntaxError, "5.5.2", "Error: invalid base64 data");

/** `501 5.7.0 Authentication aborted` when the client sends `*` (RFC 4954 4). */
export const C501AuthAborted = define(Code501SyntaxError, "5.7.0", "Authentication aborted");

/** `501 5.7.0 Error: initial response not allowed for this mechanism` (RFC 4954 4, CRAM-MD5 is server-first). */
export const C501InitialResponseNotAllowed = define(
  Code501SyntaxError,
  "5.7.0",
  "Error: initial response not allowed for this mechanism",
);

/** `501 5.5.4 Error: bad ATRN domain list` (RFC 2645 5.2.1 ABNF). */
export const C501BadAtrnSyntax = define(Code501SyntaxError, "5.5.4", "Error: bad ATRN domain list");

/** `502 5.5.1 Error: command not implemented` (RFC 5321 4.2.4; RFC 2645 5.4). */
export const C502NotImplemented = define(Code502NotImplemented, "5.5.1", "Error: command not implemented");

/** `503 5.5.1 Error: send HELO/EHLO first` (RFC 5321 4.1.4). */
export const C503NeedHelo = define(Code503BadSequence, "5.5.1", "Error: send HELO/EHLO first");

/** `503 5.5.1 Error: nested MAIL command` (RFC 5321 4.1.4). */
export const C503NestedMail = define(Code503BadSequence, "5.5.1", "Error: nested MAIL command");

/** `503 5.5.1 Error: need MAIL command` (RFC 5321 4.1.4). */
export const C503NeedMail = define(Code503BadSequence, "5.5.1", "Error: need MAIL command");

/** `503 5.5.1 Error: need RCPT command` (RFC 5321 4.1.4). */
export const C503NeedRcpt = define(Code503BadSequence, "5.5.1", "Error: need RCPT command");

/** `503 5.5.1 Error: already authenticated` (RFC 4954 4). */
export const C503AlreadyAuthenticated = define(Code503BadSequence, "5.5.1", "Error: already authenticated");

/** `504 5.5.4 Unrecognized authentication type` (RFC 4954 4). */
export const C504UnknownMechanism = define(
  Code504ParamNotImplemented,
  "5.5.4",
  "Unrecognized authentication type",
);

/** `504 5.5.4 Encryption required for requested authentication mechanism` (RFC 4954 4). */
export const C504EncryptionRequired = define(
  Code504ParamNotImplemented,
  "5.5.4",
  "Encryption required for requested authentication mechanism",
);

/** `530 5.7.0 Authentication required` (RFC 2645 5.2.1 ATRN before AUTH; RFC 4954 6). */
export const C530AuthRequired = define(Code530AuthRequired, "5.7.0", "Authentication required");

/** `535 5.7.8 Authentication credentials invalid` (RFC 4954 6); same text for unknown user and bad secret. */
export const C535AuthFailed = define(Code535AuthFailed, "5.7.8", "Authentication credentials invalid");

/** `550 5.7.1 Error: relay access denied` (RFC 5321 4.2.2; RFC 3463 X.7.1). */
export const C550RelayDenied = define(Code550NotTaken, "5.7.1", "Error: relay access denied");

/** `550 5.1.1 Error: mailbox unavailable` for an unknown recipient (RFC 3463 X.1.1). */
export const C550UnknownRecipient = define(Code550NotTaken, "5.1.1", "Error: mailbox unavailable");

/** `550 5.7.1` for `%`, `!` or `@` routing in a local part, refused unless the domain allows it. */
export const C550RoutingSyntax = define(
  Code550NotTaken,
  "5.7.1",
  "Error: routing syntax in the local part is not accepted",
);

/** `550 5.6.7 Must declare SMTPUTF8 to send unicode address` on MAIL (RFC 6531 3.5). */
export const C550UnicodeSenderNotAllowed = define(
  Code550NotTaken,
  "5.6.7",
  "Must declare SMTPUTF8 to send unicode address",
);

/**
 * `550 5.6.0 Error: bare <LF> or <CR> received in message data` (RFC 5321 2.3.8;
 * docs/protocol.md#bare-line-endings).
 */
export const C550BareLineEndingInData = define(
  Code550NotTaken,
  "5.6.0",
  "Error: bare <LF> or <CR> received in message data",
);

/** `552 5.3.4 Error: message file too big` (RFC 1870 6.1/6.3; RFC 5321 4.5.3.1.10). */
export const C552TooBig = define(Code552ExceededStorage, "5.3.4", "Error: message file too big");

/** `553 5.6.7 Must declare SMTPUTF8 to send unicode address` on RCPT (RFC 6531 3.5). */
export const C553UnicodeRecipientNotAllowed = define(
  Code553NameNotAllowed,
  "5.6.7",
  "Must declare SMTPUTF8 to send unicode address",
);

/** `554 5.5.1 Error: no valid recipients` to DATA when every RCPT was refused (RFC 5321 3.3, 4.1.1.4). */
export const C554NoValidRecipients = define(Code554Failed, "5.5.1", "Error: no valid recipients");

/** `554 5.5.0 Error: SMTP protocol synchronization` (RFC 2920 3.1; docs/protocol.md#synchronization). */
export const C554SyncError = define(Code554Failed, "5.5.0", "Error: SMTP protocol synchronization");

/** `554 5.5.1 Error: TLS already active` (RFC 3207 4.2; docs/protocol.md#starttls-rules). */
export const C554TlsAlreadyActive = define(Code554Failed, "5.5.1", "Error: TLS already active");

/** `554 5.4.6 Error: too many hops` for a mail loop (RFC 5321 6.3; RFC 3463 X.4.6). */
export const C554TooManyHops = define(Code554Failed, "5.4.6", "Error: too many hops");

/**
 * `554 5.6.0 Error: NUL character in message data` (RFC 6152: 8BITMIME still forbids NUL;
 * docs/protocol.md#bare-line-endings).
 */
export const C554NulInData = define(Code554Failed, "5.6.0", "Error: NUL character in message data");

/** `554 5.6.0 Error: message line too long` for a DATA line over 1000 octets (RFC 5321 4.5.3.1.6). */
export const C554DataLineTooLong = define(Code554Failed, "5.6.0", "Error: message line too long");

/** `554 5.6.0 Error: 8-bit data without BODY=8BITMIME` (RFC 6152 3; RFC 5321 2.4 allows rejecting). */
export const C554EightBitWithout8BitMime = define(
  Code554Failed,
  "5.6.0",
  "Error: 8-bit data without BODY=8BITMIME",
);

/** `555 5.5.4 Error: unsupported MAIL/RCPT parameter` (RFC 5321 4.1.1.11). */
export const C555UnknownParam = define(Code555ParamsNotRecognized, "5.5.4", "Error: unsupported parameter");

/**
 * The one error type whose reply reaches the wire (docs/design.md#seams, 3).
 *
 * `reply` is sent to the peer verbatim; `logReason` and `cause` are for our logs only and may contain
 * peer input or internals. The `message` is the log reason when given, else the reply text.
 */
export class SmtpError extends Error {
  /** The reply to send. */
  readonly reply: Reply;
  /** Why we sent it, for the log; never shown to the peer. */
  readonly logReason: string | undefined;

  /** Wraps `reply`; `options.logReason` explains the decision in logs, `options.cause` chains an error. */
  constructor(reply: Reply, options?: { cause?: unknown; logReason?: string }) {
    const message = options?.logReason ?? `${reply.code} ${reply.lines.join(" ")}`;
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SmtpError";
    this.reply = reply;
    this.logReason = options?.logReason;
  }
}
