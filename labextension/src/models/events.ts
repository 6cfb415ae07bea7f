/**
 * The model event stream (`GET {base}lms/api/v0/events`): the server pushes a snapshot of
 * its `ps` rows, then every change (loading, progress, loaded, status, queue, crashed,
 * unloaded), so the sidebar never polls. When the stream drops (a server restart, a
 * proxy, a network change) it reconnects by itself, waiting longer after each failure;
 * the snapshot that starts the new connection replaces whatever was missed.
 *
 * No JupyterLab imports: the reader is given a function that opens the stream, so the
 * reconnect logic is unit-tested with fake streams.
 */
import { readSSE } from '../sse';
import { IInstance } from '../state';

/** One event's data (lms_jupyter/model_events/feed.py). */
export interface IModelEvent {
  kind: string;
  identifier?: string;
  modelKey?: string | null;
  /** The instance's new `ps` row (all but `unloaded` and `snapshot`). */
  row?: IInstance;
  /** `snapshot`: every row. */
  data?: IInstance[];
  /** `unloaded`: the instance was still loading (the load failed or was cancelled). */
  wasLoading?: boolean;
}

/** The rows after one event: a snapshot replaces them, a change replaces one row. */
export function applyModelEvent(rows: IInstance[], event: IModelEvent): IInstance[] {
  if (event.kind === 'snapshot') {
    return Array.isArray(event.data) ? event.data.filter(r => r && r.identifier) : rows;
  }
  const id = event.identifier ?? event.row?.identifier;
  if (!id) {
    return rows;
  }
  if (event.kind === 'unloaded') {
    return rows.filter(r => r.identifier !== id);
  }
  if (!event.row) {
    return rows;
  }
  const index = rows.findIndex(r => r.identifier === id);
  if (index < 0) {
    return [...rows, event.row];
  }
  const next = rows.slice();
  next[index] = event.row;
  return next;
}

/** Milliseconds before reconnect attempt `attempt` (0-based): 500, 1000, 2000, 4000, 8000, then 10 000. */
export function backoffDelay(attempt: number, base = 500, max = 10_000): number {
  return Math.min(max, base * 2 ** Math.max(0, attempt));
}

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'stopped';

export interface IEventStreamOptions {
  /** Open the stream (resolves with the response once its headers arrive). */
  open: (signal: AbortSignal) => Promise<Response>;
  onEvent: (event: IModelEvent) => void;
  onState?: (state: ConnectionState, error?: string) => void;
  /** No byte for this long (the server sends a comment every 15 s): the stream is dead. */
  silenceMs?: number;
  backoff?: (attempt: number) => number;
}

/** Keeps one event stream open, reconnecting with backoff until `stop()`. */
export class ModelEventStream {
  constructor(private _options: IEventStreamOptions) {}

  get state(): ConnectionState {
    return this._state;
  }

  /** Connect (again); a no-op while running. */
  start(): void {
    if (this._running) {
      return;
    }
    this._running = true;
    void this._loop();
  }

  stop(): void {
    this._running = false;
    this._abort?.abort();
    this._wake?.();
    this._setState('stopped');
  }

  /** Drop the current connection and reconnect at once (e.g. the browser came online). */
  reconnectNow(): void {
    this._attempt = 0;
    this._abort?.abort();
    this._wake?.();
  }

  private async _loop(): Promise<void> {
    while (this._running) {
      this._setState(this._attempt === 0 && !this._everLive ? 'connecting' : 'reconnecting', this._lastError);
      const abort = new AbortController();
      this._abort = abort;
      let silence: ReturnType<typeof setTimeout> | null = null;
      const silenceMs = this._options.silenceMs ?? 45_000;
      const watch = () => {
        if (silence !== null) {
          clearTimeout(silence);
        }
        silence = setTimeout(() => abort.abort(), silenceMs);
      };
      try {
        const response = await this._options.open(abort.signal);
        watch();
        const body = response.body;
        if (!body) {
          throw new Error('no stream');
        }
        // Count bytes, not events: heartbeat comments keep the watchdog quiet too.
        const counted = body.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              watch();
              controller.enqueue(chunk);
            }
          })
        );
        for await (const sse of readSSE(counted)) {
          let event: IModelEvent;
          try {
            event = JSON.parse(sse.data);
          } catch {
            continue;
          }
          if (!event || typeof event.kind !== 'string') {
            continue;
          }
          if (event.kind === 'snapshot') {
            this._attempt = 0;
            this._everLive = true;
            this._lastError = undefined;
            this._setState('live');
          }
          this._options.onEvent(event);
        }
        this._lastError = 'the server closed the event stream';
      } catch (error) {
        if (!this._running) {
          break;
        }
        this._lastError = abort.signal.aborted
          ? 'the event stream went silent'
          : (error as Error)?.message || String(error);
      } finally {
        if (silence !== null) {
          clearTimeout(silence);
        }
        abort.abort();
      }
      if (!this._running) {
        break;
      }
      this._setState('reconnecting', this._lastError);
      const delay = (this._options.backoff ?? backoffDelay)(this._attempt++);
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, delay);
        this._wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this._wake = null;
    }
  }

  private _setState(state: ConnectionState, error?: string): void {
    if (state === this._state && error === this._reported) {
      return;
    }
    this._state = state;
    this._reported = error;
    this._options.onState?.(state, error);
  }

  private _running = false;
  private _attempt = 0;
  private _everLive = false;
  private _lastError: string | undefined;
  private _reported: string | undefined;
  private _state: ConnectionState = 'stopped';
  private _abort: AbortController | null = null;
  private _wake: (() => void) | null = null;
}
