// The broker's own event-loop delay over a measure window, read from its Prometheus `/metrics`:
// prom-client's default metrics keep a perf_hooks.monitorEventLoopDelay histogram and reset it
// on every scrape, so a scrape at the start of the window empties it and one at the end reads the
// window alone. Nothing else may scrape the broker meanwhile (the benchmark does not).

/**
 * The histogram's sampling interval in ms: prom-client's `eventLoopMonitoringPrecision` default,
 * which Tern's metrics leave alone. A sample is the time between two ticks of a timer repeating at
 * this interval, so an idle loop reads about 10 ms: the delay is the sample less this interval.
 */
export const LOOP_RESOLUTION_MS = 10;

const GAUGES = { p50: 'nodejs_eventloop_lag_p50_seconds', p99: 'nodejs_eventloop_lag_p99_seconds', max: 'nodejs_eventloop_lag_max_seconds' } as const;
type Quantile = keyof typeof GAUGES;

/** The gauges as scraped (seconds, the sampling interval included). */
export type LoopDelaySeconds = Record<Quantile, number>;

/** Scrape `/metrics` and read the event-loop gauges; collecting them resets the broker's histogram. */
export async function scrapeLoopDelay(metricsUrl: string): Promise<LoopDelaySeconds> {
  const res = await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`GET ${metricsUrl}: HTTP ${res.status}`);
  const text = await res.text();
  const read = (name: string): number => {
    // an unlabelled gauge: `name value` on a line of its own
    const m = new RegExp(`^${name}(?:\\{\\})? (\\S+)$`, 'm').exec(text);
    if (!m) throw new Error(`GET ${metricsUrl}: no ${name}`);
    return Number(m[1]);
  };
  return { p50: read(GAUGES.p50), p99: read(GAUGES.p99), max: read(GAUGES.max) };
}

/** Delay in ms from a scraped sample: the sampling interval taken off, never below 0 (NaN: no sample, max reads 0). */
export function loopDelayMs(s: LoopDelaySeconds): Record<'loopP50' | 'loopP99' | 'loopMax', number> {
  // (rounded to the µs: the gauges are ns counts in seconds)
  const ms = (sec: number): number => (s.max > 0 ? Math.max(0, (Math.round(sec * 1e6) - LOOP_RESOLUTION_MS * 1000) / 1000) : NaN);
  return { loopP50: ms(s.p50), loopP99: ms(s.p99), loopMax: ms(s.max) };
}
