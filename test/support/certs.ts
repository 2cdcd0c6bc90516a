/**
 * Throwaway TLS certificates for tests, made with the `openssl` CLI: a private CA and a leaf certificate
 * for `localhost` / 127.0.0.1 signed by it (rustls, used by Deno, refuses a CA certificate used as the
 * server's own certificate, so the leaf is separate).
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Paths and PEM text of a test certificate. */
export interface TestCert {
  /** PEM file of the leaf certificate (for `localhost` and 127.0.0.1). */
  certFile: string;
  /** PEM file of the leaf's private key. */
  keyFile: string;
  /** PEM file of the CA that signed the leaf; trust it with `ca`. */
  caFile: string;
  /** Leaf certificate, PEM. */
  certPem: string;
  /** Leaf private key, PEM. */
  keyPem: string;
  /** CA certificate, PEM. */
  caPem: string;
}

let cached: TestCert | undefined;

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * Creates (once per process, then cached) a CA and a `localhost` certificate valid for two days in `dir`
 * (default: a new temporary directory).
 */
export function makeTestCert(dir?: string): TestCert {
  if (cached && dir === undefined) return cached;
  const d = dir ?? mkdtempSync(join(tmpdir(), "odmr-relay-certs-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=odmr-relay test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], d);
  openssl(["req", "-new", ...ec, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"], d);
  writeFileSync(
    join(d, "leaf.ext"),
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "",
    ].join("\n"),
  );
  openssl([
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.pem",
    "-days",
    "2",
    "-extfile",
    "leaf.ext",
  ], d);
  const cert: TestCert = {
    certFile: join(d, "cert.pem"),
    keyFile: join(d, "key.pem"),
    caFile: join(d, "ca.pem"),
    certPem: readFileSync(join(d, "cert.pem"), "utf8"),
    keyPem: readFileSync(join(d, "key.pem"), "utf8"),
    caPem: readFileSync(join(d, "ca.pem"), "utf8"),
  };
  if (dir === undefined) cached = cert;
  return cert;
}
