// PostgreSQL array literals for the unnest parameters of a group commit, built in one pass
// (pg's generic serializer concatenates element by element and showed up as a fifth of the
// broker's allocations under durable load). Pure.

/** `{1,2,NULL}` for bigint[] / int[] / smallint[] columns. */
export function numberArray(values: ReadonlyArray<number | null | undefined>): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    out += v === null || v === undefined ? 'NULL' : String(v);
  }
  return `${out}}`;
}

/** `{t,f}` for bool[] columns. */
export function boolArray(values: ReadonlyArray<boolean>): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) out += i > 0 ? (values[i] ? ',t' : ',f') : values[i] ? 't' : 'f';
  return `${out}}`;
}

const NEEDS_ESCAPE = /["\\]/g;

/** `{"a","b\"c",NULL}` for text[] / jsonb[] columns: every element quoted, `"` and `\` escaped. */
export function textArray(values: ReadonlyArray<string | null | undefined>): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    parts[i] = v === null || v === undefined ? 'NULL' : `"${v.replace(NEEDS_ESCAPE, '\\$&')}"`;
  }
  return `{${parts.join(',')}}`;
}

/** All payloads in one buffer (sent as binary) with their lengths; SQL cuts them apart again. */
export function packBytes(values: ReadonlyArray<Buffer>): { bytes: Buffer; lengths: string } {
  const lengths = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) lengths[i] = values[i]!.length;
  return { bytes: Buffer.concat(values as Buffer[]), lengths: `{${lengths.join(',')}}` };
}

/** `numberArray` of `f` over `xs`, without the intermediate array. */
export function numbersOf<T>(xs: readonly T[], f: (x: T) => number | null | undefined): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) {
    const v = f(xs[i]!);
    if (i > 0) out += ',';
    out += v === null || v === undefined ? 'NULL' : String(v);
  }
  return `${out}}`;
}

/** `boolArray` of `f` over `xs`, without the intermediate array. */
export function boolsOf<T>(xs: readonly T[], f: (x: T) => boolean): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) out += i > 0 ? (f(xs[i]!) ? ',t' : ',f') : f(xs[i]!) ? 't' : 'f';
  return `${out}}`;
}

const ESCAPED = /["\\]/;

/** `textArray` of `f` over `xs`, without the intermediate array (a value is escaped only if it needs it). */
export function textsOf<T>(xs: readonly T[], f: (x: T) => string | null | undefined): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) {
    const v = f(xs[i]!);
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else out += `"${ESCAPED.test(v) ? v.replace(NEEDS_ESCAPE, '\\$&') : v}"`;
  }
  return `${out}}`;
}
