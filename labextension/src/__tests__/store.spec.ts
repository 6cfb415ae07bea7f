import { describe, expect, it } from 'vitest';

import type { LMSClient } from '../api';
import { ModelsStore } from '../models/store';

/** A client with a catalogue and an event stream this test writes to; no `ps` at all. */
function fakeClient() {
  const calls: string[] = [];
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const client = {
    async models() {
      calls.push('models');
      return [{ id: 'smol', type: 'llm', state: 'loaded' }, { id: 'embed', type: 'embeddings' }];
    },
    async modelDetails() {
      calls.push('details');
      return [{ key: 'smol', display_name: 'SmolLM2 135M Instruct' }];
    },
    async ps() {
      calls.push('ps');
      return [];
    },
    async events(signal: AbortSignal) {
      calls.push('events');
      const body = new ReadableStream<Uint8Array>({ start: c => void (controller = c) });
      signal.addEventListener('abort', () => controller.error(new Error('aborted')));
      return new Response(body);
    },
    async unload(id: string) {
      calls.push(`unload ${id}`);
      return { instance_id: id };
    }
  };
  const send = (event: object) =>
    controller.enqueue(new TextEncoder().encode(`data: ${JSON.stringify(event)}\n\n`));
  return { client: client as unknown as LMSClient, calls, send };
}

const tick = () => new Promise(resolve => setTimeout(resolve, 10));

describe('ModelsStore', () => {
  it('shows what the events say is loaded, by display name, without asking ps', async () => {
    const { client, calls, send } = fakeClient();
    const store = new ModelsStore(client, () => 0);
    store.start();
    await tick();
    send({ kind: 'snapshot', data: [] });
    await tick();
    // the catalogue said "loaded" when fetched; the pushed instances say otherwise
    expect(store.views.map(v => [v.id, v.name, v.state])).toEqual([
      ['smol', 'SmolLM2 135M Instruct', 'not-loaded'],
      ['embed', 'embed', 'not-loaded']
    ]);
    send({ kind: 'loaded', identifier: 'smol', modelKey: 'smol', row: { identifier: 'smol', modelKey: 'smol', status: 'idle', queued: 0 } });
    await tick();
    expect(store.views[0].state).toBe('loaded');
    expect(store.choices.map(c => [c.value, c.label, c.group])).toEqual([['smol', 'SmolLM2 135M Instruct', 'loaded']]);
    expect(store.connection).toBe('live');
    await store.unload('smol', 'smol');
    expect(store.views[0].state).toBe('not-loaded');
    expect(calls.filter(c => c === 'ps')).toEqual([]);
    expect(calls.filter(c => c === 'models')).toHaveLength(1); // the first snapshot adds none
    store.dispose();
  });
});
