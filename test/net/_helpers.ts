/**
 * Loopback socket helpers shared by the networking tests.
 *
 * @module
 */

import * as net from "node:net";
import { LineConnection, type LineConnectionOptions } from "../../src/net/line_connection.ts";

/** A server-side LineConnection and the raw client socket connected to it. */
export interface Pair {
  /** Server end, wrapped. */
  server: LineConnection;
  /** Client end, raw. */
  client: net.Socket;
  /** Reads what the server writes to the client. */
  peer: PeerReader;
  /** Destroys both ends and waits for them to close. */
  done(): Promise<void>;
}

/** Collects the bytes a raw socket receives and waits for patterns in them. */
export class PeerReader {
  /** Everything received so far, decoded as latin1-ish UTF-8. */
  text = "";
  #waiters: Array<() => void> = [];
  #ended = false;

  /** Starts collecting `socket`'s data. */
  constructor(socket: net.Socket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.text += new TextDecoder().decode(chunk);
      this.#wakeAll();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wakeAll();
    });
    socket.on("error", () => {});
  }

  #wakeAll(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Waits until the received text contains `needle` (or fails after `ms`). */
  async waitFor(needle: string, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!this.text.includes(needle)) {
      if (this.#ended) {
        throw new Error(`Peer closed before ${JSON.stringify(needle)}; got ${JSON.stringify(this.text)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Timed out waiting for ${JSON.stringify(needle)}; got ${JSON.stringify(this.text)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
    return this.text;
  }

  /** Waits until the socket has closed. */
  async waitClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.#ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("Timed out waiting for the peer to close");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }
}

/** Opens a loopback TCP connection and wraps the accepted end in a LineConnection. */
export async function socketPair(options: LineConnectionOptions = {}): Promise<Pair> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  const client = net.connect({ host: "127.0.0.1", port: addr.port });
  client.on("error", () => {});
  const peer = new PeerReader(client);
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  const raw = await accepted;
  const conn = new LineConnection(raw, options);
  const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
  const clientClosed = new Promise<void>((resolve) => {
    if (client.destroyed) resolve();
    else client.once("close", () => resolve());
  });
  return {
    server: conn,
    client,
    peer,
    async done() {
      client.destroy();
      conn.destroy();
      await Promise.all([conn.closed, clientClosed, serverClosed]);
    },
  };
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes to a raw socket and waits until it is flushed. */
export function send(socket: net.Socket, data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
}
