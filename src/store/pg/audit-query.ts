// The admin API's read of audit_events as one parameterised statement, and its rows as records.
// Pure; the statement runs in pg-store.ts. Filters only ever become `$n` parameters.
import type { AuditQuery, AuditRecord } from '../store.ts';

/** SELECT of the rows matching `q`, newest first, one past `q.limit` (to tell whether a page follows). */
export function auditQuerySql(q: AuditQuery): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (sql: (p: string) => string, v: unknown): void => {
    values.push(v);
    where.push(sql(`$${values.length}`));
  };
  if (q.beforeId !== undefined) add((p) => `id < ${p}`, q.beforeId);
  if (q.fromMs !== undefined) add((p) => `at >= to_timestamp(${p}::bigint / 1000.0)`, q.fromMs);
  if (q.toMs !== undefined) add((p) => `at < to_timestamp(${p}::bigint / 1000.0)`, q.toMs);
  if (q.hub !== undefined) add((p) => `hub = ${p}`, q.hub);
  if (q.clientId !== undefined) add((p) => `client_id = ${p}`, q.clientId);
  if (q.actor !== undefined) add((p) => `actor = ${p}`, q.actor);
  if (q.event !== undefined) add((p) => `event = ${p}`, q.event);
  values.push(q.limit + 1);
  const text = `SELECT id, (extract(epoch FROM at) * 1000)::float8 AS at_ms, hub, event, client_id, actor, remote_address, reason_code, detail
    FROM audit_events ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${values.length}`;
  return { text, values };
}

/** One selected row as an AuditRecord (absent columns left out). */
export function toAuditRecord(r: Record<string, unknown>): AuditRecord {
  const rec: AuditRecord = { id: Number(r['id']), atMs: Math.round(Number(r['at_ms'])), hub: String(r['hub']), event: String(r['event']) };
  if (r['client_id'] != null) rec.clientId = String(r['client_id']);
  if (r['actor'] != null) rec.actor = String(r['actor']);
  if (r['remote_address'] != null) rec.remoteAddress = String(r['remote_address']);
  if (r['reason_code'] != null) rec.reasonCode = Number(r['reason_code']);
  if (r['detail'] != null) rec.detail = r['detail'] as Record<string, unknown>;
  return rec;
}
