/**
 * A throwaway self-signed certificate for the relay under test (openssl CLI), so the fuzzer reaches
 * STARTTLS and the implicit-TLS port too. Null when openssl is missing: the suites then run without
 * TLS and say so.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";

/** Writes cert.pem and key.pem into `dir`; returns their paths, or null without openssl. */
export function selfSignedCert(dir: string): { certFile: string; keyFile: string } | null {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  const r = spawnSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    "/CN=relay.chaos.test",
    "-addext",
    "subjectAltName=DNS:relay.chaos.test,IP:127.0.0.1",
  ], { encoding: "utf8" });
  return r.status === 0 ? { certFile, keyFile } : null;
}
