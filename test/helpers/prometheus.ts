// A small parser of the Prometheus text exposition format (version 0.0.4), enough for the
// broker's /metrics: one sample per line, `name{label="value",...} number`; comments skipped.
import assert from 'node:assert/strict';

/** Samples keyed `name{a="x",b="y"}` (labels sorted by name; no braces without labels). */
export type Samples = Map<string, number>;

const LINE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The key of a sample, as `parseExposition` writes it. */
export function sampleKey(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.keys(labels).sort().map((k) => `${k}="${labels[k]!}"`);
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}

/** Parse exposition text; a line that is neither a comment nor a sample fails the test. */
export function parseExposition(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE_RE.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL_RE)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const raw = m[3]!;
    // (prom-client writes NaN as "Nan")
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    assert.ok(!Number.isNaN(value) || raw.toLowerCase() === 'nan', `not a number in: ${line}`);
    out.set(sampleKey(m[1]!, labels), value);
  }
  return out;
}

/** The value of one sample (0 when absent: a counter not yet incremented has no line). */
export function valueOf(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  return samples.get(sampleKey(name, labels)) ?? 0;
}

/** True if the exposition has a sample with this name and labels. */
export function hasSample(samples: Samples, name: string, labels: Record<string, string> = {}): boolean {
  return samples.has(sampleKey(name, labels));
}
