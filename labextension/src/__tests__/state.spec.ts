import { describe, expect, it } from 'vitest';

import {
  buildChatRequest,
  chatModelChoices,
  emptyChat,
  formatBytes,
  formatDuration,
  formatStats,
  IInstance,
  IModelV0,
  loadProgressOf,
  mergeModels,
  pickChatModel,
  requestMessages,
  restoreChat,
  serializeChat,
  StatsTracker
} from '../state';

const SMOL: IModelV0 = {
  id: 'smollm2-135m-instruct',
  type: 'llm',
  publisher: 'HuggingFaceTB',
  quantization: 'Q4_1',
  state: 'not-loaded',
  max_context_length: 8192,
  capabilities: []
};
const QWEN: IModelV0 = { id: 'qwen3-4b', type: 'llm', publisher: 'Qwen', quantization: 'Q4_K_M', state: 'loaded', capabilities: ['tool_use'] };
const EMBED: IModelV0 = { id: 'nomic-embed', type: 'embeddings', publisher: 'nomic', quantization: 'F16', capabilities: [] };

const qwenInstance: IInstance = {
  modelKey: 'qwen3-4b',
  identifier: 'qwen3-4b',
  status: 'generating',
  queued: 2,
  ttlRemainingMs: 3_590_000,
  contextLength: 4096,
  sizeBytes: 2_500_000_000
};

describe('mergeModels', () => {
  it('keeps the catalogue order and attaches instances, sizes and capabilities', () => {
    const rows = mergeModels([SMOL, QWEN, EMBED], [qwenInstance], [
      { key: 'smollm2-135m-instruct', display_name: 'SmolLM2 135M', size_bytes: 98_400_000 }
    ]);
    expect(rows.map(r => [r.id, r.state])).toEqual([
      ['smollm2-135m-instruct', 'not-loaded'],
      ['qwen3-4b', 'loaded'],
      ['nomic-embed', 'not-loaded']
    ]);
    expect(rows[0].name).toBe('SmolLM2 135M');
    expect(rows[0].sizeBytes).toBe(98_400_000);
    expect(rows[1].sizeBytes).toBe(2_500_000_000); // from ps when v1 has no row
    expect(rows[1].capabilities).toEqual(['tool use']);
    expect(rows[2].capabilities).toEqual(['embeddings']);
    expect(rows[1].instances[0]).toMatchObject({ statusLabel: 'generating', queued: 2, ttlRemainingMs: 3_590_000 });
  });

  it('shows a loading instance as loading, with its progress', () => {
    const loading: IInstance = { modelKey: SMOL.id, identifier: SMOL.id, status: 'loading', loadProgress: 0.42 };
    const [row] = mergeModels([SMOL], [loading]);
    expect(row.state).toBe('loading');
    expect(loadProgressOf(row, false)).toEqual({ value: 0.42 });
    expect(loadProgressOf(row, true)).toEqual({ value: 0.42 });
  });

  it('shows an indeterminate bar while our load runs and the server reports no progress', () => {
    const [row] = mergeModels([SMOL], []);
    expect(loadProgressOf(row, true)).toEqual({ value: null });
    expect(loadProgressOf(row, false)).toBeNull();
    const [noValue] = mergeModels([SMOL], [{ modelKey: SMOL.id, identifier: SMOL.id, status: 'loading' }]);
    expect(loadProgressOf(noValue, false)).toEqual({ value: null });
  });

  it('clamps progress and lists instances of models the catalogue lacks', () => {
    const rows = mergeModels([], [{ modelKey: 'x', identifier: 'x:2', status: 'loading', loadProgress: 3 }]);
    expect(rows[0].id).toBe('x');
    expect(rows[0].instances[0].loadProgress).toBe(1);
  });
});

describe('chat model choices', () => {
  it('lists loaded instances first, then the other models, never embeddings', () => {
    const second: IInstance = { ...qwenInstance, identifier: 'qwen3-4b:2' };
    const choices = chatModelChoices([SMOL, QWEN, EMBED], [qwenInstance, second]);
    expect(choices.map(c => [c.value, c.group])).toEqual([
      ['qwen3-4b', 'loaded'],
      ['qwen3-4b:2', 'loaded'],
      ['smollm2-135m-instruct', 'all']
    ]);
    expect(choices[1].label).toBe('qwen3-4b:2 (qwen3-4b)');
  });

  it('keeps the choice, else the default, else the first loaded', () => {
    const choices = chatModelChoices([SMOL, QWEN], [qwenInstance]);
    expect(pickChatModel('smollm2-135m-instruct', choices, 'qwen3-4b')).toBe('smollm2-135m-instruct');
    expect(pickChatModel('', choices, 'smollm2-135m-instruct')).toBe('smollm2-135m-instruct');
    expect(pickChatModel('', choices)).toBe('qwen3-4b');
    expect(pickChatModel('gone', choices)).toBe('gone'); // restored: JIT may load it
    expect(pickChatModel('', [])).toBe('');
  });
});

describe('the conversation', () => {
  it('builds the request: system prompt, turns with text, settings fields underneath', () => {
    const state = emptyChat('smol', 'Be brief.');
    state.turns.push({ role: 'user', content: 'Hi' });
    state.turns.push({ role: 'assistant', content: '', error: 'failed' });
    state.turns.push({ role: 'user', content: 'Again' });
    expect(requestMessages(state)).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'user', content: 'Again' }
    ]);
    const body = buildChatRequest(state, {
      ttl: 300,
      maxTokens: 64,
      extra: { logit_bias: { '2': -100 }, stream: false, model: 'not-this' }
    });
    expect(body).toEqual({
      logit_bias: { '2': -100 },
      max_tokens: 64,
      ttl: 300,
      model: 'smol',
      messages: requestMessages(state),
      stream: true,
      stream_options: { include_usage: true }
    });
    expect(buildChatRequest(emptyChat('m'), { ttl: 0, maxTokens: 0 })).not.toHaveProperty('max_tokens');
  });

  it('survives a save and restore, dropping what is not a turn', () => {
    const state = emptyChat('smol', 'sys');
    state.turns.push({ role: 'user', content: 'Hi' });
    state.turns.push({
      role: 'assistant',
      content: 'Hello',
      reasoning: 'think',
      model: 'smol',
      stopped: true,
      stats: { completionTokens: 3, approximate: true, tokensPerSecond: 10 }
    });
    const saved = JSON.parse(JSON.stringify(serializeChat(state)));
    expect(restoreChat(saved)).toEqual(state);
    saved.turns.push({ role: 'tool', content: 'x' }, null, { role: 'user' });
    expect(restoreChat(saved)?.turns).toHaveLength(2);
    expect(restoreChat({ version: 99, turns: [] })).toBeNull();
    expect(restoreChat('nonsense')).toBeNull();
    expect(restoreChat(undefined)).toBeNull();
  });
});

describe('statistics', () => {
  it('measures tokens/s from the first token to the last, with the usage count', () => {
    const t = new StatsTracker(1000);
    t.delta(1500);
    t.delta(1600);
    t.delta(2500);
    t.usage({ prompt_tokens: 12, completion_tokens: 11 });
    t.finish('length');
    const stats = t.result(2600);
    expect(stats).toEqual({
      completionTokens: 11,
      promptTokens: 12,
      timeToFirstTokenMs: 500,
      tokensPerSecond: 10, // 10 intervals in 1 s
      finishReason: 'length'
    });
    expect(formatStats(stats)).toBe('10.0 tok/s · 11 tokens · prompt 12 · 0.50 s to first token · finish: length');
  });

  it('counts streamed deltas when a stopped answer got no usage', () => {
    const t = new StatsTracker(0);
    t.delta(100);
    t.delta(300);
    const stats = t.result(400);
    expect(stats).toMatchObject({ completionTokens: 2, approximate: true, tokensPerSecond: 5 });
    expect(formatStats(stats, true)).toBe('5.0 tok/s · ~2 tokens · 0.10 s to first token · stopped');
    expect(formatStats(new StatsTracker(0).result(10), true)).toBe('stopped');
  });

  it('formats sizes and durations', () => {
    expect(formatBytes(98_400_000)).toBe('98.4 MB');
    expect(formatBytes(2_500_000_000)).toBe('2.50 GB');
    expect(formatBytes(null)).toBe('');
    expect(formatDuration(3_598_000)).toBe('59m 58s');
    expect(formatDuration(3_600_000)).toBe('1h 00m');
    expect(formatDuration(12_400)).toBe('12s');
  });
});
