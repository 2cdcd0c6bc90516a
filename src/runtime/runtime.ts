/**
 * Which JavaScript runtime we are on. The only module besides the HTTP adapter that looks at
 * runtime globals (docs/design.md#runtimes).
 */
declare const Bun: { version: string } | undefined;

/** "deno", "bun" or "node" and its version. */
export function runtimeInfo(): { name: "deno" | "bun" | "node"; version: string } {
  if (typeof Deno !== "undefined") return { name: "deno", version: Deno.version.deno };
  if (typeof Bun !== "undefined") return { name: "bun", version: Bun.version };
  return { name: "node", version: globalThis.process?.versions?.node ?? "unknown" };
}
