/**
 * The two requests the completer makes: which model to use (`GET lms/api/v0/ps`, cached
 * briefly so a burst of keystrokes costs one look-up) and a streamed `POST lms/v1/completions`
 * whose AbortSignal closes the connection, which the server takes as a cancel: the model's
 * slot is free at once for the next keystroke's request.
 */
import type { CompletionRequest } from '../generated/api';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { SSEParser } from '../sse';
import { ILoadedModel } from './choose';

export class CompletionError extends Error {}

const PS_CACHE_MS = 2000;

export class CompletionClient {
  constructor(readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  private _ps: { at: number; rows: Promise<ILoadedModel[]> } | null = null;

  url(path: string): string {
    return URLExt.join(this.serverSettings.baseUrl, 'lms', path);
  }

  /** The loaded models, at most PS_CACHE_MS old. */
  loaded(): Promise<ILoadedModel[]> {
    const now = Date.now();
    if (!this._ps || now - this._ps.at > PS_CACHE_MS) {
      const rows = ServerConnection.makeRequest(this.url('api/v0/ps'), { method: 'GET' }, this.serverSettings)
        .then(async response => {
          if (!response.ok) {
            throw new CompletionError(`GET lms/api/v0/ps: HTTP ${response.status}`);
          }
          const body = await response.json();
          return Array.isArray(body?.data) ? (body.data as ILoadedModel[]) : [];
        });
      rows.catch(() => {
        this._ps = null; // ask again next time
      });
      this._ps = { at: now, rows };
    }
    return this._ps.rows;
  }

  /** Forget the cached model list (after a failed completion). */
  forget(): void {
    this._ps = null;
  }

  /**
   * Stream a completion's text pieces. Aborting `signal` ends the iteration quietly and
   * closes the connection; an API error (an HTTP error or one inside the stream) throws.
   */
  async *stream(
    body: CompletionRequest & { [key: string]: unknown },
    signal: AbortSignal
  ): AsyncGenerator<string> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        this.url('v1/completions'),
        { method: 'POST', body: JSON.stringify({ ...body, stream: true }), signal },
        this.serverSettings
      );
    } catch (reason) {
      if (signal.aborted) {
        return;
      }
      throw reason;
    }
    if (!response.ok || !response.body) {
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json())?.error?.message ?? message;
      } catch {
        // not JSON
      }
      throw new CompletionError(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SSEParser();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (reason) {
          if (signal.aborted) {
            return;
          }
          throw reason;
        }
        if (chunk.done) {
          return;
        }
        for (const event of parser.feed(decoder.decode(chunk.value, { stream: true }))) {
          if (event.data === '[DONE]') {
            return;
          }
          const data = JSON.parse(event.data);
          if (data?.error) {
            throw new CompletionError(data.error.message ?? 'completion failed');
          }
          const text = data?.choices?.[0]?.text;
          if (typeof text === 'string' && text) {
            yield text;
          }
        }
      }
    } finally {
      if (!signal.aborted) {
        void reader.cancel().catch(() => undefined);
      }
    }
  }
}
