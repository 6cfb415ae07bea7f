import { describe, expect, it } from 'vitest';

import { readSSE, SSEParser } from '../sse';

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) {
        controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
      }
      controller.close();
    }
  });
}

describe('SSEParser', () => {
  it('dispatches an event at the blank line', () => {
    const parser = new SSEParser();
    expect(parser.feed('data: {"a":1}\n')).toEqual([]);
    expect(parser.feed('\n')).toEqual([{ event: 'message', data: '{"a":1}' }]);
  });

  it('handles events split at every possible position', () => {
    const text = 'event: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new SSEParser();
      const events = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      expect(events).toEqual([
        { event: 'x', data: 'one\ntwo' },
        { event: 'message', data: '[DONE]' }
      ]);
    }
  });

  it('accepts CRLF and CR line endings, also split between chunks', () => {
    const parser = new SSEParser();
    const events = [
      ...parser.feed('data: a\r'),
      ...parser.feed('\n\r'),
      ...parser.feed('\ndata: b\r\r')
    ];
    expect(events.map(e => e.data)).toEqual(['a', 'b']);
  });

  it('ignores comments, unknown fields and events without data', () => {
    const parser = new SSEParser();
    const events = parser.feed(': keep-alive\n\nretry: 10\nfoo: bar\n\nevent: ping\n\ndata:x\n\n');
    expect(events).toEqual([{ event: 'message', data: 'x' }]);
  });

  it('keeps the value after one optional space and any colons in it', () => {
    const parser = new SSEParser();
    expect(parser.feed('data:  two spaces: yes\n\n')).toEqual([
      { event: 'message', data: ' two spaces: yes' }
    ]);
  });

  it('remembers the last id', () => {
    const parser = new SSEParser();
    expect(parser.feed('id: 7\ndata: a\n\ndata: b\n\n')).toEqual([
      { event: 'message', data: 'a', id: '7' },
      { event: 'message', data: 'b', id: '7' }
    ]);
  });

  it('does not dispatch an unterminated event, but returns its text at the end', () => {
    const parser = new SSEParser();
    expect(parser.feed('data: {"partial"')).toEqual([]);
    expect(parser.end()).toBe('data: {"partial"');
  });
});

describe('readSSE', () => {
  it('decodes UTF-8 split inside a character', async () => {
    const bytes = new TextEncoder().encode('data: {"content":"héllo ✓"}\n\n');
    const cut = bytes.indexOf(0xc3) + 1; // inside "é"
    const events = [];
    for await (const event of readSSE(streamOf([bytes.slice(0, cut), bytes.slice(cut)]))) {
      events.push(event);
    }
    expect(events).toEqual([{ event: 'message', data: '{"content":"héllo ✓"}' }]);
  });

  it('cancels the body when the reader stops early', async () => {
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new TextEncoder().encode('data: 1\n\n'));
      },
      cancel() {
        cancelled = true;
      }
    });
    for await (const event of readSSE(body)) {
      expect(event.data).toBe('1');
      break;
    }
    expect(cancelled).toBe(true);
  });
});
