/** Entry point: argv -> command table -> exit code. */
import process from "node:process";
import { runCli } from "./cli/run.ts";

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return new TextDecoder().decode(Buffer.concat(chunks));
}

const code = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text + "\n"),
  err: (text) => process.stderr.write(text + "\n"),
  readStdin,
  env: process.env,
});
process.exit(code);
