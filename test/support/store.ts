/** A real SQLite queue store in a temp directory, seeded through the store itself. */
import { databasePath, openDatabase } from "../../src/queue/db.ts";
import { type Clock, QueueStore } from "../../src/queue/store.ts";
import { cramMd5Secret } from "../../src/server/sasl/cram_md5.ts";
import { tempDir } from "./temp.ts";

/** A store on a fresh database file; `dataDir` holds it. */
export function tempStore(clock?: Clock): { store: QueueStore; dataDir: string } {
  const dataDir = tempDir("odmr-store-");
  const store = new QueueStore(openDatabase(databasePath(dataDir)), clock);
  return { store, dataDir };
}

/** Secrets for a test account without paying for scrypt. */
export function testSecrets(password: string): { cramMd5Secret: string; passwordHash: string } {
  return { cramMd5Secret: cramMd5Secret(password), passwordHash: "$scrypt$unused" };
}

/** A body source over a string or bytes. */
export function bodyOf(content: string | Uint8Array) {
  const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
  return { size: bytes.length, eightBit: bytes.some((b) => b > 127), chunks: () => [bytes] };
}

/** Minimal incoming-message fields. */
export function incoming(mailFrom: string, rcpts: string[]) {
  return {
    mailFrom,
    clientIp: "127.0.0.1",
    clientHelo: "client.test",
    tls: false,
    bodyType: null,
    smtputf8: false,
    envid: null,
    ret: null,
    recipients: rcpts.map((address) => ({
      address,
      domain: address.slice(address.lastIndexOf("@") + 1).toLowerCase(),
      notify: null,
      orcpt: null,
    })),
  };
}
