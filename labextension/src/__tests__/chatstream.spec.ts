import { describe, expect, it } from 'vitest';

import { errorFromBody, interpretChunk } from '../chatstream';

const ev = (data: string) => ({ event: 'message', data });

describe('interpretChunk', () => {
  it('reads content, finish reason and usage', () => {
    expect(interpretChunk(ev('{"choices":[{"index":0,"delta":{"content":"Hi"}}]}'))).toEqual([
      { kind: 'content', text: 'Hi' }
    ]);
    expect(
      interpretChunk(ev('{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}'))
    ).toEqual([{ kind: 'finish', reason: 'length' }]);
    expect(
      interpretChunk(ev('{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}'))
    ).toEqual([{ kind: 'usage', usage: { prompt_tokens: 3, completion_tokens: 5 } }]);
  });

  it('reads reasoning from `reasoning` or `reasoning_content`, once', () => {
    expect(interpretChunk(ev('{"choices":[{"delta":{"reasoning":"hmm"}}]}'))).toEqual([
      { kind: 'reasoning', text: 'hmm' }
    ]);
    expect(
      interpretChunk(ev('{"choices":[{"delta":{"reasoning":"a","reasoning_content":"a"}}]}'))
    ).toEqual([{ kind: 'reasoning', text: 'a' }]);
    expect(interpretChunk(ev('{"choices":[{"delta":{"reasoning_content":"b","content":"c"}}]}'))).toEqual([
      { kind: 'reasoning', text: 'b' },
      { kind: 'content', text: 'c' }
    ]);
  });

  it('reports in-stream errors with their message and code', () => {
    expect(
      interpretChunk(ev('{"error":{"message":"Model unloaded","type":"server_error","code":"model_unloaded"}}'))
    ).toEqual([{ kind: 'error', message: 'Model unloaded', code: 'model_unloaded' }]);
    expect(interpretChunk(ev('{"error":"plain"}'))).toEqual([{ kind: 'error', message: 'plain' }]);
  });

  it('ends at [DONE] and flags events that are not JSON', () => {
    expect(interpretChunk(ev('[DONE]'))).toEqual([{ kind: 'done' }]);
    const [bad] = interpretChunk(ev('{oops'));
    expect(bad.kind).toBe('error');
  });

  it('ignores role-only deltas and other choices', () => {
    expect(interpretChunk(ev('{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'))).toEqual([]);
    expect(interpretChunk(ev('{"choices":[{"index":1,"delta":{"content":"x"}}]}'))).toEqual([]);
  });
});

describe('errorFromBody', () => {
  it('reads every error shape the server uses', () => {
    expect(errorFromBody({ error: { message: 'No memory', code: 'insufficient_memory' } }, 400)).toEqual({
      message: 'No memory',
      code: 'insufficient_memory'
    });
    expect(errorFromBody({ message: 'Forbidden', reason: null }, 403)).toEqual({ message: 'Forbidden' });
    expect(errorFromBody('<html>bad gateway</html>', 502).message).toContain('bad gateway');
    expect(errorFromBody(null, 500, 'Internal Server Error').message).toBe(
      'The server answered 500 Internal Server Error.'
    );
  });
});
