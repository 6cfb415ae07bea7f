import { describe, expect, it } from 'vitest';

import { chooseModel } from '../choose';
import { CHARS_PER_TOKEN, buildPrompt, cellContext, clampLines, commentPrefixFor, head, tail } from '../prompt';
import { DEFAULT_COMPLETER_SETTINGS, readCompleterSettings } from '../settings';

describe('buildPrompt', () => {
  it('splits the cell at the cursor', () => {
    const text = 'import math\nx = math.\nprint(x)\n';
    const offset = text.indexOf('\nprint');
    expect(buildPrompt({ text, offset, contextTokens: 1000 })).toEqual({
      prefix: 'import math\nx = math.',
      suffix: '\nprint(x)\n'
    });
  });

  it('puts the cells above before the cell, nearest last, markdown as comments, raw left out', () => {
    const prompt = buildPrompt({
      text: 'df.',
      offset: 3,
      cellsAbove: [
        { type: 'code', source: 'import pandas as pd\n' },
        { type: 'markdown', source: 'Load the data\n\nfrom disk' },
        { type: 'raw', source: 'RAW' },
        { type: 'code', source: '   ' },
        { type: 'code', source: 'df = pd.read_csv("a.csv")' }
      ],
      contextTokens: 1000,
      commentPrefix: '#'
    });
    expect(prompt.prefix).toBe(
      'import pandas as pd\n\n# Load the data\n#\n# from disk\n\ndf = pd.read_csv("a.csv")\n\ndf.'
    );
    expect(prompt.suffix).toBe('');
  });

  it('keeps prefix and suffix within the budget, the nearest text first', () => {
    const line = 'value = compute(value) + 1\n'; // 27 characters
    const big = line.repeat(400);
    const text = big + 'CURSOR' + big;
    const contextTokens = 100;
    const budget = contextTokens * CHARS_PER_TOKEN;
    const prompt = buildPrompt({
      text,
      offset: big.length + 'CURSOR'.length,
      cellsAbove: [{ type: 'code', source: 'FAR_AWAY = 1' }],
      contextTokens
    });
    expect(prompt.prefix.length + prompt.suffix.length).toBeLessThanOrEqual(budget);
    expect(prompt.suffix.length).toBeLessThanOrEqual(budget / 4);
    expect(prompt.prefix.endsWith(line + 'CURSOR')).toBe(true);
    expect(prompt.prefix.startsWith('value')).toBe(true); // cut at a line boundary
    expect(prompt.prefix).not.toContain('FAR_AWAY');
    expect(prompt.suffix.startsWith('value')).toBe(true);
    expect(prompt.suffix.endsWith('\n')).toBe(true);
  });

  it('fills the room the cell leaves with the cells above', () => {
    const prompt = buildPrompt({
      text: 'b = a + 1',
      offset: 9,
      cellsAbove: [
        { type: 'code', source: 'x'.repeat(10_000) },
        { type: 'code', source: 'a = 1\n'.repeat(5) }
      ],
      contextTokens: 50
    });
    expect(prompt.prefix.endsWith('a = 1\n'.repeat(4) + 'a = 1\n\nb = a + 1')).toBe(true);
    expect(prompt.prefix.length).toBeLessThanOrEqual(50 * CHARS_PER_TOKEN);
  });
});

describe('helpers', () => {
  it('head and tail cut at line boundaries', () => {
    expect(tail('one\ntwo\nthree', 9)).toBe('three');
    expect(tail('abc', 10)).toBe('abc');
    expect(tail('abc', 0)).toBe('');
    expect(head('one\ntwo\nthree', 9)).toBe('one\ntwo\n');
    expect(head('abcdef', 3)).toBe('abc');
  });

  it('clampLines stops at the line limit', () => {
    expect(clampLines('a\nb\nc', 2)).toEqual({ text: 'a\nb', full: true });
    expect(clampLines('a\nb', 2)).toEqual({ text: 'a\nb', full: false });
    expect(clampLines('a\nb\nc', 0)).toEqual({ text: 'a\nb\nc', full: false });
  });

  it('cellContext and commentPrefixFor', () => {
    expect(cellContext({ type: 'markdown', source: '# Title' }, '')).toBe('');
    expect(cellContext({ type: 'markdown', source: '# Title' }, '//')).toBe('// # Title');
    expect(commentPrefixFor('text/x-ipython')).toBe('#');
    expect(commentPrefixFor('text/typescript')).toBe('//');
    expect(commentPrefixFor(undefined)).toBe('');
  });
});

describe('chooseModel', () => {
  const rows = [
    { identifier: 'all-minilm-l6-v2', modelKey: 'all-minilm-l6-v2', type: 'embeddings' },
    { identifier: 'smollm2-135m-instruct', modelKey: 'smollm2-135m-instruct', type: 'llm' },
    { identifier: 't2', modelKey: 'gemma-3-270m', type: 'llm' }
  ];
  const settings = (over: object) => ({ ...DEFAULT_COMPLETER_SETTINGS, ...over });

  it('takes the first loaded LLM, never an embedding model', () => {
    expect(chooseModel(rows, settings({}))).toBe('smollm2-135m-instruct');
    expect(chooseModel([rows[0]], settings({}))).toBeNull();
    expect(chooseModel([], settings({ allowJitLoad: true }))).toBeNull();
  });

  it('finds the configured model by instance or key, JIT only when allowed', () => {
    expect(chooseModel(rows, settings({ model: 'Gemma-3-270m' }))).toBe('t2');
    expect(chooseModel(rows, settings({ model: 't2' }))).toBe('t2');
    expect(chooseModel(rows, settings({ model: 'qwen' }))).toBeNull();
    expect(chooseModel(rows, settings({ model: 'qwen', allowJitLoad: true }))).toBe('qwen');
  });
});

describe('readCompleterSettings', () => {
  it('falls back to the defaults for missing or mistyped values', () => {
    expect(readCompleterSettings(null)).toEqual(DEFAULT_COMPLETER_SETTINGS);
    const read = readCompleterSettings({ debounceMs: 'soon', maxLines: 3.7, model: ' m ', extraRequestFields: [1] });
    expect(read.debounceMs).toBe(DEFAULT_COMPLETER_SETTINGS.debounceMs);
    expect(read.maxLines).toBe(3);
    expect(read.model).toBe('m');
    expect(read.extraRequestFields).toEqual({});
  });
});
