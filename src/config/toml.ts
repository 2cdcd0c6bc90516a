/**
 * A small TOML reader for config files: `key = value` pairs, `[table]` headers (one level),
 * basic and literal strings, integers, floats, booleans, arrays of those, and comments.
 * That is all odmr-relay's config uses; anything else is an error naming the line.
 */

/** A parsed document: top-level keys and one level of tables. */
export type TomlValue = string | number | boolean | TomlValue[];
export type TomlDocument = Record<string, TomlValue | Record<string, TomlValue>>;

/** Parses TOML text; throws an Error whose message names the line. */
export function parseToml(text: string): TomlDocument {
  const doc: TomlDocument = {};
  let table: Record<string, TomlValue> | TomlDocument = doc;
  const lines = text.split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const line = stripComment(rawLine).trim();
    if (line === "") return;
    const fail = (why: string): never => {
      throw new Error(`line ${index + 1}: ${why}`);
    };
    const header = /^\[\s*([A-Za-z0-9_-]+)\s*\]$/.exec(line);
    if (header) {
      const name = header[1]!;
      if (name in doc) fail(`table [${name}] defined twice`);
      table = {};
      doc[name] = table as Record<string, TomlValue>;
      return;
    }
    const pair = /^([A-Za-z0-9_-]+|"[^"]*")\s*=\s*(.+)$/.exec(line);
    if (!pair) fail("expected `key = value` or `[table]`");
    const key = pair![1]!.replace(/^"|"$/g, "");
    if (key in table) fail(`key ${key} defined twice`);
    const { value, rest } = parseValue(pair![2]!.trim(), fail);
    if (rest.trim() !== "") fail(`unexpected text after the value: ${rest.trim()}`);
    (table as Record<string, TomlValue>)[key] = value;
  });
  return doc;
}

function stripComment(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") return line.slice(0, i);
  }
  return line;
}

function parseValue(text: string, fail: (why: string) => never): { value: TomlValue; rest: string } {
  if (text.startsWith('"')) {
    let out = "";
    for (let i = 1; i < text.length; i++) {
      const c = text[i]!;
      if (c === '"') return { value: out, rest: text.slice(i + 1) };
      if (c === "\\") {
        const e = text[++i];
        const map: Record<string, string> = { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\" };
        if (e === undefined || !(e in map)) fail(`unsupported escape \\${e ?? ""}`);
        out += map[e!];
      } else out += c;
    }
    fail("unterminated string");
  }
  if (text.startsWith("'")) {
    const end = text.indexOf("'", 1);
    if (end < 0) fail("unterminated string");
    return { value: text.slice(1, end), rest: text.slice(end + 1) };
  }
  if (text.startsWith("[")) {
    const items: TomlValue[] = [];
    let rest = text.slice(1).trim();
    while (!rest.startsWith("]")) {
      if (rest === "") fail("unterminated array");
      const item = parseValue(rest, fail);
      items.push(item.value);
      rest = item.rest.trim();
      if (rest.startsWith(",")) rest = rest.slice(1).trim();
      else if (!rest.startsWith("]")) fail("expected , or ] in array");
    }
    return { value: items, rest: rest.slice(1) };
  }
  const bare = /^([^\s,\]]+)(.*)$/.exec(text);
  if (!bare) fail("missing value");
  const token = bare![1]!;
  if (token === "true" || token === "false") return { value: token === "true", rest: bare![2]! };
  const num = token.replaceAll("_", "");
  if (/^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(num)) return { value: Number(num), rest: bare![2]! };
  return fail(`cannot read value ${token} (quote strings)`);
}
