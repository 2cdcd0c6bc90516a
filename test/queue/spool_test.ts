import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHUNK_SIZE, concat, SpoolWriter } from "../../src/queue/spool.ts";

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "odmr-spool-"));
  try {
    fn(join(dir, "spool"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Deterministic, position-dependent bytes, so a reused or stale buffer shows up as a mismatch. */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 10)) & 0xff;
  return out;
}

describe("SpoolWriter", () => {
  test("write uses the caller's bytes only during the call (a reused buffer is fine)", () => {
    withDir((dir) => {
      for (const total of [10_000, 3 * CHUNK_SIZE + 123]) {
        const spool = new SpoolWriter(dir);
        const scratch = new Uint8Array(50_000);
        const expected: Uint8Array[] = [];
        for (let written = 0, seed = 0; written < total; seed++) {
          const n = Math.min(scratch.length, total - written);
          scratch.set(pattern(n, seed));
          expected.push(scratch.slice(0, n));
          spool.write(scratch.subarray(0, n));
          scratch.fill(0xee); // the caller reuses its buffer at once
          written += n;
        }
        assert.equal(spool.size, total);
        // Copy each piece before asking for the one after next (spilled pieces are reused views).
        const got: Uint8Array[] = [];
        for (const piece of spool.chunks()) got.push(piece.slice());
        assert.ok(got.every((c) => c.length <= CHUNK_SIZE));
        assert.deepEqual(concat(got), concat(expected));
        spool.discard();
      }
    });
  });

  test("spilled chunks: two reused buffers, so one piece of look-ahead is safe", () => {
    withDir((dir) => {
      const body = pattern(5 * CHUNK_SIZE + 1000, 3);
      const spool = new SpoolWriter(dir);
      spool.write(body);
      const it = spool.chunks()[Symbol.iterator]();
      const first = it.next();
      const second = it.next(); // look ahead one piece, as the store does
      assert.ok(!first.done && !second.done);
      assert.deepEqual(first.value, body.subarray(0, CHUNK_SIZE), "first piece still intact");
      assert.deepEqual(second.value, body.subarray(CHUNK_SIZE, 2 * CHUNK_SIZE));
      const pieces = [first.value.slice(), second.value.slice()];
      const buffers = new Set([first.value.buffer, second.value.buffer]);
      for (let next = it.next(); !next.done; next = it.next()) {
        pieces.push(next.value.slice());
        buffers.add(next.value.buffer);
      }
      assert.equal(pieces.length, 6);
      assert.equal(buffers.size, 2, "no allocation per piece");
      assert.deepEqual(concat(pieces), body);
      spool.discard();
      assert.deepEqual(readdirSync(dir), []);
    });
  });

  test("a body kept in memory yields pieces that are never reused", () => {
    withDir((dir) => {
      const spool = new SpoolWriter(dir, 4 * CHUNK_SIZE);
      const body = pattern(2 * CHUNK_SIZE + 5, 9);
      spool.write(body.subarray(0, 1000));
      spool.write(body.subarray(1000));
      const pieces = [...spool.chunks()];
      assert.equal(pieces.length, 3);
      assert.deepEqual(concat(pieces), body);
      assert.equal(existsSync(dir), false, "never spilled");
      spool.discard();
    });
  });
});
