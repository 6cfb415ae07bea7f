import { describe, expect, it } from 'vitest';

import { fenced, splitMarkdown, splitThinking } from '../chat/markdown';
import { describeContext, formatCellContext, stripAnsi } from '../chat/context';

describe('splitMarkdown', () => {
  it('cuts prose and fenced code blocks apart, in order', () => {
    const text = 'Here:\n\n```python\nprint(42)\n```\n\nAnd ~~~\n~~~sh\nls\n~~~';
    expect(splitMarkdown(text)).toEqual([
      { kind: 'markdown', text: 'Here:\n' },
      { kind: 'code', language: 'python', code: 'print(42)', closed: true },
      { kind: 'markdown', text: '\nAnd ~~~' },
      { kind: 'code', language: 'sh', code: 'ls', closed: true }
    ]);
  });

  it('keeps an unclosed fence open to the end (a streaming answer)', () => {
    expect(splitMarkdown('```python\nprint(4')).toEqual([
      { kind: 'code', language: 'python', code: 'print(4', closed: false }
    ]);
    // a shorter fence inside a longer one does not close it
    expect(splitMarkdown('````md\n```\nx\n````')).toEqual([
      { kind: 'code', language: 'md', code: '```\nx', closed: true }
    ]);
    expect(splitMarkdown('')).toEqual([]);
  });

  it('fences code with a fence longer than any backtick run inside', () => {
    expect(fenced('a ``` b', 'py')).toBe('````py\na ``` b\n````');
    expect(fenced('x', '')).toBe('```\nx\n```');
  });

  it('folds inline <think> reasoning', () => {
    expect(splitThinking('<think>hmm</think>\n\nAnswer')).toEqual({ reasoning: 'hmm', content: 'Answer' });
    expect(splitThinking('<think>still thinking')).toEqual({ reasoning: 'still thinking', content: '' });
    expect(splitThinking('No thoughts')).toEqual({ reasoning: '', content: 'No thoughts' });
  });
});

describe('notebook context', () => {
  const cell = {
    index: 2,
    executionCount: 3,
    cellType: 'code',
    language: 'python',
    source: 'x = 1\nprint(y)'
  };

  it('sends the cell, or the selection, and its error without terminal colours', () => {
    const error = { ename: 'NameError', evalue: "name 'y' is not defined", traceback: ['\u001b[0;31mNameError\u001b[0m: name y'] };
    const text = formatCellContext({ ...cell, error });
    expect(text).toBe(
      'The active notebook cell [3]:\n```python\nx = 1\nprint(y)\n```\nIt raised this error:\n```\nNameError: name y\n```'
    );
    expect(formatCellContext({ ...cell, selection: 'print(y)' })).toBe(
      'Selected code from the active notebook cell [3]:\n```python\nprint(y)\n```'
    );
    expect(describeContext({ ...cell, error })).toBe('cell [3] · error: NameError');
    expect(describeContext({ ...cell, executionCount: null })).toBe('cell 3');
    expect(describeContext(null)).toBe('no active cell');
    expect(stripAnsi('\u001b[1;32mok\u001b[0m')).toBe('ok');
  });

  it('caps a huge cell', () => {
    const text = formatCellContext({ ...cell, source: 'a'.repeat(10_000) });
    expect(text).toContain('more characters not sent');
    expect(text.length).toBeLessThan(7000);
  });
});
