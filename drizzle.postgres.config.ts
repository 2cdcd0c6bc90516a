import { defineConfig } from "drizzle-kit";

// The PostgreSQL queue several relay nodes share (`drizzle-kit generate --config drizzle.postgres.config.ts`).
// No credentials: `generate` only compares the schema with the snapshots in migrations/postgres/meta.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/queue/pg/schema.ts",
  out: "./migrations/postgres",
});
