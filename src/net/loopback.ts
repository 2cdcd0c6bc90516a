/**
 * Whether a host is this machine's loopback: the one rule behind "a non-loopback httpListen needs a
 * token" (src/config/load.ts) and "with no token, the Host header must be a loopback name"
 * (src/http/auth.ts, against DNS rebinding).
 *
 * @module
 */

/** Four decimal octets (0-255, as written: no octal or hex forms), the first 127. */
const IPV4_LOOPBACK = /^127(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The canonical (WHATWG URL) spelling of an IPv4-mapped address in 127.0.0.0/8. */
const MAPPED_LOOPBACK = /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/;

/**
 * True when `host` (a name or an address literal, without a port; an IPv6 literal with or without
 * brackets) is loopback: the name `localhost` in any case and with or without the root's trailing dot
 * (RFC 6761 6.3), an IPv4 address in 127.0.0.0/8 (RFC 1122 3.2.1.3), or `::1` in any spelling and
 * IPv4-mapped 127.0.0.0/8 (RFC 4291 2.5.3, 2.5.5.2). Other names are not: they could resolve anywhere.
 */
export function isLoopback(host: string): boolean {
  let name = host.toLowerCase();
  if (name.startsWith("[") && name.endsWith("]")) name = name.slice(1, -1);
  if (name.endsWith(".") && !name.includes(":")) name = name.slice(0, -1);
  if (name === "localhost") return true;
  if (!name.includes(":")) return IPV4_LOOPBACK.test(name);
  let canonical: string;
  try {
    // The URL parser spells every IPv6 address one way (`0:0:0:0:0:0:0:1` and `::0001` are `[::1]`).
    canonical = new URL(`http://[${name}]/`).hostname;
  } catch {
    return false; // not an IPv6 address (a zone id such as `%eth0` is not loopback either)
  }
  return canonical === "[::1]" || MAPPED_LOOPBACK.test(canonical);
}
