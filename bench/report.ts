// Markdown rendering of the side-by-side benchmark: medians per broker, Tern/mosquitto and
// Tern/aedes ratios, generator and broker CPU, failures; fan-out scaling; saturated generators.
import { median } from './lib.ts';

export interface RowSpec {
  key: string; metric: string; better: 'higher' | 'lower';
  /** measured on Tern only (read from its own metrics): the other brokers' cells read n/a */
  ternOnly?: boolean;
}
export interface ScenarioInfo { name: string; title: string; rows: RowSpec[]; contenders: { label: string }[] }

export interface RunRecord {
  type: 'run';
  scenario: string;
  contender: string;
  broker: string;
  round: number;
  load1: number;
  /** wall time of the whole run, set-up and checks included */
  wallMs?: number;
  /** time spent before the run waiting for the machine to be quiet */
  quietWaitMs?: number;
  metrics: Record<string, number>;
  /** CPU % of one core used by each generator process during the measure window */
  genCpu: Record<string, number>;
  /** anything here marks the run FAILED */
  problems: string[];
  notes: string[];
  brokerLog?: string[];
  extra?: Record<string, unknown>;
}

const MAIN = ['tern', 'mosquitto', 'aedes'];

function num(v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '—';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en');
  if (Math.abs(v) >= 100) return String(Math.round(v));
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function cell(xs: number[]): string {
  if (!xs.length) return '—';
  const m = median(xs);
  if (xs.length < 2 || !m) return num(m);
  const spread = (Math.max(...xs) - Math.min(...xs)) / Math.abs(m);
  return `${num(m)} <sub>±${Math.round((spread / 2) * 100)}%</sub>`;
}

function ratio(a: number[], b: number[]): string {
  if (!a.length || !b.length) return '—';
  const mb = median(b);
  if (!mb) return '—';
  return `${(median(a) / mb).toFixed(2)}×`;
}

export function renderMarkdown(o: {
  command: string; machine: Record<string, unknown>; settings: Record<string, number>; elapsedS: number;
  scenarios: ScenarioInfo[]; records: RunRecord[]; discarded: number; when: string;
}): string {
  const m = o.machine;
  const L: string[] = [];
  L.push('# Tern vs mosquitto vs aedes, side by side', '');
  L.push(`- command: \`${o.command}\` (${o.when}, ${o.elapsedS} s)`);
  L.push(`- machine: ${String(m['nproc'])} × ${String(m['cpuModel'])}, ${String(m['memTotalMiB'])} MiB, ${String(m['os'])} (kernel ${String(m['kernel'])}), load average at start ${JSON.stringify(m['loadavgAtStart'])}`);
  L.push(`- software: node ${String(m['node'])}, mosquitto ${String(m['mosquitto'])}, aedes ${String(m['aedes'])} (ws ${String(m['ws'])}), generators: mqtt-packet ${String(m['mqttPacket'])} + ws, MQTT 3.1.1`);
  const s = o.settings;
  L.push(`- method: brokers interleaved per scenario (A B C A B C …), ${s['rounds']} round(s); throughput = deliveries/s counted by the subscribers over a ${s['measureMs']! / 1000} s window after ${s['warmupMs']! / 1000} s warm-up (latency: ${(s['latencyWarmupMs'] ?? s['warmupMs']!) / 1000} s at the latency rate before a ${s['latencyMs']! / 1000} s window); publishers run closed-loop (a bounded number of messages ahead of the slowest subscriber); 64-byte payloads with stream + sequence numbers; every run checks loss, duplicates and order. Cells: median <sub>±half the range</sub>. Ratios are Tern ÷ other (↑: higher is better, ↓: lower is better).`);
  L.push(`- shared machine: each run first waits (≤ 4 s) for the machine to be nearly idle; a run during which other processes used ≥ 50 % of a core is discarded and repeated once (${o.discarded} repeated in this run; the discarded ones are in the JSON lines).`);
  L.push('- Tern runs with `--store memory` except the rows marked "Tern on PostgreSQL" (embedded PostgreSQL, durable before PUBACK); mosquitto (persistence off) and aedes (in-memory persistence) keep queues in memory.');
  L.push('');
  L.push('| scenario | metric | | Tern | mosquitto | aedes | Tern/mosq | Tern/aedes | gen CPU % (T · m · a) | broker CPU % (T · m · a) | status |');
  L.push('|---|---|---|---:|---:|---:|---:|---:|---|---|---|');
  const of = (sc: string, c: string): RunRecord[] => o.records.filter((r) => r.scenario === sc && r.contender === c);
  const vals = (sc: string, c: string, k: string): number[] => of(sc, c).filter((r) => !r.problems.some((p) => p.startsWith('error'))).map((r) => r.metrics[k]).filter((v): v is number => v !== undefined && !Number.isNaN(v));
  const gen = (sc: string, c: string): string => {
    const rs = of(sc, c).filter((r) => Object.keys(r.genCpu).length);
    if (!rs.length) return '—';
    const mx = rs.map((r) => Math.max(...Object.values(r.genCpu)));
    return `${Math.round(median(mx))}${mx.some((x) => x >= 90) ? '⚠' : ''}`;
  };
  const brk = (sc: string, c: string): string => {
    const b = vals(sc, c, 'brokerCpu');
    if (!b.length) return '—';
    const pg = vals(sc, c, 'pgCpu');
    return `${Math.round(median(b))}${pg.length ? `+${Math.round(median(pg))}pg` : ''}`;
  };
  for (const sc of o.scenarios) {
    const failed = o.records.filter((r) => r.scenario === sc.name && r.problems.length).map((r) => `${r.contender} r${r.round}: ${r.problems.join(', ')}`);
    const notes = [...new Set(o.records.filter((r) => r.scenario === sc.name && r.notes.length).map((r) => `${r.contender}: ${r.notes.join(', ')}`))];
    const status = failed.length ? `**FAILED** ${failed.join('; ')}` : 'ok';
    const extras = sc.contenders.map((c) => c.label).filter((l) => !MAIN.includes(l));
    sc.rows.forEach((row, i) => {
      const cells = MAIN.map((c) => (row.ternOnly && c !== 'tern' ? 'n/a' : cell(vals(sc.name, c, row.key))));
      const t = vals(sc.name, 'tern', row.key);
      L.push(`| ${i === 0 ? sc.title : ''} | ${row.metric} | ${row.better === 'higher' ? '↑' : '↓'} | ${cells.join(' | ')} | ${ratio(t, vals(sc.name, 'mosquitto', row.key))} | ${ratio(t, vals(sc.name, 'aedes', row.key))} | ${i === 0 ? MAIN.map((c) => gen(sc.name, c)).join(' · ') : ''} | ${i === 0 ? MAIN.map((c) => brk(sc.name, c)).join(' · ') : ''} | ${i === 0 ? status + (notes.length ? `; notes: ${notes.slice(0, 4).join('; ')}` : '') : ''} |`);
      for (const x of extras) {
        const xv = vals(sc.name, x, row.key);
        L.push(`| ↳ ${x} (same broker) | ${row.metric} | ${row.better === 'higher' ? '↑' : '↓'} | ${cell(xv)} | | | | | ${gen(sc.name, x)} | ${brk(sc.name, x)} | Tern row ÷ this row: ${ratio(t, xv)} |`);
      }
    });
  }
  L.push('');

  // Fan-out scaling
  const fan = o.scenarios.filter((x) => /^fanout\d+-/.test(x.name));
  if (fan.length) {
    L.push('## Fan-out: how throughput changes with the number of subscribers', '');
    L.push('Deliveries/s (messages/s published ≈ deliveries ÷ subscribers); in brackets, relative to the smallest fan-out of the same QoS.', '');
    L.push('| QoS | subscribers | Tern | mosquitto | aedes | Tern/mosq | Tern/aedes |');
    L.push('|---|---:|---:|---:|---:|---:|---:|');
    for (const q of ['q0', 'q1']) {
      const list = fan.filter((x) => x.name.endsWith(`-${q}-ws`)).sort((a, b) => Number(/\d+/.exec(a.name)![0]) - Number(/\d+/.exec(b.name)![0]));
      const first: Record<string, number> = {};
      for (const sc of list) {
        const n = Number(/\d+/.exec(sc.name)![0]);
        const cells = MAIN.map((c) => {
          const v = vals(sc.name, c, 'delivered');
          if (!v.length) return '—';
          const md = median(v);
          first[c] ??= md;
          return `${num(md)} (${(md / first[c]).toFixed(2)})`;
        });
        const t = vals(sc.name, 'tern', 'delivered');
        L.push(`| ${q.slice(1)} | ${n} | ${cells.join(' | ')} | ${ratio(t, vals(sc.name, 'mosquitto', 'delivered'))} | ${ratio(t, vals(sc.name, 'aedes', 'delivered'))} |`);
      }
    }
    L.push('');
  }

  // Generators
  L.push('## Generator CPU (% of one core, per process, during the measure window)', '');
  L.push('Two generator processes: A holds the publishers (and half the subscribers when there are ≥ 10), B the subscribers. ⚠ marks ≥ 90 %: the generator, not the broker, may be the limit there.', '');
  L.push('"other %" is CPU used during the window by processes outside the benchmark (the machine is shared); high values make that run less trustworthy.', '');
  L.push('| scenario | contender | round | gen A % | gen B % | broker % | other % | load1 | wall s |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of o.records) {
    const sat = Object.values(r.genCpu).some((v) => v >= 90);
    L.push(`| ${r.scenario} | ${r.contender} | ${r.round} | ${r.genCpu['A'] ?? '—'} | ${r.genCpu['B'] ?? '—'}${sat ? ' ⚠' : ''} | ${r.metrics['brokerCpu'] ?? '—'}${r.metrics['pgCpu'] !== undefined && !Number.isNaN(r.metrics['pgCpu']) ? ` (+pg ${r.metrics['pgCpu']})` : ''} | ${r.metrics['otherCpu'] ?? '—'} | ${r.load1.toFixed(2)} | ${r.wallMs !== undefined ? (r.wallMs / 1000).toFixed(1) : '—'} |`);
  }
  L.push('');
  const problems = o.records.filter((r) => r.problems.length || r.brokerLog?.length);
  if (problems.length) {
    L.push('## Failures and broker warnings', '');
    for (const r of problems) {
      if (r.problems.length) L.push(`- **FAILED** ${r.scenario} ${r.contender} round ${r.round}: ${r.problems.join('; ')}`);
      if (r.brokerLog?.length) L.push(`- ${r.scenario} ${r.contender} round ${r.round} broker log: \`${r.brokerLog.slice(0, 3).join(' | ').replace(/`/g, "'")}\``);
    }
    L.push('');
  }
  return `${L.join('\n')}\n`;
}
