/**
 * Server-sent events, parsed incrementally from a fetch() body.
 *
 * The chat streams over `fetch` + `ReadableStream` rather than `EventSource` because
 * EventSource can only GET and cannot send the Jupyter token or XSRF headers. This module
 * knows nothing about JupyterLab, so it is unit-tested on its own.
 */

/** One dispatched event (the WHATWG "event stream" interpretation). */
export interface ISSEEvent {
  /** The `event:` field, or "message" when none was given. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen, if any. */
  id?: string;
}

/**
 * An incremental parser: feed it decoded text in chunks of any size (a line, an event or a
 * field may be split anywhere, including between "\r" and "\n") and it returns the events
 * completed so far, as the HTML spec's event-stream algorithm dispatches them.
 */
export class SSEParser {
  private _buffer = '';
  private _data: string[] = [];
  private _hasData = false;
  private _event = '';
  private _id: string | undefined;
  private _sawCR = false;

  /** Parse another chunk of text; returns the events it completed. */
  feed(chunk: string): ISSEEvent[] {
    const events: ISSEEvent[] = [];
    let text = chunk;
    if (this._sawCR && text.startsWith('\n')) {
      // The "\r\n" of the previous chunk's last line was split across chunks.
      text = text.slice(1);
    }
    this._sawCR = false;
    this._buffer += text;
    let start = 0;
    for (let i = 0; i < this._buffer.length; i++) {
      const c = this._buffer[i];
      if (c !== '\n' && c !== '\r') {
        continue;
      }
      const line = this._buffer.slice(start, i);
      if (c === '\r') {
        if (i + 1 === this._buffer.length) {
          this._sawCR = true;
        } else if (this._buffer[i + 1] === '\n') {
          i++;
        }
      }
      start = i + 1;
      const event = this._line(line);
      if (event) {
        events.push(event);
      }
    }
    this._buffer = this._buffer.slice(start);
    return events;
  }

  /**
   * The stream ended. Per the spec an event without its terminating blank line is not
   * dispatched; its text is returned so a caller can report a truncated stream.
   */
  end(): string {
    const rest = this._buffer + (this._hasData ? this._data.join('\n') : '');
    this._buffer = '';
    this._reset();
    return rest;
  }

  private _line(line: string): ISSEEvent | null {
    if (line === '') {
      return this._dispatch();
    }
    if (line.startsWith(':')) {
      return null; // a comment (keep-alive)
    }
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) {
        value = value.slice(1);
      }
    }
    switch (field) {
      case 'data':
        this._data.push(value);
        this._hasData = true;
        break;
      case 'event':
        this._event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this._id = value;
        }
        break;
      default:
        break; // "retry" and unknown fields do not matter to a fetch() reader
    }
    return null;
  }

  private _dispatch(): ISSEEvent | null {
    if (!this._hasData) {
      this._event = '';
      return null;
    }
    const event: ISSEEvent = { event: this._event || 'message', data: this._data.join('\n') };
    if (this._id !== undefined) {
      event.id = this._id;
    }
    this._reset();
    return event;
  }

  private _reset(): void {
    this._data = [];
    this._hasData = false;
    this._event = '';
  }
}

/** The events of a response body, decoded as UTF-8 (multi-byte characters may be split). */
export async function* readSSE(
  body: ReadableStream<Uint8Array>
): AsyncGenerator<ISSEEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parser = new SSEParser();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      for (const event of parser.feed(decoder.decode(value, { stream: true }))) {
        yield event;
      }
    }
    for (const event of parser.feed(decoder.decode())) {
      yield event;
    }
  } finally {
    if (!finished) {
      // The consumer stopped early (or reading failed): close the connection, which also
      // tells the server to stop generating.
      await reader.cancel().catch(() => undefined);
    }
    reader.releaseLock();
  }
}
