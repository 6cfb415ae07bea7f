/**
 * The sidebar's state as plain data: the model list (merged from `api/v0/models`,
 * `api/v0/ps` and `api/v1/models`), the chat model choices, the conversation, answer
 * statistics and what is saved in JupyterLab's state database. No DOM and no JupyterLab
 * imports, so all of it is unit-tested.
 */
import type { ChatCompletionRequest } from './generated/api';
import { IUsage } from './chatstream';

// ---- server shapes (only the fields the sidebar reads) ---------------------------------

/** A row of `GET lms/api/v0/models`. */
export interface IModelV0 {
  id: string;
  type?: string; // "llm" | "vlm" | "embeddings"
  publisher?: string;
  arch?: string;
  quantization?: string;
  state?: string; // "loaded" | "not-loaded"
  max_context_length?: number;
  loaded_context_length?: number;
  capabilities?: string[];
}

/** A row of `GET lms/api/v1/models` (for the display name and the file size). */
export interface IModelV1 {
  key: string;
  display_name?: string;
  size_bytes?: number;
  params_string?: string | null;
}

/** A row of `GET lms/api/v0/ps` (`lms ps --json` plus the server's extras). */
export interface IInstance {
  modelKey: string;
  identifier: string;
  displayName?: string;
  publisher?: string;
  sizeBytes?: number;
  contextLength?: number;
  status?: InstanceStatus;
  queued?: number;
  ttlMs?: number | null;
  ttlRemainingMs?: number | null;
  jit?: boolean;
  /** 0..1 while `status` is "loading" (servers that report load progress). */
  loadProgress?: number | null;
  /** Why its worker process died, while `status` is "crashed". */
  crash?: { reason: string } | null;
}

/** The server's instance states (lms_jupyter/engine/instance.py InstanceStatus), and
 * "loading" for a load in progress. */
export type InstanceStatus =
  | 'idle'
  | 'processingPrompt'
  | 'generating'
  | 'computingEmbedding'
  | 'crashed'
  | 'loading';

// ---- the model list ----------------------------------------------------------------------

export interface IInstanceView {
  identifier: string;
  status: string;
  statusLabel: string;
  queued: number;
  ttlRemainingMs: number | null;
  contextLength?: number;
  loading: boolean;
  loadProgress: number | null;
  crashReason: string | null;
}

export interface IModelView {
  id: string;
  name: string;
  publisher: string;
  quantization: string;
  sizeBytes: number | null;
  maxContextLength: number | null;
  loadedContextLength: number | null;
  capabilities: string[];
  /** "loaded" | "loading" | "not-loaded" */
  state: string;
  instances: IInstanceView[];
}

const STATUS_LABELS: { [status: string]: string } = {
  idle: 'idle',
  processingPrompt: 'processing prompt',
  generating: 'generating',
  computingEmbedding: 'computing embeddings',
  crashed: 'crashed',
  loading: 'loading'
};

export function statusLabel(status: string | undefined): string {
  if (!status) {
    return 'unknown';
  }
  return STATUS_LABELS[status] ?? status.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

/** What a model can do, in words ("tool use", "embeddings"). */
export function capabilityLabels(model: IModelV0): string[] {
  const out: string[] = [];
  for (const cap of model.capabilities ?? []) {
    out.push(cap === 'tool_use' ? 'tool use' : cap.replace(/_/g, ' '));
  }
  if ((model.type ?? '').startsWith('embedding')) {
    out.push('embeddings');
  }
  if (model.type === 'vlm') {
    out.push('vision');
  }
  return out;
}

/** One view row per model; the catalogue order is kept, loaded instances attached. */
export function mergeModels(
  models: IModelV0[],
  instances: IInstance[],
  details: IModelV1[] = []
): IModelView[] {
  const byKey = new Map(details.map(d => [d.key, d]));
  const rows = models.map(model => {
    const mine = instances.filter(i => i.modelKey === model.id);
    const detail = byKey.get(model.id);
    const views = mine.map(instanceView);
    const loading = views.some(v => v.loading);
    const loaded = views.some(v => !v.loading) || (model.state === 'loaded' && !loading);
    const size = detail?.size_bytes ?? mine.find(i => i.sizeBytes)?.sizeBytes ?? null;
    return {
      id: model.id,
      name: detail?.display_name || mine[0]?.displayName || model.id,
      publisher: model.publisher ?? '',
      quantization: model.quantization ?? '',
      sizeBytes: typeof size === 'number' ? size : null,
      maxContextLength: model.max_context_length ?? null,
      loadedContextLength:
        model.loaded_context_length ?? mine.find(i => i.contextLength)?.contextLength ?? null,
      capabilities: capabilityLabels(model),
      state: loaded ? 'loaded' : loading ? 'loading' : 'not-loaded',
      instances: views
    };
  });
  // Instances of models the catalogue does not list (should not happen) still show.
  const known = new Set(models.map(m => m.id));
  for (const inst of instances) {
    if (!known.has(inst.modelKey)) {
      known.add(inst.modelKey);
      const mine = instances.filter(i => i.modelKey === inst.modelKey);
      const views = mine.map(instanceView);
      rows.push({
        id: inst.modelKey,
        name: inst.displayName || inst.modelKey,
        publisher: inst.publisher ?? '',
        quantization: '',
        sizeBytes: inst.sizeBytes ?? null,
        maxContextLength: null,
        loadedContextLength: inst.contextLength ?? null,
        capabilities: [],
        state: views.every(v => v.loading) ? 'loading' : 'loaded',
        instances: views
      });
    }
  }
  return rows;
}

function instanceView(inst: IInstance): IInstanceView {
  const status = inst.status ?? 'idle';
  const progress = inst.loadProgress;
  return {
    identifier: inst.identifier,
    status,
    statusLabel: statusLabel(status),
    queued: inst.queued ?? 0,
    ttlRemainingMs: inst.ttlRemainingMs ?? null,
    contextLength: inst.contextLength,
    loading: status === 'loading',
    loadProgress:
      typeof progress === 'number' && isFinite(progress) ? Math.min(1, Math.max(0, progress)) : null,
    crashReason: status === 'crashed' ? inst.crash?.reason ?? 'its worker process died' : null
  };
}

/**
 * The progress bar a model row shows: null for none, {value: null} for an indeterminate one
 * (our load request is running and the server reports no progress), {value: 0..1} when the
 * server's `ps` row reports `loadProgress`.
 */
export function loadProgressOf(row: IModelView, pending: boolean): { value: number | null } | null {
  const loading = row.instances.find(i => i.loading);
  if (loading) {
    return { value: loading.loadProgress };
  }
  return pending ? { value: null } : null;
}

// ---- formatting --------------------------------------------------------------------------

export function formatBytes(bytes: number | null | undefined): string {
  if (typeof bytes !== 'number' || !isFinite(bytes) || bytes < 0) {
    return '';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** "59m 58s", "1h 00m", "12s". */
export function formatDuration(ms: number | null | undefined): string {
  if (typeof ms !== 'number' || !isFinite(ms) || ms < 0) {
    return '';
  }
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) {
    return `${h}h ${String(m).padStart(2, '0')}m`;
  }
  if (m > 0) {
    return `${m}m ${String(s).padStart(2, '0')}s`;
  }
  return `${s}s`;
}

export function formatContext(tokens: number | null | undefined): string {
  if (typeof tokens !== 'number' || !isFinite(tokens) || tokens <= 0) {
    return '';
  }
  return tokens >= 1024 && tokens % 1024 === 0 ? `${tokens / 1024}k ctx` : `${tokens} ctx`;
}

// ---- chat model choices ------------------------------------------------------------------

export interface IModelChoice {
  value: string;
  label: string;
  group: 'loaded' | 'all';
}

/**
 * The "Chat model" picker: loaded instances first (by identifier), then every model on disk
 * that is not already listed (a request names it and the server loads it just in time).
 */
export function chatModelChoices(
  models: IModelV0[],
  instances: IInstance[],
  names?: Map<string, string>
): IModelChoice[] {
  const choices: IModelChoice[] = [];
  const seen = new Set<string>();
  const embedding = new Set(models.filter(m => (m.type ?? '').startsWith('embedding')).map(m => m.id));
  for (const inst of instances) {
    if (inst.status === 'loading' || seen.has(inst.identifier) || embedding.has(inst.modelKey)) {
      continue;
    }
    seen.add(inst.identifier);
    const name = names?.get(inst.modelKey);
    let label: string;
    if (name) {
      label = inst.identifier === inst.modelKey ? name : `${name} (${inst.identifier})`;
    } else {
      label = inst.identifier === inst.modelKey ? inst.identifier : `${inst.identifier} (${inst.modelKey})`;
    }
    choices.push({ value: inst.identifier, label, group: 'loaded' });
  }
  for (const model of models) {
    if (embedding.has(model.id) || seen.has(model.id)) {
      continue;
    }
    seen.add(model.id);
    choices.push({ value: model.id, label: names?.get(model.id) || model.id, group: 'all' });
  }
  return choices;
}

/** Keep the current choice while it exists; else the default model; else the first loaded. */
export function pickChatModel(
  current: string,
  choices: IModelChoice[],
  defaultModel = ''
): string {
  const has = (v: string) => v !== '' && choices.some(c => c.value === v);
  if (has(current)) {
    return current;
  }
  if (has(defaultModel)) {
    return defaultModel;
  }
  if (current) {
    return current; // e.g. restored from a saved chat: JIT may still load it
  }
  if (defaultModel) {
    return defaultModel;
  }
  return choices.length ? choices[0].value : '';
}

// ---- the conversation --------------------------------------------------------------------

export interface ITurnStats {
  promptTokens?: number;
  completionTokens?: number;
  /** true when no usage arrived (a stopped answer) and the count is of streamed deltas. */
  approximate?: boolean;
  tokensPerSecond?: number;
  timeToFirstTokenMs?: number;
  finishReason?: string;
}

/** A tool call the model made (streamed as `delta.tool_calls`), shown as such. */
export interface IToolCall {
  id?: string;
  name: string;
  arguments: string;
}

export interface ITurn {
  role: 'user' | 'assistant';
  content: string;
  /** Notebook context sent after the user's text (the active cell, its error). */
  context?: string;
  toolCalls?: IToolCall[];
  reasoning?: string;
  model?: string;
  stats?: ITurnStats;
  error?: string;
  errorCode?: string;
  stopped?: boolean;
}

export interface IChatState {
  model: string;
  systemPrompt: string;
  turns: ITurn[];
}

export function emptyChat(model = '', systemPrompt = ''): IChatState {
  return { model, systemPrompt, turns: [] };
}

export interface IChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The request's messages: the system prompt, then every turn that has text. */
export function requestMessages(state: IChatState): IChatMessage[] {
  const messages: IChatMessage[] = [];
  if (state.systemPrompt.trim()) {
    messages.push({ role: 'system', content: state.systemPrompt });
  }
  for (const turn of state.turns) {
    if (turn.role === 'assistant' && !turn.content && !turn.toolCalls?.length) {
      continue; // failed before any text: the model never said it
    }
    const content = turn.context ? `${turn.content}\n\n${turn.context}` : turn.content;
    messages.push({ role: turn.role, content });
  }
  return messages;
}

export interface IChatOptions {
  ttl?: number;
  maxTokens?: number;
  extra?: { [key: string]: unknown };
}

/** The body of `POST lms/v1/chat/completions`. Settings' extra fields never replace the core. */
export function buildChatRequest(
  state: IChatState,
  options: IChatOptions = {}
): ChatCompletionRequest & { [key: string]: unknown } {
  // the user's extra fields first, then the ones the sidebar owns (typed from the OpenAPI
  // document: src/generated/api.ts)
  const body: ChatCompletionRequest & { [key: string]: unknown } = {
    ...(options.extra ?? {}),
    model: state.model,
    messages: requestMessages(state) as ChatCompletionRequest['messages']
  };
  if (typeof options.maxTokens === 'number' && options.maxTokens > 0) {
    body.max_tokens = Math.floor(options.maxTokens);
  }
  if (typeof options.ttl === 'number' && options.ttl > 0) {
    body.ttl = options.ttl;
  }
  body.stream = true;
  body.stream_options = { include_usage: true };
  return body;
}

/**
 * Times an answer: tokens/s is over the generation only (first token to last), as LM
 * Studio reports it; the time to first token is the prompt's processing plus the queue.
 */
export class StatsTracker {
  private _start: number;
  private _first: number | null = null;
  private _last: number | null = null;
  private _deltas = 0;
  private _usage: IUsage | null = null;
  private _finish: string | undefined;

  constructor(now: number) {
    this._start = now;
  }

  delta(now: number): void {
    if (this._first === null) {
      this._first = now;
    }
    this._last = now;
    this._deltas++;
  }

  usage(usage: IUsage): void {
    this._usage = usage;
  }

  finish(reason: string): void {
    this._finish = reason;
  }

  result(now: number): ITurnStats {
    const stats: ITurnStats = {};
    const usage = this._usage;
    if (usage && typeof usage.completion_tokens === 'number') {
      stats.completionTokens = usage.completion_tokens;
      if (typeof usage.prompt_tokens === 'number') {
        stats.promptTokens = usage.prompt_tokens;
      }
    } else if (this._deltas > 0) {
      stats.completionTokens = this._deltas;
      stats.approximate = true;
    }
    if (this._first !== null) {
      stats.timeToFirstTokenMs = Math.max(0, this._first - this._start);
      const end = Math.max(this._last ?? now, this._first);
      const seconds = (end - this._first) / 1000;
      // n tokens arrive over n-1 intervals after the first one.
      const n = stats.completionTokens ?? this._deltas;
      if (seconds > 0 && n > 1) {
        stats.tokensPerSecond = (n - 1) / seconds;
      }
    }
    if (this._finish) {
      stats.finishReason = this._finish;
    }
    return stats;
  }
}

/** "84.2 tok/s · 57 tokens · prompt 31 · 0.12 s to first token · stopped" */
export function formatStats(stats: ITurnStats | undefined, stopped = false): string {
  if (!stats) {
    return stopped ? 'stopped' : '';
  }
  const parts: string[] = [];
  if (typeof stats.tokensPerSecond === 'number') {
    parts.push(`${stats.tokensPerSecond.toFixed(1)} tok/s`);
  }
  if (typeof stats.completionTokens === 'number') {
    const n = stats.completionTokens;
    parts.push(`${stats.approximate ? '~' : ''}${n} token${n === 1 ? '' : 's'}`);
  }
  if (typeof stats.promptTokens === 'number') {
    parts.push(`prompt ${stats.promptTokens}`);
  }
  if (typeof stats.timeToFirstTokenMs === 'number') {
    parts.push(`${(stats.timeToFirstTokenMs / 1000).toFixed(2)} s to first token`);
  }
  if (stopped) {
    parts.push('stopped');
  } else if (stats.finishReason && stats.finishReason !== 'stop') {
    parts.push(`finish: ${stats.finishReason}`);
  }
  return parts.join(' · ');
}

// ---- what the state database keeps ---------------------------------------------------------

export const STATE_VERSION = 1;

/** A JSON value for IStateDB. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the serialized form is plain JSON
export function serializeChat(state: IChatState): { [key: string]: any } {
  return {
    version: STATE_VERSION,
    model: state.model,
    systemPrompt: state.systemPrompt,
    turns: state.turns.map(t => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the serialized form is plain JSON
      const out: { [key: string]: any } = { role: t.role, content: t.content };
      for (const key of ['context', 'reasoning', 'model', 'error', 'errorCode'] as const) {
        if (t[key]) {
          out[key] = t[key];
        }
      }
      if (t.toolCalls?.length) {
        out.toolCalls = t.toolCalls.map(c => ({ ...c }));
      }
      if (t.stopped) {
        out.stopped = true;
      }
      if (t.stats) {
        out.stats = { ...t.stats };
      }
      return out;
    })
  };
}

/** The saved chat, or null when nothing usable was saved (other versions, bad data). */
export function restoreChat(value: unknown): IChatState | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- stored JSON from an older version: checked field by field below
  const v = value as { [key: string]: any };
  if (v.version !== STATE_VERSION || !Array.isArray(v.turns)) {
    return null;
  }
  const turns: ITurn[] = [];
  for (const t of v.turns) {
    if (!t || (t.role !== 'user' && t.role !== 'assistant') || typeof t.content !== 'string') {
      continue;
    }
    const turn: ITurn = { role: t.role, content: t.content };
    for (const key of ['context', 'reasoning', 'model', 'error', 'errorCode'] as const) {
      if (typeof t[key] === 'string' && t[key]) {
        turn[key] = t[key];
      }
    }
    if (Array.isArray(t.toolCalls)) {
      const calls = t.toolCalls
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- stored JSON from an older version: checked field by field below
        .filter((c: any) => c && typeof c.name === 'string')
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- stored JSON, checked field by field
        .map((c: any) => {
          const call: IToolCall = { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : '' };
          if (typeof c.id === 'string') {
            call.id = c.id;
          }
          return call;
        });
      if (calls.length) {
        turn.toolCalls = calls;
      }
    }
    if (t.stopped === true) {
      turn.stopped = true;
    }
    if (t.stats && typeof t.stats === 'object') {
      const stats: ITurnStats = {};
      for (const key of ['promptTokens', 'completionTokens', 'tokensPerSecond', 'timeToFirstTokenMs'] as const) {
        if (typeof t.stats[key] === 'number') {
          stats[key] = t.stats[key];
        }
      }
      if (t.stats.approximate === true) {
        stats.approximate = true;
      }
      if (typeof t.stats.finishReason === 'string') {
        stats.finishReason = t.stats.finishReason;
      }
      turn.stats = stats;
    }
    turns.push(turn);
  }
  return {
    model: typeof v.model === 'string' ? v.model : '',
    systemPrompt: typeof v.systemPrompt === 'string' ? v.systemPrompt : '',
    turns
  };
}
