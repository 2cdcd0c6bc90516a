/**
 * TLS configuration: load a PEM certificate and key into a `SecureContext` used by STARTTLS (RFC 3207)
 * and by implicit-TLS listeners (RFC 8314 3.3).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import * as tls from "node:tls";

/**
 * Lowest TLS version offered. Deno's rustls cannot do less than 1.2, and RFC 8996 deprecates 1.0 and 1.1,
 * so every runtime behaves the same.
 */
export const MIN_TLS_VERSION = "TLSv1.2" as const;

/** Where to find the server certificate chain and private key. */
export interface TlsFiles {
  /** PEM file with the certificate, followed by any intermediate certificates. */
  certFile: string;
  /** PEM file with the private key (PKCS#8, PKCS#1 or SEC1). */
  keyFile: string;
}

/** Certificate and key already in memory, as PEM text. */
export interface TlsPem {
  /** PEM certificate chain. */
  certPem: string;
  /** PEM private key. */
  keyPem: string;
}

function readPem(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    const reason = code === "ENOENT"
      ? "file not found"
      : code === "EACCES"
      ? "permission denied"
      : String(err);
    throw new Error(`Cannot read TLS ${what} file ${file}: ${reason}`, { cause: err });
  }
  if (!text.includes("-----BEGIN ")) {
    throw new Error(`TLS ${what} file ${file} does not contain PEM data`);
  }
  return text;
}

/**
 * Reads the PEM files and returns them. Throws an error naming the file when one is missing, unreadable
 * or not PEM.
 */
export function readTlsFiles(files: TlsFiles): TlsPem {
  return { certPem: readPem(files.certFile, "certificate"), keyPem: readPem(files.keyFile, "key") };
}

/**
 * Builds a server `SecureContext` (minimum TLS 1.2) from PEM text. Throws a clear error when the
 * certificate or key is invalid or they do not match.
 */
export function createSecureContextFromPem(pem: TlsPem, source = "the configured files"): tls.SecureContext {
  try {
    return tls.createSecureContext({ cert: pem.certPem, key: pem.keyPem, minVersion: MIN_TLS_VERSION });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`Invalid TLS certificate or key in ${source}: ${message}`, { cause: err });
  }
}

/**
 * Reads `certFile` and `keyFile` (PEM) and builds a server `SecureContext` with minimum TLS 1.2.
 * Errors name the offending file.
 */
export function loadSecureContext(files: TlsFiles): tls.SecureContext {
  const pem = readTlsFiles(files);
  return createSecureContextFromPem(pem, `${files.certFile} / ${files.keyFile}`);
}

/**
 * Options for `tls.createServer` / `new tls.TLSSocket(socket, options)` on an implicit-TLS listener
 * (RFC 8314 3.3, the ODMR port 2366 used by fetchmail's `ssl` option).
 */
export function createServerTlsOptions(secureContext: tls.SecureContext): tls.TlsOptions {
  return { secureContext, minVersion: MIN_TLS_VERSION };
}
