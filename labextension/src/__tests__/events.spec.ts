import { describe, expect, it } from 'vitest';

import { applyModelEvent, backoffDelay, ConnectionState, IModelEvent, ModelEventStream } from '../models/events';
import { IInstance } from '../state';

const row = (identifier: string, status = 'idle', queued = 0): IInstance =>
  ({ identifier, modelKey: 'smol', status, queued }) as IInstance;

describe('applyModelEvent', () => {
  it('replaces everything on a snapshot, one row per change, drops on unloaded', () => {
    let rows = applyModelEvent([row('old')], { kind: 'snapshot', data: [row('a')] });
    expect(rows.map(r => r.identifier)).toEqual(['a']);
    rows = applyModelEvent(rows, { kind: 'loading', identifier: 'b', row: row('b', 'loading') });
    expect(rows.map(r => [r.identifier, r.status])).toEqual([
      ['a', 'idle'],
      ['b', 'loading']
    ]);
    rows = applyModelEvent(rows, { kind: 'loaded', identifier: 'b', row: row('b') });
    rows = applyModelEvent(rows, { kind: 'queue', identifier: 'a', row: row('a', 'generating', 2) });
    expect(rows.map(r => [r.identifier, r.status, r.queued])).toEqual([
      ['a', 'generating', 2],
      ['b', 'idle', 0]
    ]);
    rows = applyModelEvent(rows, { kind: 'unloaded', identifier: 'a' });
    expect(rows.map(r => r.identifier)).toEqual(['b']);
    // nonsense changes nothing
    expect(applyModelEvent(rows, { kind: 'status' })).toBe(rows);
    expect(applyModelEvent(rows, { kind: 'status', identifier: 'b' })).toBe(rows);
  });

  it('backs off exponentially up to a ceiling', () => {
    expect([0, 1, 2, 3, 4, 5, 9].map(a => backoffDelay(a))).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000]);
  });
});

/** A fake server: each open() is one connection whose body we write to, or a refusal. */
class FakeServer {
  opens = 0;
  refuse = 0;
  controllers: ReadableStreamDefaultController<Uint8Array>[] = [];
  open = async (signal: AbortSignal): Promise<Response> => {
    this.opens++;
    if (this.refuse > 0) {
      this.refuse--;
      throw new TypeError('Failed to fetch');
    }
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: c => {
        controller = c;
      }
    });
    signal.addEventListener('abort', () => {
      try {
        controller.error(new DOMException('aborted', 'AbortError'));
      } catch {
        // already closed
      }
    });
    this.controllers.push(controller);
    return new Response(body);
  };
  send(event: IModelEvent | string): void {
    const text = typeof event === 'string' ? event : `event: ${event.kind}\ndata: ${JSON.stringify(event)}\n\n`;
    this.controllers[this.controllers.length - 1].enqueue(new TextEncoder().encode(text));
  }
  drop(): void {
    this.controllers[this.controllers.length - 1].close();
  }
}

const tick = (ms = 5) => new Promise(resolve => setTimeout(resolve, ms));

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (check()) {
      return;
    }
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('ModelEventStream', () => {
  it('goes live on the snapshot, reconnects after a drop and after refusals', async () => {
    const server = new FakeServer();
    const events: IModelEvent[] = [];
    const states: ConnectionState[] = [];
    const delays: number[] = [];
    const stream = new ModelEventStream({
      open: server.open,
      onEvent: e => events.push(e),
      onState: s => states.push(s),
      backoff: attempt => {
        delays.push(attempt);
        return 1;
      }
    });
    stream.start();
    await until(() => server.opens === 1, 'the first connection');
    server.send({ kind: 'snapshot', data: [] });
    await until(() => stream.state === 'live', 'live');
    server.send(': keep-alive\n\n'); // a heartbeat is not an event
    server.send({ kind: 'loaded', identifier: 'a', row: row('a') });
    await until(() => events.length === 2, 'the loaded event');
    expect(events.map(e => e.kind)).toEqual(['snapshot', 'loaded']);

    // the server restarts: the stream ends, two connection attempts are refused
    server.refuse = 2;
    server.drop();
    await until(() => server.opens === 4, 'the reconnects');
    expect(stream.state).toBe('reconnecting');
    server.send({ kind: 'snapshot', data: [row('b')] });
    await until(() => stream.state === 'live', 'live again');
    expect(events[events.length - 1]).toMatchObject({ kind: 'snapshot' });
    expect(delays).toEqual([0, 1, 2]); // longer waits while it stays down
    const collapsed = states.filter((s, i) => s !== states[i - 1]); // the error text may change
    expect(collapsed).toEqual(['connecting', 'live', 'reconnecting', 'live']);

    // after a good connection the backoff starts over
    server.drop();
    await until(() => server.opens === 5, 'one more reconnect');
    expect(delays).toEqual([0, 1, 2, 0]);
    stream.stop();
    expect(stream.state).toBe('stopped');
    await tick(20);
    expect(server.opens).toBe(5);
  });

  it('treats a silent stream as dead', async () => {
    const server = new FakeServer();
    const stream = new ModelEventStream({ open: server.open, onEvent: () => undefined, silenceMs: 30, backoff: () => 1 });
    stream.start();
    await until(() => server.opens === 1, 'a connection');
    server.send({ kind: 'snapshot', data: [] });
    await until(() => server.opens >= 2, 'a reconnect after the silence');
    stream.stop();
  });
});
