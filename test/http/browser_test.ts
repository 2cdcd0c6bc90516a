// The status page in a real browser: Debian's chromium, headless, loads "/" from the relay app
// served on 127.0.0.1 and we check the DOM it built; a phone-sized screenshot is kept in
// test-artifacts/status_page.png. Skipped (with the reason) only when chromium is not installed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type HttpServer, serveHttp } from "../../src/runtime/http_serve.ts";
import { tempDir } from "../support/temp.ts";
import { appFor, seed, type Seeded } from "./_helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
/** A hung browser must not hang the suite. */
const BROWSER_TIMEOUT_MS = 60_000;
const ARTIFACTS = new URL("../../test-artifacts/", import.meta.url).pathname;
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`;

/** Runs chromium headless with `extra` flags on `url`; resolves with its stdout. */
function chromium(
  url: string,
  extra: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    `--user-data-dir=${tempDir("odmr-chromium-")}`,
    ...extra,
    url,
  ];
  return new Promise((resolve, reject) => {
    // Asynchronous spawn: the relay answering the browser runs on this same event loop.
    const child = spawn(CHROMIUM, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`chromium did not finish within ${BROWSER_TIMEOUT_MS} ms\n${stderr.slice(-2000)}`));
    }, BROWSER_TIMEOUT_MS);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("status page in headless chromium", { skip }, () => {
  let s: Seeded;
  let server: HttpServer;
  let url: string;

  before(async () => {
    s = seed();
    // No token on a loopback listener: the page is open, as on a default install.
    server = await serveHttp("127.0.0.1", 0, appFor(s).fetch);
    url = `http://127.0.0.1:${server.port}/`;
  });
  after(async () => {
    await server.stop();
    s.store.database.close();
  });

  test("the rendered DOM shows the seeded domains and totals", async () => {
    const { code, stdout, stderr } = await chromium(url, ["--dump-dom"]);
    assert.equal(code, 0, stderr.slice(-2000));
    assert.match(stdout, /<title>odmr-relay status<\/title>/);
    const table = /<table id="domains">([\s\S]*?)<\/table>/.exec(stdout)?.[1];
    assert.ok(table, `the domains table is in the DOM:\n${stdout.slice(0, 2000)}`);
    const rows = [...table.matchAll(/<b>([a-z0-9.-]+)<\/b>/g)].map((m) => m[1]);
    assert.deepEqual(rows, ["a.test", "b.test", "c.test"]);
    assert.match(stdout, /<b id="total-recipients">4<\/b>/);
    // The failure text with markup arrived as text, not as an element.
    assert.ok(!/<script>alert/.test(stdout));
    assert.match(stdout, /&lt;script&gt;alert\("x"\)&lt;\/script&gt; &amp; more/);
  });

  test("a phone-sized screenshot is saved as a test artifact", async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const file = join(ARTIFACTS, "status_page.png");
    const { code, stderr } = await chromium(url, [
      `--screenshot=${file}`,
      "--window-size=412,900",
      "--hide-scrollbars",
    ]);
    assert.equal(code, 0, stderr.slice(-2000));
    assert.ok(statSync(file).size > 5000, "the screenshot has content");
    const png = readFileSync(file);
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG file");
    assert.equal(png.readUInt32BE(16), 412, "412 px wide (a phone)");
  });
});
