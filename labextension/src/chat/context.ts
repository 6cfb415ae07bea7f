/**
 * The notebook as context for a chat message: the active cell's source (or the editor's
 * selection) and its error output, written after the user's text so a small model sees
 * the question first. Pure: `notebook.ts` reads the cell, this formats it.
 */

export interface ICellError {
  ename: string;
  evalue: string;
  traceback: string[];
}

export interface ICellContext {
  /** 0-based position in the notebook. */
  index: number;
  /** The execution count shown as [n], if the cell ran. */
  executionCount?: number | null;
  cellType: string;
  language: string;
  source: string;
  /** The editor's selection, when there is one (it is sent instead of the whole cell). */
  selection?: string;
  error?: ICellError | null;
  notebookPath?: string;
}

/** Characters kept of a source or a traceback (a big cell must not fill the context). */
export const MAX_CONTEXT_CHARS = 6000;

// eslint-disable-next-line no-control-regex -- ANSI escapes in tracebacks start with ESC
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

function capped(text: string, max = MAX_CONTEXT_CHARS): string {
  if (text.length <= max) {
    return text;
  }
  return `${text.slice(0, max)}\n[... ${text.length - max} more characters not sent]`;
}

function fence(text: string, language = ''): string {
  const longest = Math.max(2, ...(text.match(/`+/g) ?? []).map(run => run.length));
  const f = '`'.repeat(longest + 1);
  return `${f}${language}\n${text}\n${f}`;
}

/** What a chip under the message box says ("cell [3] · selection · error"). */
export function describeContext(context: ICellContext | null): string {
  if (!context) {
    return 'no active cell';
  }
  const parts = [
    typeof context.executionCount === 'number' ? `cell [${context.executionCount}]` : `cell ${context.index + 1}`
  ];
  if (context.selection) {
    parts.push('selection');
  }
  if (context.error) {
    parts.push(`error: ${context.error.ename}`);
  }
  return parts.join(' · ');
}

/** The text appended to the message. */
export function formatCellContext(context: ICellContext): string {
  const where = typeof context.executionCount === 'number' ? ` [${context.executionCount}]` : '';
  const language = context.cellType === 'code' ? context.language : context.cellType;
  const lines: string[] = [];
  if (context.selection) {
    lines.push(`Selected code from the active notebook cell${where}:`);
    lines.push(fence(capped(context.selection), language));
  } else {
    lines.push(`The active notebook cell${where}:`);
    lines.push(fence(capped(context.source), language));
  }
  if (context.error) {
    const { ename, evalue, traceback } = context.error;
    const trace = stripAnsi(traceback.join('\n')).trim();
    lines.push('It raised this error:');
    lines.push(fence(capped(trace || `${ename}: ${evalue}`)));
  }
  return lines.join('\n');
}
