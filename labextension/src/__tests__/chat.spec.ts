import { describe, expect, it } from 'vitest';

import type { LMSClient } from '../api';
import { ChatController } from '../chat';

/** A client whose chat stream is the given SSE text, sent in small pieces. */
function fakeClient(events: string[], opts: { hang?: boolean; fail?: Error } = {}) {
  const requests: any[] = [];
  const client = {
    async chatStream(body: any, signal: AbortSignal): Promise<Response> {
      requests.push(body);
      if (opts.fail) {
        throw opts.fail;
      }
      const encoder = new TextEncoder();
      let i = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (i < events.length) {
            controller.enqueue(encoder.encode(events[i++]));
          } else if (!opts.hang) {
            controller.close();
          } else {
            await new Promise((_, reject) =>
              signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))
            );
          }
        }
      });
      signal.addEventListener('abort', () => stream.cancel().catch(() => undefined));
      return new Response(stream, { headers: { 'Content-Type': 'text/event-stream' } });
    }
  };
  return { client: client as unknown as LMSClient, requests };
}

const chunk = (delta: object, extra: object = {}) =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;

describe('ChatController', () => {
  it('streams the answer into the last turn and records usage', async () => {
    const { client, requests } = fakeClient([
      chunk({ role: 'assistant', content: '' }),
      chunk({ reasoning: 'Let me think.' }),
      chunk({ content: 'Hel' }),
      chunk({ content: 'lo' }),
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 3 } })}\n\n`,
      'data: [DONE]\n\n'
    ]);
    const chat = new ChatController(client);
    chat.setModel('smol');
    const seen: string[] = [];
    chat.changed.connect((_, change) => {
      if (change.kind === 'turn-updated') {
        seen.push(chat.state.turns[change.index].content);
      }
    });
    await chat.send('Hi', { maxTokens: 10 });
    expect(requests[0]).toMatchObject({
      model: 'smol',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true }
    });
    const answer = chat.state.turns[1];
    expect(answer).toMatchObject({ role: 'assistant', content: 'Hello', reasoning: 'Let me think.' });
    expect(answer.stats).toMatchObject({ completionTokens: 3, promptTokens: 9, finishReason: 'stop' });
    expect(answer.error).toBeUndefined();
    expect(seen).toContain('Hel');
    expect(chat.busy).toBe(false);
  });

  it('sends the notebook context after the text and collects streamed tool calls', async () => {
    const call = (piece: object) => chunk({ tool_calls: [{ index: 0, ...piece }] });
    const { client, requests } = fakeClient([
      call({ id: 'call_1', type: 'function', function: { name: 'get_', arguments: '' } }),
      call({ function: { name: 'weather', arguments: '{"city":' } }),
      call({ function: { arguments: ' "Paris"}' } }),
      'data: [DONE]\n\n'
    ]);
    const chat = new ChatController(client);
    chat.setModel('smol');
    await chat.send('Why?', {}, 'The active notebook cell [1]:\n```python\n1/0\n```');
    expect(requests[0].messages).toEqual([
      { role: 'user', content: 'Why?\n\nThe active notebook cell [1]:\n```python\n1/0\n```' }
    ]);
    expect(chat.state.turns[0]).toMatchObject({ content: 'Why?', context: expect.stringContaining('1/0') });
    expect(chat.state.turns[1].toolCalls).toEqual([
      { id: 'call_1', name: 'get_weather', arguments: '{"city": "Paris"}' }
    ]);
  });

  it('sends the history with the next message', async () => {
    const { client, requests } = fakeClient([chunk({ content: 'A' }), 'data: [DONE]\n\n']);
    const chat = new ChatController(client);
    chat.setModel('smol');
    chat.setSystemPrompt('Be brief.');
    await chat.send('one');
    await chat.send('two');
    expect(requests[1].messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'one' },
      { role: 'assistant', content: 'A' },
      { role: 'user', content: 'two' }
    ]);
  });

  it('shows an in-stream error and keeps the text before it', async () => {
    const { client } = fakeClient([
      chunk({ content: 'Par' }),
      'data: {"error": {"message": "Model \\"smol\\" was unloaded.", "code": "model_unloaded"}}\n\n',
      'data: [DONE]\n\n'
    ]);
    const chat = new ChatController(client);
    chat.setModel('smol');
    await chat.send('Hi');
    expect(chat.state.turns[1]).toMatchObject({
      content: 'Par',
      error: 'Model "smol" was unloaded.',
      errorCode: 'model_unloaded'
    });
  });

  it('shows a refused request with the API message', async () => {
    const error = Object.assign(new Error('Model "x" not found.'), { code: 'model_not_found' });
    const { client } = fakeClient([], { fail: error });
    const chat = new ChatController(client);
    chat.setModel('x');
    await chat.send('Hi');
    expect(chat.state.turns[1]).toMatchObject({ content: '', error: 'Model "x" not found.', errorCode: 'model_not_found' });
  });

  it('stop aborts the stream and keeps the partial answer', async () => {
    const { client } = fakeClient([chunk({ content: 'Once' }), chunk({ content: ' upon' })], { hang: true });
    const chat = new ChatController(client);
    chat.setModel('smol');
    const done = chat.send('story');
    await new Promise<void>(resolve => {
      chat.changed.connect((_, change) => {
        if (change.kind === 'turn-updated' && chat.state.turns[1].content === 'Once upon') {
          resolve();
        }
      });
    });
    expect(chat.busy).toBe(true);
    chat.stop();
    await done;
    expect(chat.busy).toBe(false);
    expect(chat.state.turns[1]).toMatchObject({ content: 'Once upon', stopped: true });
    expect(chat.state.turns[1].error).toBeUndefined();
    expect(chat.state.turns[1].stats).toMatchObject({ completionTokens: 2, approximate: true });
  });

  it('new chat empties the conversation but keeps model and system prompt', async () => {
    const { client } = fakeClient([chunk({ content: 'A' }), 'data: [DONE]\n\n']);
    const chat = new ChatController(client);
    chat.setModel('smol');
    chat.setSystemPrompt('sys');
    await chat.send('one');
    chat.newChat();
    expect(chat.state).toEqual({ model: 'smol', systemPrompt: 'sys', turns: [] });
  });
});
