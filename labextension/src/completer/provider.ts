/**
 * LM Studio's provider for JupyterLab 4's inline completer: ghost text from a local model.
 *
 * One request at a time: every `fetch` (JupyterLab calls it on each edit) aborts the one in
 * flight first, so a user who keeps typing never waits behind a stale completion and the
 * server frees the model's slot at once (it treats the closed connection as a cancel).
 * `fetch` waits out the debounce, then returns as soon as the first text arrives, marked
 * `isIncomplete` with a token; JupyterLab then calls `stream(token)` for the rest.
 */
import {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider,
  InlineCompletionTriggerKind
} from '@jupyterlab/completer';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { JSONValue } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { chooseModel } from './choose';
import { CompletionClient } from './client';
import { ICellText, buildPrompt, clampLines, commentPrefixFor } from './prompt';
import { ICompleterSettings } from './settings';

export const PROVIDER_ID = 'lms-jupyter';

/** JupyterLab's timeout for this provider unless the user set one (ms). */
const DEFAULT_TIMEOUT_MS = 15000;
/** A completion whose stream JupyterLab never asks for is dropped after this long (ms). */
const UNCLAIMED_STREAM_MS = 3000;

interface IRunning {
  controller: AbortController;
  pieces: AsyncGenerator<string>;
  text: string;
  maxLines: number;
  unclaimed: number;
}

export interface IProviderOptions {
  client: CompletionClient;
  settings: () => ICompleterSettings;
  icon?: LabIcon;
}

/** The cells above the active one, when `widget` is a notebook panel (duck-typed). */
export function cellsAbove(widget: Widget | undefined): ICellText[] {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the editor's widget type does not declare the notebook it belongs to
  const notebook = (widget as any)?.content;
  const cells = notebook?.widgets;
  const active = notebook?.activeCellIndex;
  if (!Array.isArray(cells) || typeof active !== 'number') {
    return [];
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- cells of any notebook model: only source and cell_type are read, and checked
  return cells.slice(0, Math.max(0, active)).map((cell: any) => ({
    type: String(cell?.model?.type ?? 'code'),
    source: String(cell?.model?.sharedModel?.getSource?.() ?? '')
  }));
}

function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise(resolve => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => resolve(!signal.aborted), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export class LMSInlineCompletionProvider implements IInlineCompletionProvider {
  readonly identifier = PROVIDER_ID;
  readonly name = 'LM Studio';
  readonly icon?: LabIcon;
  /** Defaults for JupyterLab's per-provider settings (Inline Completer > LM Studio provider):
   * on, and our own debounce (JupyterLab's stays 0, so there is one, in our settings). */
  readonly schema: ISettingRegistry.IProperty = {
    default: { enabled: true, debouncerDelay: 0, timeout: DEFAULT_TIMEOUT_MS }
  };

  constructor(private readonly _options: IProviderOptions) {
    this.icon = _options.icon;
  }

  private _current: AbortController | null = null;
  private _running = new Map<string, IRunning>();
  private _serial = 0;
  private _timeoutMs = DEFAULT_TIMEOUT_MS;

  configure(settings: { [property: string]: JSONValue }): void {
    const timeout = settings?.timeout;
    if (typeof timeout === 'number' && timeout > 0) {
      this._timeoutMs = timeout;
    }
  }

  /** Abort the completion in flight, if any (a newer request, or the plugin going away). */
  cancel(): void {
    this._current?.abort();
    this._current = null;
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    this.cancel();
    const called = Date.now(); // JupyterLab's timeout runs from here
    const settings = this._options.settings();
    const empty: IInlineCompletionList = { items: [] };
    if (!settings.enabled) {
      return empty;
    }
    const controller = new AbortController();
    this._current = controller;
    const signal = controller.signal;
    if (context.triggerKind === InlineCompletionTriggerKind.Automatic && settings.debounceMs > 0) {
      if (!(await sleep(settings.debounceMs, signal))) {
        return empty;
      }
    }
    let model: string | null;
    try {
      model = chooseModel(await this._options.client.loaded(), settings);
    } catch (reason) {
      console.debug('lms-jupyter completer: could not list loaded models', reason);
      return empty;
    }
    if (!model || signal.aborted) {
      return empty; // no model loaded: stay quiet
    }
    const { prefix, suffix } = buildPrompt({
      text: request.text,
      offset: request.offset,
      cellsAbove: cellsAbove(context.widget),
      contextTokens: settings.contextTokens,
      commentPrefix: commentPrefixFor(request.mimeType)
    });
    if (!prefix.trim()) {
      return empty;
    }
    const body = {
      temperature: settings.temperature,
      ...settings.extraRequestFields,
      model,
      prompt: prefix,
      suffix,
      max_tokens: settings.maxTokens
    };
    const pieces = this._options.client.stream(body, signal);
    // JupyterLab drops an answer later than its timeout: give up before that.
    const deadline = setTimeout(
      () => controller.abort(),
      Math.max(1000, this._timeoutMs - (Date.now() - called) - 500)
    );
    let text = '';
    try {
      while (!text) {
        const next = await pieces.next();
        if (next.done) {
          break;
        }
        text += next.value;
      }
    } catch (reason) {
      this._options.client.forget();
      console.debug('lms-jupyter completer: the completion failed', reason);
      controller.abort();
      return empty;
    } finally {
      clearTimeout(deadline);
    }
    if (!text || signal.aborted) {
      return empty;
    }
    const clamped = clampLines(text, settings.maxLines);
    if (clamped.full) {
      controller.abort();
      return { items: [{ insertText: clamped.text }] };
    }
    const token = `${PROVIDER_ID}-${++this._serial}`;
    const running: IRunning = {
      controller,
      pieces,
      text,
      maxLines: settings.maxLines,
      unclaimed: window.setTimeout(() => this._drop(token), UNCLAIMED_STREAM_MS)
    };
    this._running.set(token, running);
    const item: IInlineCompletionItem = { insertText: text, isIncomplete: true, token };
    return { items: [item] };
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const running = this._running.get(token);
    if (!running) {
      return;
    }
    clearTimeout(running.unclaimed);
    try {
      for await (const piece of running.pieces) {
        const clamped = clampLines(running.text + piece, running.maxLines);
        running.text = clamped.text;
        yield { response: { insertText: running.text } };
        if (clamped.full) {
          break;
        }
      }
    } catch (reason) {
      console.debug('lms-jupyter completer: the stream failed', reason);
      yield { response: { insertText: running.text, error: { message: String(reason) } } };
    } finally {
      this._drop(token);
    }
  }

  private _drop(token: string): void {
    const running = this._running.get(token);
    if (running) {
      clearTimeout(running.unclaimed);
      running.controller.abort();
      this._running.delete(token);
    }
  }

  dispose(): void {
    this.cancel();
    for (const token of [...this._running.keys()]) {
      this._drop(token);
    }
  }
}
