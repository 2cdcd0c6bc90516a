/**
 * Small tmpfs mounts for the disk-full and read-only faults (root only). Every mount is registered
 * with the suite's scope at once, so it is unmounted even when the suite fails or times out; the
 * unmount is lazy (`-l`) so a process that still holds a file there cannot keep it mounted.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import type { Scope } from "./context.ts";

/** True when this process may mount (root). */
export function canMount(): boolean {
  return process.getuid?.() === 0;
}

function run(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr.trim() || `exit ${r.status}`}`);
}

/** A mounted tmpfs. */
export interface Tmpfs {
  dir: string;
  /** Remounts read-only or read-write. */
  remount(mode: "ro" | "rw"): void;
  unmount(): Promise<void>;
}

/** Mounts a tmpfs of `sizeBytes` at `dir` (created if missing). */
export function mountTmpfs(scope: Scope, dir: string, sizeBytes: number): Tmpfs {
  mkdirSync(dir, { recursive: true });
  run(["mount", "-t", "tmpfs", "-o", `size=${sizeBytes},mode=0700`, "tmpfs", dir]);
  const unmount = scope.defer(`umount ${dir}`, () => run(["umount", "-l", dir]));
  return { dir, remount: (mode) => run(["mount", "-o", `remount,${mode}`, dir]), unmount };
}

/** Bind-mounts `path` over itself read-only (a file the relay cannot write, in a writable directory). */
export function bindReadOnly(scope: Scope, path: string): () => Promise<void> {
  run(["mount", "--bind", path, path]);
  const undo = scope.defer(`umount ${path}`, () => run(["umount", "-l", path]));
  run(["mount", "-o", "remount,bind,ro", path]);
  return undo;
}
