/**
 * The server's LM Studio API, reached through JupyterLab's ServerConnection: it puts the
 * request under the page's base_url and adds the Jupyter token and the XSRF header, so the
 * sidebar works wherever JupyterLab does (JupyterHub, proxies, a non-root base_url).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { errorFromBody } from './chatstream';
import type { ChatCompletionRequest, LoadRequest } from './generated/api';
import { IInstance, IModelV0, IModelV1 } from './state';

/** A failed request, with the API's own message and code (e.g. "insufficient_memory"). */
export class LMSRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string
  ) {
    super(message);
    this.name = 'LMSRequestError';
  }
}

export interface ILoadOptions {
  force?: boolean;
  ttl?: number;
}

export class LMSClient {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings(),
    readonly prefix = 'lms'
  ) {}

  /** `{base_url}lms/<path>` */
  url(path: string): string {
    return URLExt.join(this.serverSettings.baseUrl, this.prefix, path);
  }

  async models(): Promise<IModelV0[]> {
    const body = await this._json('api/v0/models', { method: 'GET' });
    return Array.isArray(body?.data) ? body.data : [];
  }

  async ps(): Promise<IInstance[]> {
    const body = await this._json('api/v0/ps', { method: 'GET' });
    return Array.isArray(body?.data) ? body.data : [];
  }

  /** Display names and file sizes (not in the v0 listing). */
  async modelDetails(): Promise<IModelV1[]> {
    const body = await this._json('api/v1/models', { method: 'GET' });
    return Array.isArray(body?.models) ? body.models : [];
  }

  async load(model: string, options: ILoadOptions = {}): Promise<{ instance_id: string }> {
    const request: LoadRequest = { model };
    if (options.force) {
      request.force = true;
    }
    if (typeof options.ttl === 'number' && options.ttl > 0) {
      request.ttl = options.ttl;
    }
    return this._json('api/v1/models/load', { method: 'POST', body: JSON.stringify(request) });
  }

  async unload(instanceId: string): Promise<{ instance_id: string }> {
    return this._json('api/v1/models/unload', {
      method: 'POST',
      body: JSON.stringify({ instance_id: instanceId })
    });
  }

  /**
   * Start a streamed chat completion. Resolves with the open response once the headers
   * arrive (its body is the SSE stream); rejects with the API's error otherwise. Aborting
   * `signal` closes the connection, and the server stops generating.
   */
  async chatStream(
    body: ChatCompletionRequest & { [key: string]: unknown },
    signal: AbortSignal
  ): Promise<Response> {
    const response = await ServerConnection.makeRequest(
      this.url('v1/chat/completions'),
      {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        signal
      },
      this.serverSettings
    );
    if (!response.ok) {
      throw await requestError(response);
    }
    if (!response.body) {
      throw new LMSRequestError('The browser gave no stream for the response.', response.status);
    }
    return response;
  }

  /**
   * Open the model event stream (`GET lms/api/v0/events`, SSE): a snapshot of every
   * loaded instance, then each change. Resolves once the headers arrive.
   */
  async events(signal: AbortSignal): Promise<Response> {
    const response = await ServerConnection.makeRequest(
      this.url('api/v0/events'),
      { method: 'GET', headers: { Accept: 'text/event-stream' }, signal, cache: 'no-store' },
      this.serverSettings
    );
    if (!response.ok) {
      throw await requestError(response);
    }
    if (!response.body) {
      throw new LMSRequestError('The browser gave no stream for the response.', response.status);
    }
    return response;
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each caller types the JSON body it reads
  private async _json(path: string, init: RequestInit): Promise<any> {
    if (init.body !== undefined) {
      init.headers = { 'Content-Type': 'application/json' };
    }
    const response = await ServerConnection.makeRequest(this.url(path), init, this.serverSettings);
    if (!response.ok) {
      throw await requestError(response);
    }
    const text = await response.text();
    try {
      return text ? JSON.parse(text) : {};
    } catch {
      throw new LMSRequestError(`The server sent invalid JSON: ${text.slice(0, 200)}`, response.status);
    }
  }
}

async function requestError(response: Response): Promise<LMSRequestError> {
  let body: unknown = null;
  try {
    const text = await response.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } catch {
    body = null;
  }
  const { message, code } = errorFromBody(body, response.status, response.statusText);
  return new LMSRequestError(message, response.status, code);
}
