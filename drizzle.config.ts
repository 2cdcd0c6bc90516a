import { defineConfig } from "drizzle-kit";

// The embedded SQLite queue (the default). The shared PostgreSQL queue has drizzle.postgres.config.ts.
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/queue/schema.ts",
  out: "./migrations/sqlite",
});
