/**
 * What the model sees at the cursor: the text before it (this cell's, then the cells above,
 * nearest first) and the text after it, cut to a token budget; and the ghost text cut to
 * a number of lines. Pure functions, knowing nothing of JupyterLab, so they are unit-tested.
 *
 * Tokens are estimated from characters (code runs at about three characters a token in the
 * small models' vocabularies); the server counts exactly, the budget only has to keep the
 * prompt near the size the user chose.
 */

/** Characters per token, the estimate behind every budget here. */
export const CHARS_PER_TOKEN = 3;

/** The share of the budget the text after the cursor may take (the rest goes before it). */
export const SUFFIX_SHARE = 0.25;

/** A cell above the active one, as the prompt uses it. */
export interface ICellText {
  type: string; // "code" | "markdown" | "raw"
  source: string;
}

export interface IPromptInput {
  /** The editor's whole text and the cursor's offset in it. */
  text: string;
  offset: number;
  /** The cells above the active one, top to bottom (none in the file editor). */
  cellsAbove?: ICellText[];
  /** The budget for prefix and suffix together, in (estimated) tokens. */
  contextTokens: number;
  /** The comment marker markdown cells are turned into (e.g. "#"); empty: left out. */
  commentPrefix?: string;
}

export interface IPrompt {
  prefix: string;
  suffix: string;
}

/** The last `chars` characters of `text`, starting at a line boundary when one is near. */
export function tail(text: string, chars: number): string {
  if (chars <= 0) {
    return '';
  }
  if (text.length <= chars) {
    return text;
  }
  const cut = text.slice(text.length - chars);
  const newline = cut.indexOf('\n');
  return newline >= 0 && newline < cut.length - 1 ? cut.slice(newline + 1) : cut;
}

/** The first `chars` characters of `text`, ending at a line boundary when one is near. */
export function head(text: string, chars: number): string {
  if (chars <= 0) {
    return '';
  }
  if (text.length <= chars) {
    return text;
  }
  const cut = text.slice(0, chars);
  const newline = cut.lastIndexOf('\n');
  return newline > 0 ? cut.slice(0, newline + 1) : cut;
}

/** A cell's text as context: code as it is, markdown as comments, raw cells left out. */
export function cellContext(cell: ICellText, commentPrefix: string): string {
  const source = cell.source.replace(/\s+$/, '');
  if (!source) {
    return '';
  }
  if (cell.type === 'code') {
    return source;
  }
  if (cell.type === 'markdown' && commentPrefix) {
    return source
      .split('\n')
      .map(line => (line ? `${commentPrefix} ${line}` : commentPrefix))
      .join('\n');
  }
  return '';
}

/**
 * Prefix and suffix for a completion at `offset`: the suffix gets at most a quarter of the
 * budget (what follows the cursor in this cell), the prefix the rest, filled from the
 * cursor backwards: this cell, then the cells above, nearest first, the last one cut at a
 * line boundary.
 */
export function buildPrompt(input: IPromptInput): IPrompt {
  const budget = Math.max(0, Math.floor(input.contextTokens * CHARS_PER_TOKEN));
  const offset = Math.min(Math.max(0, input.offset), input.text.length);
  const suffix = head(input.text.slice(offset), Math.floor(budget * SUFFIX_SHARE));
  let room = budget - suffix.length;
  const before = input.text.slice(0, offset);
  let prefix = tail(before, room);
  if (prefix.length < before.length) {
    return { prefix, suffix }; // the cell alone fills the budget: no gap, no cells above
  }
  room -= prefix.length;
  const cells = input.cellsAbove ?? [];
  const separator = '\n\n';
  for (let i = cells.length - 1; i >= 0 && room > separator.length; i--) {
    const context = cellContext(cells[i], input.commentPrefix ?? '');
    if (!context) {
      continue;
    }
    const part = tail(context, room - separator.length);
    if (part) {
      prefix = part + separator + prefix;
      room -= part.length + separator.length;
    }
    if (part.length < context.length) {
      break; // this cell was cut: nothing from further up
    }
  }
  return { prefix, suffix };
}

/** Ghost text cut to `maxLines` lines (0: no limit); `full` says the limit was reached. */
export function clampLines(text: string, maxLines: number): { text: string; full: boolean } {
  if (maxLines <= 0) {
    return { text, full: false };
  }
  const lines = text.split('\n');
  if (lines.length <= maxLines) {
    return { text, full: false };
  }
  return { text: lines.slice(0, maxLines).join('\n'), full: true };
}

/** The comment marker of a language (for markdown cells as context); "" when unknown. */
export function commentPrefixFor(mimeType: string | undefined): string {
  const mime = (mimeType ?? '').toLowerCase();
  if (/python|julia|^text\/x-r|shell|sh$|ruby|perl|yaml|toml/.test(mime)) {
    return '#';
  }
  if (/javascript|typescript|java|c\+\+|csrc|rust|go|scala|kotlin|swift/.test(mime)) {
    return '//';
  }
  if (/sql|lua|haskell/.test(mime)) {
    return '--';
  }
  return '';
}
