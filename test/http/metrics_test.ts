// GET /metrics checked line by line with a small parser of the Prometheus text format 0.0.4.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { escapeLabelValue } from "../../src/http/metrics.ts";
import { appFor, seed, T0 } from "./_helpers.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Parsed {
  types: Map<string, string>;
  helps: Map<string, string>;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Parses `{a="x",b="y"}` starting at text[0] === "{"; returns labels and the rest. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  while (text[i] !== "}") {
    const eq = text.indexOf("=", i);
    assert.ok(eq > i, `line ${line}: label without "="`);
    const name = text.slice(i, eq);
    assert.match(name, LABEL_NAME, `line ${line}: bad label name ${name}`);
    assert.ok(!name.startsWith("__"), `line ${line}: reserved label name ${name}`);
    assert.equal(text[eq + 1], '"', `line ${line}: label value must be quoted`);
    let value = "";
    let j = eq + 2;
    for (;; j++) {
      const ch = text[j];
      assert.ok(ch !== undefined, `line ${line}: unterminated label value`);
      assert.notEqual(ch, "\n", `line ${line}: raw newline in a label value`);
      if (ch === '"') break;
      if (ch === "\\") {
        const next = text[++j];
        assert.ok(next === "\\" || next === '"' || next === "n", `line ${line}: bad escape \\${next}`);
        value += next === "n" ? "\n" : next;
      } else value += ch;
    }
    assert.ok(!(name in labels), `line ${line}: duplicate label ${name}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else assert.equal(text[i], "}", `line ${line}: expected "," or "}" after a label`);
  }
  return { labels, rest: text.slice(i + 1) };
}

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  assert.match(text, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `line ${line}: bad value ${text}`);
  return Number(text);
}

/** Parses exposition text, asserting the format rules as it goes. */
function parseExposition(text: string): Parsed {
  assert.ok(text.endsWith("\n"), "the exposition ends with a line feed");
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  const samples: Sample[] = [];
  const seenSeries = new Set<string>();
  const lines = text.slice(0, -1).split("\n");
  let current: string | null = null; // the family whose samples may follow
  const finished = new Set<string>();
  lines.forEach((raw, index) => {
    const line = index + 1;
    assert.notEqual(raw, "", `line ${line}: empty line`);
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(raw);
      if (!m) return; // other comments are allowed
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      assert.match(name, METRIC_NAME, `line ${line}: bad metric name`);
      if (current !== name && current !== null) finished.add(current);
      assert.ok(!finished.has(name), `line ${line}: ${name} appears in two separate groups`);
      current = name;
      if (kind === "HELP") {
        assert.ok(!helps.has(name), `line ${line}: second HELP for ${name}`);
        assert.ok(!/\\[^\\n]/.test(rest.replace(/\\\\/g, "")), `line ${line}: bad escape in HELP`);
        helps.set(name, rest);
      } else {
        assert.ok(!types.has(name), `line ${line}: second TYPE for ${name}`);
        assert.ok(
          ["counter", "gauge", "histogram", "summary", "untyped"].includes(rest),
          `line ${line}: bad type ${rest}`,
        );
        assert.ok(
          !samples.some((s) => s.name === name),
          `line ${line}: TYPE for ${name} after its samples`,
        );
        types.set(name, rest);
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw);
    assert.ok(nameMatch, `line ${line}: sample without a metric name: ${raw}`);
    const name = nameMatch[0];
    let rest = raw.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, line));
    const parts = rest.split(" ");
    assert.equal(parts[0], "", `line ${line}: expected one space before the value`);
    assert.ok(parts.length === 2 || parts.length === 3, `line ${line}: expected value [timestamp]`);
    const value = parseValue(parts[1]!, line);
    if (parts[2] !== undefined) assert.match(parts[2], /^-?\d+$/, `line ${line}: bad timestamp`);
    assert.equal(current, name, `line ${line}: sample of ${name} outside its HELP/TYPE group`);
    assert.ok(types.has(name), `line ${line}: sample of ${name} has no TYPE`);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!seenSeries.has(series), `line ${line}: duplicate series ${series}`);
    seenSeries.add(series);
    samples.push({ name, labels, value });
  });
  return { types, helps, samples };
}

function sample(parsed: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  return parsed.samples.find((s) =>
    s.name === name && Object.keys(labels).length === Object.keys(s.labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value;
}

describe("GET /metrics", () => {
  test("every line is valid exposition format with HELP and TYPE for every metric", async () => {
    const r = await appFor(seed()).request("/metrics");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const parsed = parseExposition(await r.text());
    assert.ok(parsed.samples.length > 20);
    for (const name of parsed.types.keys()) {
      assert.ok(name.startsWith("odmr_relay_"), `${name} has the odmr_relay_ prefix`);
      assert.ok(parsed.helps.has(name), `${name} has HELP`);
      assert.equal(
        parsed.types.get(name) === "counter",
        name.endsWith("_total"),
        `${name}: _total iff counter`,
      );
    }
  });

  test("reports the relay's counters and the per-domain queue", async () => {
    const s = seed();
    const parsed = parseExposition(await (await appFor(s).request("/metrics")).text());
    const expect: [string, Record<string, string>, number][] = [
      ["odmr_relay_uptime_seconds", {}, 90],
      ["odmr_relay_start_time_seconds", {}, (T0 - 90_000) / 1000],
      ["odmr_relay_connections_total", { listener: "smtp", result: "accepted" }, 2],
      ["odmr_relay_connections_total", { listener: "odmr", result: "rejected-limit" }, 1],
      ["odmr_relay_connections_total", { listener: "odmrs", result: "refused-shutdown" }, 1],
      ["odmr_relay_messages_rejected_total", { reason: "size" }, 1],
      ["odmr_relay_active_sessions", { listener: "smtp" }, 2],
      ["odmr_relay_active_sessions", { listener: "odmr" }, 1],
      ["odmr_relay_messages_accepted_total", {}, 3],
      ["odmr_relay_messages_rejected_total", { reason: 'weird "reason"\\with\nnewline' }, 1],
      ["odmr_relay_received_bytes_total", {}, 12345],
      ["odmr_relay_atrn_sessions_total", { outcome: "turned" }, 1],
      ["odmr_relay_atrn_sessions_total", { outcome: "busy" }, 0],
      ["odmr_relay_recipients_total", { result: "delivered" }, 4],
      ["odmr_relay_recipients_total", { result: "failed" }, 0],
      ["odmr_relay_dsns_sent_total", {}, 1],
      ["odmr_relay_auth_failures_total", { reason: "bad-credentials" }, 2],
      ["odmr_relay_queue_messages", {}, 4],
      ["odmr_relay_domain_queued_recipients", { domain: "a.test" }, 2],
      ["odmr_relay_domain_queued_recipients", { domain: "b.test" }, 2],
      ["odmr_relay_domain_queued_recipients", { domain: "c.test" }, 0],
      ["odmr_relay_domain_oldest_queued_age_seconds", { domain: "a.test" }, 3600],
      ["odmr_relay_domain_oldest_queued_age_seconds", { domain: "c.test" }, 0],
      ["odmr_relay_domain_held", { domain: "a.test" }, 0],
      ["odmr_relay_domain_last_atrn_timestamp_seconds", { domain: "b.test" }, (T0 - 120_000) / 1000],
    ];
    const build = parsed.samples.find((x) => x.name === "odmr_relay_build_info")!;
    assert.equal(build.value, 1);
    assert.equal(build.labels.version, "9.9.9-test");
    assert.match(build.labels.runtime!, /^(deno|bun) \d/);
    for (const [name, labels, value] of expect) {
      assert.equal(sample(parsed, name, labels), value, `${name} ${JSON.stringify(labels)}`);
    }
    assert.ok(sample(parsed, "odmr_relay_process_resident_memory_bytes")! > 1024 * 1024);
    assert.ok(sample(parsed, "odmr_relay_domain_queued_bytes", { domain: "b.test" })! > 512 * 1024);
    assert.ok(sample(parsed, "odmr_relay_queue_size_bytes")! > 512 * 1024);
    // A label value with a quote, a backslash and a newline is escaped on the wire.
    const text = await (await appFor(s).request("/metrics")).text();
    assert.ok(
      text.includes('odmr_relay_messages_rejected_total{reason="weird \\"reason\\"\\\\with\\nnewline"} 1'),
    );
  });

  test("a fresh relay still declares every metric", async () => {
    const s = seed();
    const full = parseExposition(await (await appFor(s).request("/metrics")).text());
    s.state.connections.values.clear();
    s.state.authFailures.values.clear();
    s.state.messages.values.clear();
    const empty = parseExposition(await (await appFor(s).request("/metrics")).text());
    assert.deepEqual([...empty.types.keys()], [...full.types.keys()]);
  });

  test("label escaping", () => {
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.equal(escapeLabelValue("plain"), "plain");
  });

  test("the parser rejects what Prometheus would", () => {
    const bad = [
      "x 1", // no TYPE
      '# TYPE x counter\nx{a="1"} one\n',
      '# TYPE x gauge\nx{a="un\\terminated} 1\n',
      '# TYPE x gauge\nx{a="1",a="2"} 1\n',
      "# TYPE x gauge\n# TYPE x gauge\nx 1\n",
      "# TYPE x gauge\nx 1\nx 2\n",
    ];
    for (const text of bad) {
      assert.throws(
        () => parseExposition(text.endsWith("\n") ? text : text + "\n"),
        assert.AssertionError,
        text,
      );
    }
  });
});
