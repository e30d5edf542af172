// The jsonb columns: MQTT 5 message properties (messages, retained messages, wills) and audit
// details, to and from their stored JSON. Pure.
import type { MessageProperties } from '../../mqtt/packet.ts';

/** U+0000, which jsonb cannot store, in audit detail strings (they may quote what a client sent). */
const NUL = /\u0000/g;

/** The first `n` UTF-16 units of `s`, one fewer if the cut would split a surrogate pair (jsonb refuses a lone one). */
function cutBefore(s: string, n: number): string {
  const code = s.charCodeAt(n - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
}

/**
 * An audit row's detail as jsonb text, at most `maxBytes` (not below ~64): a larger one is replaced by
 * `{"truncated": true, "bytes": <size of the full JSON>, "head": <its first characters>}`.
 */
export function auditDetailJson(detail: Record<string, unknown> | undefined, maxBytes: number): string | null {
  if (!detail) return null;
  const json = JSON.stringify(detail, (_k, v: unknown) => (typeof v === 'string' && v.includes('\u0000') ? v.replace(NUL, '\ufffd') : v));
  const bytes = Buffer.byteLength(json);
  if (bytes <= maxBytes) return json;
  // Cut by characters, then shortened until the escaped result fits
  let head = cutBefore(json, maxBytes);
  let out = JSON.stringify({ truncated: true, bytes, head });
  while (Buffer.byteLength(out) > maxBytes && head.length > 0) {
    head = cutBefore(head, Math.floor(head.length * 0.9));
    out = JSON.stringify({ truncated: true, bytes, head });
  }
  return out;
}

/**
 * Message properties as jsonb text: correlation data base64-encoded, user properties as a list of
 * [key, value] pairs, since jsonb reorders an object's keys and their order must be kept
 * [MQTT-3.3.2-17/18] (a key given several times keeps its values' order too).
 */
export function propsToJson(p: MessageProperties | undefined): string | null {
  if (!p) return null;
  let userProperties: Array<[string, string]> | undefined;
  if (p.userProperties) {
    userProperties = [];
    for (const [k, v] of Object.entries(p.userProperties)) {
      if (Array.isArray(v)) for (const x of v) userProperties.push([k, x]);
      else userProperties.push([k, v]);
    }
  }
  return JSON.stringify({ ...p, correlationData: p.correlationData?.toString('base64'), userProperties });
}

/** Message properties from their jsonb value (as stored by propsToJson, or an older object form). */
export function propsFromJson(v: unknown): MessageProperties | undefined {
  if (v === null || v === undefined) return undefined;
  const o = v as Omit<MessageProperties, 'correlationData' | 'userProperties'> & {
    correlationData?: string; userProperties?: Array<[string, string]> | MessageProperties['userProperties'];
  };
  const out: MessageProperties = { ...o, correlationData: undefined, userProperties: undefined };
  if (o.correlationData !== undefined) out.correlationData = Buffer.from(o.correlationData, 'base64');
  else delete out.correlationData;
  if (Array.isArray(o.userProperties)) {
    const u: Record<string, string | string[]> = {};
    for (const [k, x] of o.userProperties) {
      const prev = u[k];
      u[k] = prev === undefined ? x : Array.isArray(prev) ? [...prev, x] : [prev, x];
    }
    out.userProperties = u;
  } else if (o.userProperties !== undefined) {
    out.userProperties = o.userProperties; // rows written before pairs were used
  } else {
    delete out.userProperties;
  }
  return out;
}
