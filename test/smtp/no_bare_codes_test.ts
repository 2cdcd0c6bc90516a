/**
 * One vocabulary of reply codes (DESIGN.md 4, seam 4): outside src/smtp/codes.ts no file in src/ writes
 * a specific SMTP reply code as a number. Comparisons with a class boundary (`code >= 200 && code < 300`,
 * `code >= 500`) are allowed; `code === 453`, `code: 504`, `?? 550`, `[500, 502].includes(...)`,
 * `define(250, ...)` and reply text such as `"250 "` or `/^250 /` are not: they use the named codes.
 *
 * The check reads source text line by line with comments removed. It looks for numbers in a reply-code
 * context only, so limits such as `512` or HTTP statuses such as `404` are not flagged.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SRC = join(ROOT, "src");
/** The vocabulary itself. */
const VOCABULARY = new Set(["src/smtp/codes.ts"]);

const CODE = String.raw`[2-5]\d\d`;
/** Patterns that put a three-digit reply code in a reply-code context; group 1 is the number. */
const RULES: { name: string; pattern: RegExp; allow?: (n: number, match: RegExpExecArray) => boolean }[] = [
  {
    // reply.code === 250, code !== 220, lastCode ?? 550, code: 504, last_code, 451, const CodeX = 451
    name: "compared with or assigned to a code",
    pattern: new RegExp(
      String.raw`\b\w*code\w*\b[\s)]*(?:===|!==|==|!=|\?\?|:|,|=(?![=>]))\s*(${CODE})\b`,
      "gi",
    ),
  },
  {
    name: "compared with a code (number first)",
    pattern: new RegExp(String.raw`\b(${CODE})\s*(?:===|!==|==|!=)\s*[\w.]*code`, "gi"),
  },
  {
    // reply.code >= 500 and code < 300 are class boundaries; code >= 452 is not.
    name: "ordered against a code, not at a class boundary",
    pattern: new RegExp(String.raw`\b\w*code\w*\b[\s)]*(?:<=?|>=?)\s*(${CODE})\b`, "gi"),
    allow: (n) => n % 100 === 0,
  },
  {
    name: "a list of codes",
    pattern: new RegExp(String.raw`\[\s*(${CODE})(?:\s*,\s*${CODE})*\s*\]\s*\.includes`, "g"),
  },
  { name: "a case label", pattern: new RegExp(String.raw`\bcase\s+(${CODE})\s*:`, "g") },
  { name: "a reply built by hand", pattern: new RegExp(String.raw`\bdefine\(\s*(${CODE})\b`, "g") },
  {
    // "250 ok", '250-', `250 ${x}`, /^250 /, `${a}250-${b}`: the start of a reply line in text.
    name: "reply text starting with a code",
    pattern: new RegExp(String.raw`(?:["'\x60]|\/\^|\})(${CODE})[ -]`, "g"),
  },
];

/** The line without its comments (`//` after white space, and `/* ... *\/` blocks). */
function stripComments(lines: string[]): string[] {
  let inBlock = false;
  return lines.map((raw) => {
    let line = raw;
    if (inBlock) {
      const end = line.indexOf("*/");
      if (end < 0) return "";
      inBlock = false;
      line = line.slice(end + 2);
    }
    line = line.replace(/(^|\s)\/\*.*?\*\//g, "$1");
    const open = line.search(/(^|\s)\/\*/);
    if (open >= 0) {
      inBlock = true;
      line = line.slice(0, open);
    }
    const comment = line.search(/(^|\s)\/\//);
    return comment >= 0 ? line.slice(0, comment) : line;
  });
}

/** Each bare reply code in `text`, as `line: rule: source line`. */
function bareCodes(text: string): string[] {
  const found: string[] = [];
  const lines = text.split("\n");
  stripComments(lines).forEach((code, i) => {
    for (const rule of RULES) {
      rule.pattern.lastIndex = 0;
      for (let m = rule.pattern.exec(code); m !== null; m = rule.pattern.exec(code)) {
        if (rule.allow?.(Number(m[1]), m)) continue;
        found.push(`${i + 1}: ${rule.name}: ${lines[i]!.trim()}`);
      }
    }
  });
  return found;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

describe("no bare reply codes in src/", () => {
  test("the check flags code literals and lets other numbers through", () => {
    const flagged = [
      "if (reply.code === 453) return;",
      "if (250 === reply.code) ok();",
      "return { ok: false, code: 504, text };",
      "const code = r.lastCode ?? 550;",
      '"last_code = COALESCE(last_code, 451)"',
      "export const Code451Mine = 451;",
      "if (reply.code >= 452) retry();",
      "if ([500, 502].includes(ehlo.code)) helo();",
      "case 421:",
      'const C250X = define(250, "2.0.0", "Ok");',
      "if (!/^250 /.test(last)) return;",
      'write("250-PIPELINING\\r\\n");',
      "const line = `${head}250-${keyword}`;",
      "  readonly code: 504;",
    ];
    for (const line of flagged) assert.equal(bareCodes(line).length, 1, line);
    const allowed = [
      "if (reply.code >= 200 && reply.code < 300) ok();",
      "const permanent = answer.code >= 500;",
      "if (reply.code === Code453NoMail) return;",
      "export const DEFAULT_MAX_LINE_LENGTH = 512;",
      'return errorResponse(c, 404, "No such message");',
      "const limit = Math.min(filter.limit ?? 50, 500);",
      "// if (reply.code === 453) was the old way",
      "/** `453 4.2.0 You have no mail` (RFC 2645 5.2.1). */",
      "const cls = Math.floor(reply.code / 100);",
      'smtpMaxRecipients: count(1000, 100, "Recipients per message; more get 452 4.5.3"),',
    ];
    for (const line of allowed) assert.deepEqual(bareCodes(line), [], line);
    assert.deepEqual(bareCodes("/*\n code === 453\n */\nx();"), []);
  });

  const files = sourceFiles(SRC);
  test("there are source files to check", () => {
    assert.ok(files.length > 50);
  });

  test("every specific reply code outside src/smtp/codes.ts is a named constant", () => {
    const problems: string[] = [];
    for (const file of files) {
      const name = relative(ROOT, file).replaceAll("\\", "/");
      if (VOCABULARY.has(name)) continue;
      for (const hit of bareCodes(readFileSync(file, "utf8"))) problems.push(`${name}:${hit}`);
    }
    assert.deepEqual(problems, [], `use the named codes of src/smtp/codes.ts:\n${problems.join("\n")}`);
  });
});
