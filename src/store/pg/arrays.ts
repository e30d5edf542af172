// PostgreSQL array literals for the unnest parameters of a group commit, built in one pass
// (pg's generic serializer concatenates element by element and showed up as a fifth of the
// broker's allocations under durable load). Pure.

/** `{1,2,NULL}` for bigint[] / int[] / smallint[] columns. */
export function numberArray(values: ReadonlyArray<number | null | undefined>): string {
  return numbersOf(values, (v) => v);
}

/** `{t,f}` for bool[] columns. */
export function boolArray(values: ReadonlyArray<boolean>): string {
  return boolsOf(values, (v) => v);
}

/** `{"a","b\"c",NULL}` for text[] / jsonb[] columns: every element quoted, `"` and `\` escaped. */
export function textArray(values: ReadonlyArray<string | null | undefined>): string {
  return textsOf(values, (v) => v);
}

/** All payloads in one buffer (sent as binary) with their lengths; SQL cuts them apart again. */
export function packBytes(values: ReadonlyArray<Buffer>): { bytes: Buffer; lengths: string } {
  return { bytes: Buffer.concat(values as Buffer[]), lengths: numbersOf(values, (v) => v.length) };
}

/** `numberArray` of `f` over `xs`, in one pass without an intermediate array. */
export function numbersOf<T>(xs: readonly T[], f: (x: T) => number | null | undefined): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) {
    const v = f(xs[i]!);
    if (i > 0) out += ',';
    out += v === null || v === undefined ? 'NULL' : String(v);
  }
  return `${out}}`;
}

/** `boolArray` of `f` over `xs`, in one pass without an intermediate array. */
export function boolsOf<T>(xs: readonly T[], f: (x: T) => boolean): string {
  let out = '{';
  for (let i = 0; i < xs.length; i++) out += i > 0 ? (f(xs[i]!) ? ',t' : ',f') : f(xs[i]!) ? 't' : 'f';
  return `${out}}`;
}

const ESCAPED = /["\\]/;
const NEEDS_ESCAPE = /["\\]/g;

/** `textArray` of `f` over `xs`, in one pass without an intermediate array (a value is escaped only if it needs it). */
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
