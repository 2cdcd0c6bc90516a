/**
 * Holds one incoming message body while DATA streams in, without keeping large messages in memory:
 * bytes collect in memory up to `memoryLimit`, then go to a temporary file under the spool
 * directory. At commit the store reads it back in `CHUNK_SIZE` pieces inside one transaction, so
 * nothing half-written ever reaches the queue. Leftover spool files (a crash mid-DATA) are removed
 * at start by `cleanSpoolDir`.
 *
 * Memory: once spilled, `write` hands the caller's bytes straight to the file (no copy), and
 * `chunks` reads the file back into two reused buffers, so a large body allocates nothing per chunk.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";

/** Size of a stored body chunk (row in message_chunks) and of reads from the spool file. */
export const CHUNK_SIZE = 256 * 1024;

/** A body being received. */
export class SpoolWriter {
  readonly #dir: string;
  readonly #memoryLimit: number;
  #parts: Uint8Array[] = [];
  #memoryBytes = 0;
  #fd: number | null = null;
  #path: string | null = null;
  #size = 0;
  #eightBit = false;

  constructor(dir: string, memoryLimit = CHUNK_SIZE) {
    this.#dir = dir;
    this.#memoryLimit = memoryLimit;
  }

  /** Bytes written so far. */
  get size(): number {
    return this.#size;
  }

  /** True when an octet above 127 was written (RFC 6152 8-bit content). */
  get eightBit(): boolean {
    return this.#eightBit;
  }

  /**
   * Appends bytes. They are used only during the call (copied while the body is small enough to stay
   * in memory, written to the spool file at once otherwise), so the caller may reuse its buffer, and may
   * pass short-lived views such as `DataReader` bodies.
   */
  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (!this.#eightBit) {
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i]! > 127) {
          this.#eightBit = true;
          break;
        }
      }
    }
    this.#size += bytes.length;
    if (this.#fd === null && this.#memoryBytes + bytes.length <= this.#memoryLimit) {
      this.#parts.push(bytes.slice());
      this.#memoryBytes += bytes.length;
      return;
    }
    if (this.#fd === null) this.#spill();
    writeAll(this.#fd!, bytes);
  }

  #spill(): void {
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    this.#path = `${this.#dir}/${Date.now()}-${randomBytes(6).toString("hex")}.spool`;
    this.#fd = openSync(this.#path, "w+", 0o600);
    for (const part of this.#parts) writeAll(this.#fd, part);
    this.#parts = [];
    this.#memoryBytes = 0;
  }

  /**
   * The body in pieces of at most CHUNK_SIZE bytes, read back in order (synchronously).
   *
   * Lifetime: for a spilled body the pieces are views of two buffers used in turn, so a piece stays
   * valid until the iteration AFTER the next one: a consumer may look one piece ahead (the store reads
   * the second piece before it binds the first, to decide whether the body fits inline) but must use
   * or copy each piece before requesting the one after that. SQLite binds copy the bytes. Pieces of a
   * body kept in memory are never reused.
   */
  *chunks(): Generator<Uint8Array> {
    if (this.#fd === null) {
      yield* joinInto(this.#parts, CHUNK_SIZE);
      return;
    }
    const buffers: Uint8Array[] = [];
    let turn = 0;
    let position = 0;
    while (position < this.#size) {
      const buffer = buffers[turn] ??= new Uint8Array(CHUNK_SIZE);
      turn ^= 1;
      let filled = 0;
      while (filled < CHUNK_SIZE && position + filled < this.#size) {
        const n = readSync(this.#fd, buffer, filled, CHUNK_SIZE - filled, position + filled);
        if (n === 0) throw new Error("Spool file is shorter than what was written");
        filled += n;
      }
      position += filled;
      yield buffer.subarray(0, filled);
    }
  }

  /** Deletes the temporary file, if any. Safe to call twice. */
  discard(): void {
    if (this.#fd !== null) {
      closeSync(this.#fd);
      this.#fd = null;
    }
    if (this.#path !== null) {
      rmSync(this.#path, { force: true });
      this.#path = null;
    }
    this.#parts = [];
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
}

function* joinInto(parts: Uint8Array[], size: number): Generator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for (const part of parts) {
    pending.push(part);
    pendingBytes += part.length;
    if (pendingBytes >= size) {
      const joined = concat(pending, pendingBytes);
      let offset = 0;
      while (joined.length - offset >= size) {
        yield joined.subarray(offset, offset + size);
        offset += size;
      }
      pending = offset < joined.length ? [joined.subarray(offset)] : [];
      pendingBytes = joined.length - offset;
    }
  }
  if (pendingBytes > 0) yield concat(pending, pendingBytes);
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[], total = parts.reduce((n, p) => n + p.length, 0)): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Removes spool files left by a crash; returns how many were removed. */
export function cleanSpoolDir(dir: string): number {
  let removed = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (name.endsWith(".spool")) {
      rmSync(`${dir}/${name}`, { force: true });
      removed++;
    }
  }
  return removed;
}
