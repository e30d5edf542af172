// Store contract against MemoryStore.
import { MemoryStore } from '../../src/store/memory-store.ts';
import { describeStoreContract } from './store.contract.ts';

describeStoreContract('MemoryStore', async () => {
  const store = new MemoryStore();
  return {
    store,
    readAudit: async (hub) => store.auditEvents.filter((e) => e.hub === hub).map((e) => ({ event: e.event, clientId: e.clientId, reasonCode: e.reasonCode })),
    // The in-memory store's "restart" is the same object: its data lives as long as the process.
    reopen: async () => store,
    close: async () => store.close(),
  };
});
