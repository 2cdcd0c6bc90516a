/**
 * A real DNS server on loopback (UDP, `node:dgram`) that serves zone data from a plain object, so the
 * outbound tests can point `node:dns` `Resolver.setServers()` at it. It answers MX, A and AAAA queries,
 * NXDOMAIN for unknown names, NOERROR with no answer (NODATA) for a known name without records of the
 * asked type, and can be told to answer SERVFAIL or REFUSED, or never to answer (the resolver's timeout).
 *
 * The wire format (RFC 1035 4.1) is encoded and decoded here, with name compression (RFC 1035 4.1.4)
 * understood on decode. Everything is bounded: packet size, name length, label count, pointer jumps,
 * record counts and the query log. No TCP: every answer fits in 512 octets, so TC is never set.
 *
 * @module
 */

import * as dgram from "node:dgram";
import { concat } from "../../src/queue/spool.ts";

// ---------------------------------------------------------------------------------------------------
// RFC 1035 constants
// ---------------------------------------------------------------------------------------------------

/** RFC 1035 3.2.2 TYPE A. */
export const TYPE_A = 1;
/** RFC 1035 3.2.2 TYPE MX. */
export const TYPE_MX = 15;
/** RFC 3596 2.1 TYPE AAAA. */
export const TYPE_AAAA = 28;
/** RFC 1035 3.2.4 CLASS IN. */
export const CLASS_IN = 1;

/** RFC 1035 4.1.1 RCODE values used here. */
export const RCODE_NOERROR = 0;
/** Format error: the query could not be parsed. */
export const RCODE_FORMERR = 1;
/** Server failure. */
export const RCODE_SERVFAIL = 2;
/** Name error (NXDOMAIN): the name does not exist. */
export const RCODE_NXDOMAIN = 3;
/** Refused. */
export const RCODE_REFUSED = 5;

/** RFC 1035 4.2.1: a UDP message is at most 512 octets (EDNS is not offered). */
export const MAX_UDP_MESSAGE = 512;
/** RFC 1035 2.3.4: a name is at most 255 octets on the wire. */
export const MAX_NAME_OCTETS = 255;
/** RFC 1035 2.3.4: a label is at most 63 octets. */
const MAX_LABEL_OCTETS = 63;
/** Compression pointers followed while decoding one name before the message is called malformed. */
const MAX_POINTER_JUMPS = 32;
/** Records decoded per section at most (a query has one question; answers stay tiny here). */
const MAX_RECORDS_PER_SECTION = 64;
/** Queries remembered in {@linkcode FakeDns.queries} (oldest dropped first). */
const MAX_QUERY_LOG = 1000;
/** TTL put on every answer. */
const ANSWER_TTL = 60;

const FLAG_QR = 0x8000; // RFC 1035 4.1.1: response
const FLAG_AA = 0x0400; // authoritative answer
const FLAG_RD = 0x0100; // recursion desired (copied from the query)
const FLAG_RA = 0x0080; // recursion available
const OPCODE_MASK = 0x7800;
const RCODE_MASK = 0x000f;
/** RFC 1035 4.1.4: the two top bits of a length octet mark a compression pointer. */
const POINTER_MARK = 0xc0;

// ---------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------

/** A question (RFC 1035 4.1.2). Names are lower-case, without the trailing dot; the root is `""`. */
export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

/** A resource record (RFC 1035 4.1.3) with its RDATA already encoded. */
export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: Uint8Array;
}

/** A whole message (RFC 1035 4.1). */
export interface DnsMessage {
  id: number;
  /** The 16 flag bits of the header (QR, OPCODE, AA, TC, RD, RA, Z, RCODE). */
  flags: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

/** The message could not be decoded; the server answers FORMERR or drops it. */
export class DnsFormatError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "DnsFormatError";
  }
}

/** Encodes a name as uncompressed labels (RFC 1035 3.1). Throws when a label or the name is too long. */
export function encodeName(name: string): Uint8Array {
  const out: number[] = [];
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  if (trimmed !== "") {
    for (const label of trimmed.split(".")) {
      const bytes = new TextEncoder().encode(label);
      if (bytes.length === 0 || bytes.length > MAX_LABEL_OCTETS) {
        throw new DnsFormatError(`Bad label in ${name}`);
      }
      out.push(bytes.length, ...bytes);
    }
  }
  out.push(0);
  if (out.length > MAX_NAME_OCTETS) throw new DnsFormatError(`Name too long: ${name}`);
  return new Uint8Array(out);
}

/** Reads a name at `offset`, following compression pointers (RFC 1035 4.1.4). */
export function decodeName(packet: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1; // where reading continues after the name (set at the first pointer)
  let octets = 1;
  for (let jumps = 0;;) {
    const len = byteAt(packet, pos);
    if (len === 0) {
      if (next === -1) next = pos + 1;
      break;
    }
    if ((len & POINTER_MARK) === POINTER_MARK) {
      if (++jumps > MAX_POINTER_JUMPS) throw new DnsFormatError("Too many compression pointers");
      const target = ((len & ~POINTER_MARK) << 8) | byteAt(packet, pos + 1);
      if (next === -1) next = pos + 2;
      pos = target;
      continue;
    }
    if ((len & POINTER_MARK) !== 0) throw new DnsFormatError("Reserved label type");
    if (pos + 1 + len > packet.length) throw new DnsFormatError("Label runs past the end");
    octets += len + 1;
    if (octets > MAX_NAME_OCTETS) throw new DnsFormatError("Name too long");
    labels.push(new TextDecoder().decode(packet.subarray(pos + 1, pos + 1 + len)));
    pos += len + 1;
  }
  return { name: labels.join(".").toLowerCase(), next };
}

/** Encodes a message; names are written uncompressed (always valid, RFC 1035 4.1.4 makes it optional). */
export function encodeMessage(message: DnsMessage): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new Uint8Array(12);
  const view = new DataView(header.buffer);
  view.setUint16(0, message.id);
  view.setUint16(2, message.flags);
  view.setUint16(4, message.questions.length);
  view.setUint16(6, message.answers.length);
  view.setUint16(8, message.authorities.length);
  view.setUint16(10, message.additionals.length);
  parts.push(header);
  for (const q of message.questions) parts.push(encodeName(q.name), u16(q.type), u16(q.class));
  for (const r of [...message.answers, ...message.authorities, ...message.additionals]) {
    const fixed = new Uint8Array(10);
    const v = new DataView(fixed.buffer);
    v.setUint16(0, r.type);
    v.setUint16(2, r.class);
    v.setUint32(4, r.ttl);
    v.setUint16(8, r.data.length);
    parts.push(encodeName(r.name), fixed, r.data);
  }
  return concat(parts);
}

/** Decodes a message, bounds-checking every read. Throws {@linkcode DnsFormatError}. */
export function decodeMessage(packet: Uint8Array): DnsMessage {
  if (packet.length < 12) throw new DnsFormatError("Shorter than a header");
  const counts = [4, 6, 8, 10].map((o) => u16At(packet, o));
  if (counts.some((c) => c > MAX_RECORDS_PER_SECTION)) throw new DnsFormatError("Too many records");
  const [qd, an, ns, ar] = counts as [number, number, number, number];
  let pos = 12;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    const { name, next } = decodeName(packet, pos);
    questions.push({ name, type: u16At(packet, next), class: u16At(packet, next + 2) });
    pos = next + 4;
  }
  const section = (count: number): DnsRecord[] => {
    const records: DnsRecord[] = [];
    for (let i = 0; i < count; i++) {
      const { name, next } = decodeName(packet, pos);
      const length = u16At(packet, next + 8);
      const start = next + 10;
      if (start + length > packet.length) throw new DnsFormatError("RDATA runs past the end");
      records.push({
        name,
        type: u16At(packet, next),
        class: u16At(packet, next + 2),
        ttl: (u16At(packet, next + 4) << 16 >>> 0) + u16At(packet, next + 6),
        data: packet.slice(start, start + length),
      });
      pos = start + length;
    }
    return records;
  };
  const answers = section(an);
  const authorities = section(ns);
  const additionals = section(ar);
  return { id: u16At(packet, 0), flags: u16At(packet, 2), questions, answers, authorities, additionals };
}

/** RDATA of an MX record (RFC 1035 3.3.9): PREFERENCE then EXCHANGE (`"."` or `""` for a null MX). */
export function mxData(preference: number, exchange: string): Uint8Array {
  return concat([u16(preference), encodeName(exchange === "." ? "" : exchange)]);
}

/** RDATA of an A record (RFC 1035 3.4.1). */
export function aData(address: string): Uint8Array {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`Not an IPv4 address: ${address}`);
  }
  return new Uint8Array(parts);
}

/** RDATA of an AAAA record (RFC 3596 2.2), from the usual text form with optional `::`. */
export function aaaaData(address: string): Uint8Array {
  const halves = address.split("::");
  if (halves.length > 2) throw new Error(`Not an IPv6 address: ${address}`);
  const groups = (text: string | undefined) => (text === undefined || text === "" ? [] : text.split(":"));
  const left = groups(halves[0]);
  const right = groups(halves[1]);
  const fill = halves.length === 2 ? 8 - left.length - right.length : 0;
  const all = [...left, ...Array<string>(Math.max(0, fill)).fill("0"), ...right];
  if (all.length !== 8 || all.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) {
    throw new Error(`Not an IPv6 address: ${address}`);
  }
  return concat(all.map((g) => u16(parseInt(g, 16))));
}

// ---------------------------------------------------------------------------------------------------
// Zone data and the server
// ---------------------------------------------------------------------------------------------------

/** How a name answers one record type instead of with records. */
export type Misbehaviour = "servfail" | "refused" | "timeout";

/** One MX record: preference and exchange (`"."` makes a null MX, RFC 7505). */
export interface MxRecord {
  preference: number;
  exchange: string;
}

/**
 * What one name holds. A type that is absent answers NOERROR with no records (NODATA). A name that is
 * not in the zone at all answers NXDOMAIN; so does one with `nxdomain: true`.
 */
export interface ZoneEntry {
  mx?: MxRecord[] | Misbehaviour;
  a?: string[] | Misbehaviour;
  aaaa?: string[] | Misbehaviour;
  /** Answer NXDOMAIN for every type. */
  nxdomain?: true;
  /** Misbehave for every type (overrides the records). */
  all?: Misbehaviour;
}

/** Zone data: lower-case names without trailing dot. */
export type Zone = Record<string, ZoneEntry>;

/** One query the server received. */
export interface SeenQuery {
  name: string;
  type: number;
}

/** A running fake DNS server. */
export interface FakeDns {
  /** `"127.0.0.1:PORT"`, the form `Resolver.setServers()` takes. */
  server: string;
  /** Its UDP port. */
  port: number;
  /** The zone; change it between lookups if a test wants to. */
  zone: Zone;
  /** Queries in arrival order (bounded to the last 1000). */
  queries: SeenQuery[];
  /** Stops the server. */
  close(): Promise<void>;
}

/** Starts a fake DNS server on 127.0.0.1 (a free UDP port) serving `zone`. */
export async function startFakeDns(zone: Zone): Promise<FakeDns> {
  const socket = dgram.createSocket("udp4");
  const queries: SeenQuery[] = [];
  const state = { zone };
  socket.on("message", (packet: Uint8Array, peer: dgram.RemoteInfo) => {
    const reply = answer(new Uint8Array(packet), state.zone, queries);
    if (reply !== null) socket.send(reply, peer.port, peer.address);
  });
  socket.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  const port = socket.address().port;
  return {
    server: `127.0.0.1:${port}`,
    port,
    get zone() {
      return state.zone;
    },
    set zone(z: Zone) {
      state.zone = z;
    },
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** The reply to one query packet, or `null` to stay silent (undecodable junk, or a "timeout" entry). */
function answer(packet: Uint8Array, zone: Zone, log: SeenQuery[]): Uint8Array | null {
  if (packet.length > MAX_UDP_MESSAGE * 8) return null;
  let query: DnsMessage;
  try {
    query = decodeMessage(packet);
  } catch {
    if (packet.length < 2) return null;
    return encodeMessage(reply(u16At(packet, 0), 0, [], RCODE_FORMERR, []));
  }
  const question = query.questions[0];
  // RFC 1035 4.1.1: only standard queries (OPCODE 0) with exactly one question are served here.
  if ((query.flags & FLAG_QR) !== 0) return null;
  if (question === undefined || query.questions.length !== 1 || (query.flags & OPCODE_MASK) !== 0) {
    return encodeMessage(reply(query.id, query.flags, query.questions, RCODE_FORMERR, []));
  }
  log.push({ name: question.name, type: question.type });
  if (log.length > MAX_QUERY_LOG) log.shift();
  const entry = zone[question.name];
  if (entry === undefined || entry.nxdomain) {
    return encodeMessage(reply(query.id, query.flags, [question], RCODE_NXDOMAIN, []));
  }
  const held = entry.all ?? heldFor(entry, question.type);
  if (held === "timeout") return null;
  if (held === "servfail" || held === "refused") {
    const rcode = held === "servfail" ? RCODE_SERVFAIL : RCODE_REFUSED;
    return encodeMessage(reply(query.id, query.flags, [question], rcode, []));
  }
  const records = (held ?? []).map((data) => ({
    name: question.name,
    type: question.type,
    class: CLASS_IN,
    ttl: ANSWER_TTL,
    data,
  }));
  return encodeMessage(reply(query.id, query.flags, [question], RCODE_NOERROR, records));
}

/** The RDATA list (or misbehaviour) a name holds for a type; `undefined` = none (NODATA). */
function heldFor(entry: ZoneEntry, type: number): Uint8Array[] | Misbehaviour | undefined {
  const map = <T>(value: T[] | Misbehaviour | undefined, f: (v: T) => Uint8Array) =>
    typeof value === "string" ? value : value?.map(f);
  if (type === TYPE_MX) return map(entry.mx, (r) => mxData(r.preference, r.exchange));
  if (type === TYPE_A) return map(entry.a, aData);
  if (type === TYPE_AAAA) return map(entry.aaaa, aaaaData);
  return undefined;
}

function reply(
  id: number,
  queryFlags: number,
  questions: DnsQuestion[],
  rcode: number,
  answers: DnsRecord[],
): DnsMessage {
  const flags = FLAG_QR | FLAG_AA | FLAG_RA | (queryFlags & FLAG_RD) | (rcode & RCODE_MASK);
  return { id, flags, questions, answers, authorities: [], additionals: [] };
}

// ---------------------------------------------------------------------------------------------------

function byteAt(packet: Uint8Array, pos: number): number {
  const b = packet[pos];
  if (b === undefined) throw new DnsFormatError("Message truncated");
  return b;
}

function u16At(packet: Uint8Array, pos: number): number {
  return (byteAt(packet, pos) << 8) | byteAt(packet, pos + 1);
}

function u16(value: number): Uint8Array {
  return new Uint8Array([(value >> 8) & 0xff, value & 0xff]);
}
