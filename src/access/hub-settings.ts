// Hub settings (anonymous connect policy, keep-alive cap, session limit): stored in PostgreSQL,
// read at start, kept in memory for every CONNECT; an update is committed with its audit row and
// then in force. Updates of one hub apply one after another, each building on the one before.
import type { Clock } from '../broker/ports.ts';
import type { HubSettingsRecord, Store } from '../store/store.ts';

/** The settings in force for a hub: stored values over deployment defaults. */
export interface EffectiveHubSettings {
  hub: string;
  anonymousConnectPolicy: 'allow' | 'deny';
  maxKeepAliveSec: number | null;
  maxSessions: number | null;
  /** What is stored for the hub (null fields follow the defaults); undefined when nothing is. */
  stored: HubSettingsRecord | undefined;
}

/** A change to a hub's settings: a field left out keeps its value, null returns it to the default. */
export type HubSettingsPatch = Partial<Pick<HubSettingsRecord, 'anonymousConnectPolicy' | 'maxKeepAliveSec' | 'maxSessions'>>;

export class HubSettings {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #anonymousByDefault: boolean;
  readonly #byHub = new Map<string, HubSettingsRecord>();
  readonly #queue = new Map<string, Promise<unknown>>();

  constructor(store: Store, clock: Clock, anonymousByDefault: boolean) {
    this.#store = store;
    this.#clock = clock;
    this.#anonymousByDefault = anonymousByDefault;
  }

  /** The stored settings, at start. */
  load(records: readonly HubSettingsRecord[]): void {
    for (const r of records) this.#byHub.set(r.hub, r);
  }

  /** The settings in force for `hub` (name compared case-insensitively). */
  get(hub: string): EffectiveHubSettings {
    const key = hub.toLowerCase();
    const stored = this.#byHub.get(key);
    return {
      hub: key,
      anonymousConnectPolicy: stored?.anonymousConnectPolicy ?? (this.#anonymousByDefault ? 'allow' : 'deny'),
      maxKeepAliveSec: stored?.maxKeepAliveSec ?? null,
      maxSessions: stored?.maxSessions ?? null,
      stored,
    };
  }

  /** Hubs with stored settings. */
  configured(): HubSettingsRecord[] {
    return [...this.#byHub.values()];
  }

  update(hub: string, patch: HubSettingsPatch, actor: string): Promise<EffectiveHubSettings> {
    const key = hub.toLowerCase();
    const previous = this.#queue.get(key) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.#apply(key, patch, actor));
    this.#queue.set(key, next);
    const forget = (): void => { if (this.#queue.get(key) === next) this.#queue.delete(key); };
    next.then(forget, forget);
    return next;
  }

  async #apply(key: string, patch: HubSettingsPatch, actor: string): Promise<EffectiveHubSettings> {
    const before = this.#byHub.get(key);
    const record: HubSettingsRecord = {
      hub: key,
      anonymousConnectPolicy: before?.anonymousConnectPolicy ?? null,
      maxKeepAliveSec: before?.maxKeepAliveSec ?? null,
      maxSessions: before?.maxSessions ?? null,
      ...patch,
      updatedAtMs: this.#clock.now(),
    };
    await this.#store.transaction((tx) => {
      tx.putHubSettings(record);
      tx.appendAudit({ hub: key, event: 'hub_settings_changed', actor, atMs: record.updatedAtMs, detail: { ...patch } });
    });
    this.#byHub.set(key, record);
    return this.get(key);
  }
}
