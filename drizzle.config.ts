// drizzle-kit configuration: `npx drizzle-kit generate` writes SQL migrations for
// src/store/pg/schema.ts into migrations/ (applied by the broker at start-up).
export default {
  dialect: 'postgresql',
  schema: './src/store/pg/schema.ts',
  out: './migrations',
  casing: 'snake_case',
} as const;
