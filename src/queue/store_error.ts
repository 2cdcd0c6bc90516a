/**
 * The error the store modules throw for an operator's mistake, and the canonical domain key they
 * all use.
 *
 * @module
 */
import { isValidDomain } from "../smtp/domain.ts";
import { canonicalDomain } from "../smtp/idna.ts";

/** An error the caller should show as-is (admin commands). */
export class StoreError extends Error {
  constructor(message: string, readonly kind: "not-found" | "conflict" | "invalid" = "invalid") {
    super(message);
    this.name = "StoreError";
  }
}

/**
 * A domain name from an operator (CLI, HTTP API) in the queue's canonical form: lower-case A-labels,
 * so `böb.test` and `xn--bb-fka.test` are one domain (RFC 5890 2.3.2.1).
 */
export function domainKeyOrThrow(name: string): string {
  const key = canonicalDomain(name.trim());
  if (key === null || !isValidDomain(key) || !key.includes(".")) {
    throw new StoreError(`Not a valid domain name: ${name}`);
  }
  return key;
}
