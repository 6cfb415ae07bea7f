/**
 * What one SSE event of `POST {base}lms/v1/chat/completions` (stream: true) means for the
 * conversation: text, reasoning, usage, the finish reason, an in-stream error or the end.
 * Pure, so it is unit-tested without a server.
 */
import { ISSEEvent } from './sse';

/** OpenAI's usage object (the last chunk carries it with `stream_options.include_usage`). */
export interface IUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  completion_tokens_details?: { reasoning_tokens?: number };
}

export type StreamUpdate =
  | { kind: 'content'; text: string }
  | { kind: 'reasoning'; text: string }
  | { kind: 'usage'; usage: IUsage }
  | { kind: 'finish'; reason: string }
  | { kind: 'tool_call'; index: number; id?: string; name?: string; arguments?: string }
  | { kind: 'error'; message: string; code?: string }
  | { kind: 'done' };

/** The updates one event carries, in order (a chunk may hold reasoning and content). */
export function interpretChunk(event: ISSEEvent): StreamUpdate[] {
  const data = event.data.trim();
  if (data === '[DONE]') {
    return [{ kind: 'done' }];
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- one parsed SSE chunk: its fields are checked where they are read
  let chunk: any;
  try {
    chunk = JSON.parse(data);
  } catch {
    return [{ kind: 'error', message: `The server sent an event that is not JSON: ${data.slice(0, 200)}` }];
  }
  if (chunk === null || typeof chunk !== 'object') {
    return [{ kind: 'error', message: `Unexpected event from the server: ${data.slice(0, 200)}` }];
  }
  if (chunk.error !== undefined) {
    return [errorUpdate(chunk.error)];
  }
  const updates: StreamUpdate[] = [];
  const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
  for (const choice of choices) {
    if (choice && (choice.index === undefined || choice.index === 0)) {
      const delta = choice.delta ?? {};
      // LM Studio's field is `reasoning`; DeepSeek-style clients read `reasoning_content`.
      // A server may send both with the same text, so take one.
      const reasoning = textOf(delta.reasoning) || textOf(delta.reasoning_content);
      if (reasoning) {
        updates.push({ kind: 'reasoning', text: reasoning });
      }
      const content = textOf(delta.content);
      if (content) {
        updates.push({ kind: 'content', text: content });
      }
      // OpenAI streams a tool call in pieces: the first names it, the rest add arguments.
      for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
        if (!call || typeof call !== 'object') {
          continue;
        }
        const fn = call.function ?? {};
        const update: StreamUpdate = {
          kind: 'tool_call',
          index: typeof call.index === 'number' ? call.index : 0
        };
        if (typeof call.id === 'string') {
          update.id = call.id;
        }
        if (typeof fn.name === 'string') {
          update.name = fn.name;
        }
        if (typeof fn.arguments === 'string') {
          update.arguments = fn.arguments;
        }
        updates.push(update);
      }
      if (typeof choice.finish_reason === 'string' && choice.finish_reason) {
        updates.push({ kind: 'finish', reason: choice.finish_reason });
      }
    }
  }
  if (chunk.usage && typeof chunk.usage === 'object') {
    updates.push({ kind: 'usage', usage: chunk.usage as IUsage });
  }
  return updates;
}

function textOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function errorUpdate(error: unknown): StreamUpdate {
  if (typeof error === 'string') {
    return { kind: 'error', message: error };
  }
  if (error && typeof error === 'object') {
    const e = error as { message?: unknown; code?: unknown };
    const message = typeof e.message === 'string' && e.message ? e.message : JSON.stringify(error);
    const code = typeof e.code === 'string' ? e.code : undefined;
    return { kind: 'error', message, code };
  }
  return { kind: 'error', message: 'The server reported an error.' };
}

/**
 * The message of an error response body in any of the shapes the server uses: OpenAI's and
 * LM Studio's `{"error": {"message", "code"}}`, a plain `{"error": "..."}`, or
 * jupyter-server's `{"message", "reason"}`.
 */
export function errorFromBody(
  body: unknown,
  status: number,
  statusText = ''
): { message: string; code?: string } {
  if (body && typeof body === 'object') {
    const b = body as { error?: unknown; message?: unknown; reason?: unknown };
    if (b.error !== undefined) {
      const update = errorUpdate(b.error);
      if (update.kind === 'error') {
        return { message: update.message, code: update.code };
      }
    }
    if (typeof b.message === 'string' && b.message) {
      return { message: b.message };
    }
    if (typeof b.reason === 'string' && b.reason) {
      return { message: b.reason };
    }
  }
  if (typeof body === 'string' && body.trim()) {
    return { message: body.trim().slice(0, 500) };
  }
  return { message: `The server answered ${status}${statusText ? ' ' + statusText : ''}.` };
}
