/**
 * Helpers for the DSN tests: the independent parse (Python's `email` package, test/dsn/parse_dsn.py),
 * wire-format checks on raw octets, and golden files (`UPDATE_GOLDEN=1` rewrites them).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** A header field as [name, value] (raw, unfolded). */
export type Field = [string, string];

/** One MIME part as parse_dsn.py describes it. */
export interface ParsedPart {
  content_type: string;
  params: Record<string, string>;
  cte: string | null;
  headers: Field[];
  /** message/delivery-status and message/global-delivery-status: the field blocks. */
  blocks?: Field[][];
  /** message/rfc822, message/global, message/global-headers: the embedded message. */
  inner_headers?: Field[];
  inner_body_b64?: string;
  /** Any other part: its body with the transfer encoding undone. */
  payload_b64?: string;
}

/** The whole DSN as parse_dsn.py describes it. */
export interface ParsedDsn {
  headers: Field[];
  /** The header fields as the email package's header classes read them (addresses, dates). */
  interpreted: Field[];
  content_type: string;
  params: Record<string, string>;
  boundary: string | null;
  defects: string[];
  parts: ParsedPart[];
}

const script = fileURLToPath(new URL("./parse_dsn.py", import.meta.url));

/** Parses `bytes` with Python's email package. */
export function parseWithPython(bytes: Uint8Array): ParsedDsn {
  const run = spawnSync("python3", [script], { input: bytes, maxBuffer: 64 * 1024 * 1024 });
  assert.equal(run.error, undefined, `python3 could not be started: ${run.error}`);
  assert.equal(run.status, 0, `parse_dsn.py failed: ${run.stderr?.toString()}`);
  return JSON.parse(run.stdout.toString("utf8")) as ParsedDsn;
}

/** Decodes a base64 payload from parse_dsn.py. */
export function fromBase64(text: string | undefined): Uint8Array {
  return new Uint8Array(Buffer.from(text ?? "", "base64"));
}

/** Asserts CRLF-only line endings and lines of at most 998 octets (RFC 5322 2.1.1, RFC 5321 4.5.3.1.6). */
export function assertWireFormat(bytes: Uint8Array): void {
  let lineStart = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0d) {
      assert.equal(bytes[i + 1], 0x0a, `bare CR at offset ${i}`);
      assert.ok(i - lineStart <= 998, `line of ${i - lineStart} octets at offset ${lineStart}`);
      i++;
      lineStart = i + 1;
    } else {
      assert.notEqual(bytes[i], 0x0a, `bare LF at offset ${i}`);
    }
  }
  assert.equal(lineStart, bytes.length, "the message does not end with CRLF");
}

const goldenDir = fileURLToPath(new URL("./golden/", import.meta.url));

/**
 * Compares `bytes` with test/dsn/golden/<name>.eml; with `UPDATE_GOLDEN=1` in the environment, writes
 * the file instead.
 */
export function assertGolden(name: string, bytes: Uint8Array): void {
  const path = `${goldenDir}${name}.eml`;
  if (process.env.UPDATE_GOLDEN === "1") {
    mkdirSync(goldenDir, { recursive: true });
    writeFileSync(path, bytes);
    return;
  }
  assert.ok(existsSync(path), `missing golden file ${path}: run with UPDATE_GOLDEN=1 to create it`);
  const expected = new Uint8Array(readFileSync(path));
  const decoder = new TextDecoder();
  // Strings first, for a readable diff; then the octets.
  assert.equal(
    decoder.decode(bytes),
    decoder.decode(expected),
    `${name}.eml differs (UPDATE_GOLDEN=1 rewrites it)`,
  );
  assert.deepEqual(bytes, expected);
}

/** The value of the only field `name` in `fields`; fails when it is missing or repeated. */
export function field(fields: readonly Field[], name: string): string {
  const found = fields.filter(([n]) => n.toLowerCase() === name.toLowerCase());
  assert.equal(found.length, 1, `expected one ${name} field, got ${found.length}`);
  return (found[0] as Field)[1];
}
