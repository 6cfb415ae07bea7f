/**
 * An answer's text cut into what the chat renders differently: Markdown prose, fenced
 * code blocks (each gets "Copy" and "Insert as cell below") and reasoning a model wrote
 * inline as `<think>...</think>` (folded, like the `reasoning` field). Pure, so the
 * cutting is unit-tested; while an answer streams, an unclosed fence or think tag counts
 * as open to the end of the text.
 */

export type Segment =
  | { kind: 'markdown'; text: string }
  | { kind: 'code'; language: string; code: string; closed: boolean };

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;

/** Markdown and fenced code blocks, in order; empty prose between blocks is dropped. */
export function splitMarkdown(text: string): Segment[] {
  const segments: Segment[] = [];
  const lines = text.split('\n');
  let prose: string[] = [];
  let code: string[] | null = null;
  let fence = '';
  let language = '';
  const flushProse = () => {
    const joined = prose.join('\n');
    if (joined.trim()) {
      segments.push({ kind: 'markdown', text: joined });
    }
    prose = [];
  };
  for (const line of lines) {
    if (code === null) {
      const open = FENCE.exec(line);
      if (open) {
        flushProse();
        fence = open[1];
        language = open[2] ?? '';
        code = [];
      } else {
        prose.push(line);
      }
      continue;
    }
    const trimmed = line.trim();
    if (trimmed.length >= fence.length && trimmed === fence[0].repeat(trimmed.length) && line.search(/\S/) <= 3) {
      segments.push({ kind: 'code', language, code: code.join('\n'), closed: true });
      code = null;
    } else {
      code.push(line);
    }
  }
  if (code !== null) {
    segments.push({ kind: 'code', language, code: code.join('\n'), closed: false });
  } else {
    flushProse();
  }
  return segments;
}

/** A fenced block for the Markdown renderer, with a fence longer than any run inside. */
export function fenced(code: string, language: string): string {
  const longest = Math.max(2, ...(code.match(/`+/g) ?? []).map(run => run.length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}${language}\n${code}\n${fence}`;
}

/** `<think>...</think>` at the start of an answer, taken out as reasoning. */
export function splitThinking(content: string): { reasoning: string; content: string } {
  const match = /^\s*<think>([\s\S]*?)(<\/think>|$)/.exec(content);
  if (!match) {
    return { reasoning: '', content };
  }
  return { reasoning: match[1].trim(), content: content.slice(match[0].length).replace(/^\s+/, '') };
}
