/**
 * Fills a file system on purpose: a file of zeros grown in 1 MiB writes until only `leaveBytes`
 * remain, or until ENOSPC. Removing the file gives the space back at once.
 */
import { closeSync, openSync, rmSync, statfsSync, writeSync } from "node:fs";

const BLOCK = new Uint8Array(1 << 20);

/** Free bytes for an unprivileged writer on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** Grows `path` until at most `leaveBytes` are free (0: until the disk is full). Returns its size. */
export function fillDisk(path: string, leaveBytes: number, dir: string): number {
  const fd = openSync(path, "a");
  let written = 0;
  try {
    for (;;) {
      const free = freeBytes(dir);
      if (free <= leaveBytes) break;
      const n = Math.min(BLOCK.length, free - leaveBytes);
      try {
        written += writeSync(fd, BLOCK, 0, n);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
        throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

/** Removes the filler. */
export function freeDisk(path: string): void {
  rmSync(path, { force: true });
}
