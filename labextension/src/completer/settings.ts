/**
 * The inline completer's settings (schema/completer.json, plugin `lms-jupyter:completer`),
 * read defensively: a hand-edited value of the wrong type falls back to its default.
 */

export interface ICompleterSettings {
  /** Ghost text from LM Studio models at all (JupyterLab's own per-provider switch aside). */
  enabled: boolean;
  /** Model or loaded instance to complete with; empty: the first loaded LLM. */
  model: string;
  /** Quiet time after the last keystroke before a request is sent (ms). */
  debounceMs: number;
  /** Lines of ghost text at most; the request stops there (0: no limit). */
  maxLines: number;
  /** `max_tokens` of each request. */
  maxTokens: number;
  /** Context budget, prefix and suffix together, in estimated tokens. */
  contextTokens: number;
  temperature: number;
  /** Send the request even when the model is not loaded (the server then JIT-loads it). */
  allowJitLoad: boolean;
  /** Extra fields merged into each `/v1/completions` body (e.g. `top_p`, `logit_bias`). */
  extraRequestFields: { [key: string]: unknown };
}

export const DEFAULT_COMPLETER_SETTINGS: ICompleterSettings = {
  enabled: true,
  model: '',
  debounceMs: 250,
  maxLines: 6,
  maxTokens: 64,
  contextTokens: 1000,
  temperature: 0.2,
  allowJitLoad: false,
  extraRequestFields: {}
};

export function readCompleterSettings(composite: { [key: string]: unknown } | null): ICompleterSettings {
  const d = DEFAULT_COMPLETER_SETTINGS;
  if (!composite) {
    return { ...d };
  }
  const num = (v: unknown, fallback: number, min = 0) =>
    typeof v === 'number' && isFinite(v) && v >= min ? v : fallback;
  const bool = (v: unknown, fallback: boolean) => (typeof v === 'boolean' ? v : fallback);
  const extra = composite.extraRequestFields;
  return {
    enabled: bool(composite.enabled, d.enabled),
    model: typeof composite.model === 'string' ? composite.model.trim() : d.model,
    debounceMs: num(composite.debounceMs, d.debounceMs),
    maxLines: Math.floor(num(composite.maxLines, d.maxLines)),
    maxTokens: Math.floor(num(composite.maxTokens, d.maxTokens, 1)),
    contextTokens: Math.floor(num(composite.contextTokens, d.contextTokens, 1)),
    temperature: num(composite.temperature, d.temperature),
    allowJitLoad: bool(composite.allowJitLoad, d.allowJitLoad),
    extraRequestFields:
      extra && typeof extra === 'object' && !Array.isArray(extra) ? (extra as { [key: string]: unknown }) : {}
  };
}
