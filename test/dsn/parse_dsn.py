#!/usr/bin/env python3
"""Parses a DSN read from stdin with Python's email package and prints what it found as JSON.

This is the independent MIME parse for test/dsn/compose_test.ts: nothing here shares code with
src/dsn/. Header values are given as they stand, unfolded (RFC 5322 2.2.3: CRLF before WSP removed),
and the top-level ones also as the email package interprets them (addresses, dates); byte payloads
are given base64-encoded after the part's Content-Transfer-Encoding has been undone.
"""

import base64
import email.policy
import json
import re
import sys
from email.parser import BytesParser

POLICY = email.policy.default
# RFC 6532 permits UTF-8 in headers of SMTPUTF8 messages; the email package reports it as a defect.
UTF8_HEADER_DEFECTS = {"NonASCIILocalPartDefect", "UndecodableBytesDefect"}


def unfold(value):
    """RFC 5322 2.2.3 unfolding; raw 8-bit octets (kept as surrogate escapes) read back as UTF-8."""
    text = re.sub(r"\r?\n(?=[ \t])", "", value)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def fields(message):
    """The header fields as [name, raw unfolded value] pairs, in order."""
    return [[name, unfold(value)] for name, value in message.raw_items()]


def interpreted(message):
    """The header fields as the email package's header classes read them."""
    return [[name, str(value)] for name, value in message.items()]


def defects(message):
    """Names of the defects the parser found in every part and header field below `message`."""
    found = []
    for part in message.walk():
        found += [type(d).__name__ for d in part.defects]
        for name, value in part.items():
            found += [f"{name}:{type(d).__name__}" for d in getattr(value, "defects", ())
                      if type(d).__name__ not in UTF8_HEADER_DEFECTS]
    return found


def blocks_from_bytes(data):
    """Header blocks separated by empty lines, each parsed as a header section."""
    text = data.replace(b"\r\n", b"\n")
    return [fields(BytesParser(policy=POLICY).parsebytes(block + b"\n", headersonly=True))
            for block in text.split(b"\n\n") if block.strip()]


def status_blocks(part):
    """The per-message block and the per-recipient blocks of a (global) delivery-status part."""
    subs = part.get_payload()
    if part.get_content_type() == "message/delivery-status":
        # The email package parses message/delivery-status into one header block per sub-message.
        return [fields(sub) for sub in subs]
    # message/global-delivery-status is parsed as one message: first block as its header, rest as body.
    first = subs[0]
    return [fields(first)] + blocks_from_bytes(first.get_payload(decode=True) or b"")


def describe(part):
    info = {
        "content_type": part.get_content_type(),
        "params": {k: v for k, v in (part.get_params() or [])[1:]},
        "cte": part.get("Content-Transfer-Encoding"),
        "headers": fields(part),
    }
    ctype = part.get_content_type()
    if ctype in ("message/delivery-status", "message/global-delivery-status"):
        info["blocks"] = status_blocks(part)
    elif ctype in ("message/rfc822", "message/global", "message/global-headers"):
        inner = part.get_payload()[0]
        info["inner_headers"] = fields(inner)
        body = inner.get_payload(decode=True) if not inner.is_multipart() else None
        info["inner_body_b64"] = base64.b64encode(body or b"").decode()
    else:
        info["payload_b64"] = base64.b64encode(part.get_payload(decode=True) or b"").decode()
    return info


def main():
    raw = sys.stdin.buffer.read()
    message = BytesParser(policy=POLICY).parsebytes(raw)
    result = {
        "headers": fields(message),
        "interpreted": interpreted(message),
        "content_type": message.get_content_type(),
        "params": {k: v for k, v in (message.get_params() or [])[1:]},
        "boundary": message.get_boundary(),
        "defects": defects(message),
        "parts": [describe(part) for part in message.iter_parts()],
    }
    json.dump(result, sys.stdout, ensure_ascii=False)


main()
