/**
 * The unit an attacker controls, for per-address limits (connection slots, AUTH failures).
 *
 * @module
 */

/**
 * Reduce an address to the unit an attacker controls: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 to its
 * /64 prefix, because one host usually owns a whole /64 and could otherwise rotate addresses freely.
 * Anything unparseable is returned lower-cased, unchanged.
 */
export function addressKey(ip: string): string {
  let addr = ip.trim().toLowerCase();
  if (addr.startsWith("[") && addr.endsWith("]")) addr = addr.slice(1, -1);
  const zone = addr.indexOf("%");
  if (zone >= 0) addr = addr.slice(0, zone);
  if (!addr.includes(":")) return addr;
  const mapped = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(addr);
  if (mapped) return mapped[1]!;
  const halves = addr.split("::");
  if (halves.length > 2) return addr;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return addr;
  const groups = [...head, ...new Array<string>(missing).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return addr;
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":") + "::/64";
}
