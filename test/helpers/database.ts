// Fresh PostgreSQL databases for tests, on the server scripts/run-tests.mjs provides for the whole run
// (TERN_TEST_DATABASE_URL). Creates and drops databases; never starts a server itself.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A database of its own for one test file or broker. */
export interface TestDatabase {
  url: string;
  /** Drop it, ending any connections still open to it. */
  drop(): Promise<void>;
}

let created = 0;

function adminUrl(): string {
  const url = process.env['TERN_TEST_DATABASE_URL'];
  if (!url) {
    throw new Error(
      'TERN_TEST_DATABASE_URL is not set: this test needs the PostgreSQL server that the test runner provides. ' +
        'Run the tests with `npm test` or `node scripts/run-tests.mjs [paths]` (not `node --test` directly); ' +
        'set DATABASE_URL to an admin-capable URL to use your own server.',
    );
  }
  return url;
}

async function runAdmin(admin: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Create a uniquely named, empty database on the test server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = adminUrl();
  // Unique across the parallel test processes of one run and across runs sharing a DATABASE_URL server
  const name = `tern_test_${process.pid}_${++created}_${randomBytes(4).toString('hex')}`;
  await runAdmin(admin, `create database ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    drop: () => (dropped ??= runAdmin(admin, `drop database if exists ${name} with (force)`)),
  };
}
