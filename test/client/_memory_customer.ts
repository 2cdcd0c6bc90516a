/**
 * Shared pieces of the client unit tests that run over an in-memory pipe (src/net/memory_connection.ts):
 * the test's end playing the customer's SMTP server, the message and capability builders, the timeouts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import type { ClientTimeouts } from "../../src/client/transaction.ts";
import type { DeliverableMessage } from "../../src/client/types.ts";
import { ConnectionClosedError } from "../../src/net/errors.ts";
import type { MemoryConnection } from "../../src/net/memory_connection.ts";
import { type Capabilities, parseEhloReply } from "../../src/smtp/ehlo.ts";

/** Every wait of the test and of the client; nothing here should take more than a few ms. */
export const WAIT_MS = 2000;

/** The client's timeouts in these tests: all WAIT_MS. */
export const timeouts: ClientTimeouts = {
  greetingMs: WAIT_MS,
  commandMs: WAIT_MS,
  dataInitMs: WAIT_MS,
  dataBlockMs: WAIT_MS,
  dataTermMs: WAIT_MS,
};

const decoder = new TextDecoder();

/** Lets every pending microtask run: whatever the client would write next without a reply is written. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The test's end of the pipe, playing the customer's SMTP server. */
export class MemoryCustomer {
  constructor(readonly conn: MemoryConnection) {}

  /** The next line the client sent, without its CRLF. */
  read(): Promise<string> {
    return this.conn.readLine({ timeoutMs: WAIT_MS, maxLength: 1 << 20 });
  }

  /** Reads the next line and checks it is `line`. */
  async expect(line: string): Promise<void> {
    assert.equal(await this.read(), line);
  }

  /** The client's next write as it arrived (in memory one write is one chunk). */
  async chunk(): Promise<string> {
    return decoder.decode(await this.conn.readChunk({ timeoutMs: WAIT_MS }));
  }

  /** Writes reply lines, CRLF added, in one write. */
  async send(...lines: string[]): Promise<void> {
    await this.conn.write(lines.map((l) => `${l}\r\n`).join(""));
  }

  /** The content after 354 as sent (dot-stuffed, CRLF), up to and including the final dot. */
  async content(): Promise<string> {
    let text = "";
    for (let i = 0; i < 10_000; i++) {
      const line = await this.read();
      text += `${line}\r\n`;
      if (line === ".") return text;
    }
    throw new Error("no final dot within 10000 lines");
  }

  /** Checks the client closed its end without sending anything more. */
  async expectClosed(): Promise<void> {
    await assert.rejects(this.read(), ConnectionClosedError);
  }

  /** Checks that the client sent nothing more (waits for its pending writes first). */
  async expectSilence(): Promise<void> {
    await settle();
    assert.equal(this.conn.hasBufferedInput(), false, "the client sent more");
  }
}

/** Runs the client's call and the server's script together; a failing script drops the pipe. */
export async function converse<T>(
  call: Promise<T>,
  server: MemoryCustomer,
  script: () => Promise<void>,
): Promise<T> {
  const played = script().catch((err) => {
    server.conn.destroy();
    throw err;
  });
  const [result] = await Promise.all([call, played]);
  return result;
}

/** The customer's capabilities from EHLO keywords. */
export function caps(...keywords: string[]): Capabilities {
  return parseEhloReply(["customer.test", ...keywords]);
}

/** A plain 7-bit message from sender@origin.test to `rcpts` (ids 1, 2, ...); `extra` overrides fields. */
export function deliverable(rcpts: string[], extra: Partial<DeliverableMessage> = {}): DeliverableMessage {
  return {
    id: 1,
    mailFrom: "sender@origin.test",
    size: 100,
    bodyType: null,
    smtputf8: false,
    eightBit: false,
    envid: null,
    ret: null,
    receivedAt: 0,
    recipients: rcpts.map((address, i) => ({ id: i + 1, address, notify: null, orcpt: null })),
    ...extra,
  };
}
