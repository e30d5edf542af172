// Reading audit_events in integration tests. Rows are written through the group commit after
// their event, so a read waits (bounded poll) until the expected number is there.
import type pg from 'pg';

export interface AuditRow {
  event: string;
  client_id: string | null;
  actor: string | null;
  reason_code: number | null;
  detail: Record<string, unknown> | null;
}

/** Audit rows matching `where` (SQL over audit_events, `$1`… bound to `params`), oldest first, once there are at least `n`. */
export async function auditRows(db: pg.Client, where: string, params: unknown[], n = 1, timeoutMs = 5000): Promise<AuditRow[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = (await db.query(`SELECT event, client_id, actor, reason_code, detail FROM audit_events WHERE ${where} ORDER BY id`, params)).rows as AuditRow[];
    if (rows.length >= n) return rows;
    if (Date.now() > deadline) throw new Error(`expected ${n} audit rows where ${where} ${JSON.stringify(params)}, got ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
