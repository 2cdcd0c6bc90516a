/** Entry point: argv -> command table -> exit code. */
import process from "node:process";
import { runCli } from "./cli/run.ts";

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return new TextDecoder().decode(Buffer.concat(chunks));
}

// Output still buffered for a slow pipe must be written before exit: Bun would cut it at 64 KiB.
const unflushed: Promise<void>[] = [];
function write(stream: NodeJS.WriteStream, text: string): void {
  if (stream.write(text + "\n")) return;
  unflushed.push(
    new Promise<void>((resolve) => {
      stream.once("drain", resolve);
      stream.once("close", resolve);
      stream.once("error", resolve);
    }),
  );
}

const code = await runCli(process.argv.slice(2), {
  out: (text) => write(process.stdout, text),
  err: (text) => write(process.stderr, text),
  readStdin,
  env: process.env,
});
await Promise.all(unflushed);
process.exit(code);
