import process from "node:process";

/** The release version (kept equal to package.json's by a test). */
export const VERSION = "0.1.0";

/**
 * The platform this program runs on, in the release binaries' naming ("linux-x64", "linux-arm64"):
 * read at run time, so a cross-compiled binary reports its own target, not the build machine.
 */
export function platform(): string {
  return `${process.platform}-${process.arch}`;
}
