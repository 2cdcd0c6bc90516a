// Comments in src/ cite RFC sections or the project's own docs/: never a document outside this
// repository, and every docs/FILE.md#anchor they cite exists (GitHub's heading anchors).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("../../", import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");
}

test("src/ cites no document outside the repository, and every cited docs anchor exists", () => {
  const anchors = new Map<string, Set<string>>();
  const anchorsOf = (file: string) => {
    if (!anchors.has(file)) {
      const text = readFileSync(join(root, "docs", file), "utf8");
      anchors.set(file, new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => anchor(m[1]!))));
    }
    return anchors.get(file)!;
  };
  const problems: string[] = [];
  for (const path of sources(join(root, "src"))) {
    const text = readFileSync(path, "utf8");
    const where = path.slice(root.length);
    if (/\b(PROTOCOL|DESIGN)\.md\b|\bDESIGN \d/.test(text)) {
      problems.push(`${where}: cites a document outside the repo`);
    }
    for (const m of text.matchAll(/docs\/([a-z_]+\.md)#([\w-]+)/g)) {
      if (!anchorsOf(m[1]!).has(m[2]!)) problems.push(`${where}: docs/${m[1]}#${m[2]} does not exist`);
    }
  }
  assert.deepEqual(problems, []);
});
