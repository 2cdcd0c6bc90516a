/**
 * SMTP reply codes as named numbers: the one vocabulary of codes for the server's replies
 * (src/smtp/reply_codes.ts builds its `Reply` constants from these), the SMTP client
 * (src/client/, src/outbound/) and the customer side (src/customer/).
 *
 * Each name carries its number and the meaning the defining RFC gives it (RFC 5321 4.2.2 unless
 * noted). Where one number has two meanings that callers test for separately, both are named here
 * (`Code452InsufficientStorage`, `Code452TooManyRecipients`). Nowhere else in src/ is a specific
 * reply code written as a number (test/smtp/no_bare_codes_test.ts checks); comparisons with a class
 * boundary (`code >= 200 && code < 300`, `code >= 500`) stay plain numbers; {@linkcode isPositive}
 * names the commonest.
 *
 * @module
 */

// 2yz: positive completion

/** 214 Help message (RFC 5321 4.1.1.8). */
export const Code214Help = 214;
/** 220 `<domain>` Service ready: the greeting (RFC 5321 3.1), and "ready to start TLS" (RFC 3207 4). */
export const Code220Ready = 220;
/** 221 `<domain>` Service closing transmission channel: the reply to QUIT (RFC 5321 4.1.1.10). */
export const Code221Closing = 221;
/** 235 Authentication succeeded (RFC 4954 6). */
export const Code235AuthSucceeded = 235;
/** 250 Requested mail action okay, completed. */
export const Code250Ok = 250;
/** 252 Cannot VRFY user, but will accept message and attempt delivery (RFC 5321 3.5.3, 7.3). */
export const Code252CannotVerify = 252;

// 3yz: positive intermediate

/** 334 Server challenge during AUTH (RFC 4954 4). */
export const Code334Challenge = 334;
/** 354 Start mail input; end with `<CRLF>.<CRLF>` (RFC 5321 4.1.1.4). */
export const Code354StartInput = 354;

// 4yz: transient negative completion

/** 421 Service not available, closing transmission channel (RFC 5321 3.8: may come at any time). */
export const Code421Closing = 421;
/** 450 Requested mail action not taken; for ATRN "request refused" (RFC 2645 5.2.1). */
export const Code450NotTaken = 450;
/** 451 Requested action aborted: local error in processing; also what WE record on mail left queued. */
export const Code451LocalError = 451;
/** 452 Requested action not taken: insufficient system storage (RFC 5321 4.2.3; RFC 1870 6.2). */
export const Code452InsufficientStorage = 452;
/** 452 to RCPT: too many recipients; the rest go in a new transaction (RFC 5321 4.5.3.1.10). */
export const Code452TooManyRecipients = 452;
/** 453 You have no mail: the reply to ATRN when nothing is queued (RFC 2645 5.2.1). */
export const Code453NoMail = 453;
/** 454 Temporary failure: TLS not available (RFC 3207 4), temporary authentication failure (RFC 4954 6). */
export const Code454TemporaryFailure = 454;

// 5yz: permanent negative completion

/** 500 Syntax error, command unrecognized (the client falls back from EHLO to HELO, RFC 5321 3.2). */
export const Code500Unrecognized = 500;
/** 501 Syntax error in parameters or arguments. */
export const Code501SyntaxError = 501;
/** 502 Command not implemented. */
export const Code502NotImplemented = 502;
/** 503 Bad sequence of commands. */
export const Code503BadSequence = 503;
/** 504 Command parameter not implemented; also an AUTH mechanism refused (RFC 4954 4). */
export const Code504ParamNotImplemented = 504;
/** 530 Authentication required (RFC 4954 6; RFC 2645 5.2.1: ATRN before AUTH). */
export const Code530AuthRequired = 530;
/** 535 Authentication credentials invalid (RFC 4954 6). */
export const Code535AuthFailed = 535;
/** 550 Requested action not taken: mailbox unavailable. */
export const Code550NotTaken = 550;
/** 552 Requested mail action aborted: exceeded storage allocation (on RCPT sometimes too many recipients). */
export const Code552ExceededStorage = 552;
/** 553 Requested action not taken: mailbox name not allowed. */
export const Code553NameNotAllowed = 553;
/** 554 Transaction failed; as a greeting "No SMTP service here" (RFC 5321 3.1). */
export const Code554Failed = 554;
/** 555 MAIL FROM/RCPT TO parameters not recognized or not implemented (RFC 5321 4.1.1.11). */
export const Code555ParamsNotRecognized = 555;
/** 556 Domain does not accept mail (RFC 7504 3), recorded for a null MX (RFC 7505 4.1). */
export const Code556DomainAcceptsNoMail = 556;

/** Whether `reply` is a positive completion (2yz, RFC 5321 4.2.1). */
export function isPositive(reply: { readonly code: number }): boolean {
  return reply.code >= 200 && reply.code < 300;
}
