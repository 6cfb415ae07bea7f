/**
 * What the models section shows, as one observable object: the catalogue (models on disk,
 * fetched when the event stream (re)connects and on Refresh), the loaded instances (pushed
 * by the event stream), and this page's own actions (loads and unloads in flight, their
 * errors). React components subscribe to `changed`; nothing here polls.
 */
import { ISignal, Signal } from '@lumino/signaling';

import type { LMSClient, LMSRequestError } from '../api';
import { chatModelChoices, IInstance, IModelChoice, IModelV0, IModelV1, IModelView, mergeModels } from '../state';
import { applyModelEvent, ConnectionState, IModelEvent, ModelEventStream } from './events';

export interface IRowError {
  message: string;
  code?: string;
}

export class ModelsStore {
  constructor(
    private _client: LMSClient,
    private _ttl: () => number
  ) {
    this._stream = new ModelEventStream({
      open: signal => this._client.events(signal),
      onEvent: event => this._onEvent(event),
      onState: (state, error) => {
        this._connection = state;
        this._connectionError = error ?? '';
        this._emit();
      }
    });
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get models(): IModelV0[] {
    return this._models;
  }

  get instances(): IInstance[] {
    return this._instances;
  }

  get connection(): ConnectionState {
    return this._connection;
  }

  get connectionError(): string {
    return this._connectionError;
  }

  /** Why the catalogue could not be listed, or ''. */
  get listError(): string {
    return this._listError;
  }

  get views(): IModelView[] {
    // The catalogue's `state` and loaded context were true when it was fetched; the pushed
    // instances are what is loaded now.
    const catalogue = this._models.map(m => ({ ...m, state: undefined, loaded_context_length: undefined }));
    return mergeModels(catalogue, this._instances, this._details);
  }

  /** Display names by model key (the server's, from the GGUF metadata). */
  get names(): Map<string, string> {
    const names = new Map<string, string>();
    for (const d of this._details) {
      if (d.display_name) {
        names.set(d.key, d.display_name);
      }
    }
    for (const i of this._instances) {
      if (i.displayName && !names.has(i.modelKey)) {
        names.set(i.modelKey, i.displayName);
      }
    }
    return names;
  }

  /** The chat's model picker: loaded instances first, then every model (JIT). */
  get choices(): IModelChoice[] {
    return chatModelChoices(this._models, this._instances, this.names);
  }

  isPending(model: string): boolean {
    return this._pending.has(model);
  }

  isUnloading(identifier: string): boolean {
    return this._unloading.has(identifier);
  }

  errorOf(model: string): IRowError | undefined {
    return this._errors.get(model);
  }

  /** Fetch the catalogue and open the event stream (each reconnect fetches it again). */
  start(): void {
    if (!this._started) {
      this._started = true;
      void this.refreshCatalog();
    }
    this._stream.start();
  }

  dispose(): void {
    this._stream.stop();
    Signal.clearData(this);
  }

  /** Fetch the catalogue again (`api/v0/models` and `api/v1/models`); the event stream
   * keeps the instances current, so `ps` is never asked. */
  async refreshCatalog(): Promise<void> {
    if (this._catalogInFlight) {
      this._catalogAgain = true;
      return this._catalogInFlight;
    }
    this._catalogInFlight = this._fetchCatalog();
    try {
      await this._catalogInFlight;
    } finally {
      this._catalogInFlight = null;
    }
    if (this._catalogAgain) {
      this._catalogAgain = false;
      await this.refreshCatalog();
    }
  }

  /** Reconnect the event stream at once (the Refresh button, the browser back online). */
  reconnect(): void {
    this._stream.reconnectNow();
  }

  /** Explicit load (`POST lms/api/v1/models/load`); `force` skips the memory guardrail. */
  async load(model: string, force = false): Promise<void> {
    if (this._pending.has(model)) {
      return;
    }
    this._pending.add(model);
    this._errors.delete(model);
    this._emit();
    try {
      await this._client.load(model, { force, ttl: this._ttl() });
    } catch (error) {
      const e = error as LMSRequestError;
      this._errors.set(model, { message: e.message, code: e.code });
    } finally {
      this._pending.delete(model);
      this._emit();
    }
  }

  async unload(model: string, identifier: string): Promise<void> {
    this._errors.delete(model);
    this._unloading.add(identifier);
    this._emit();
    try {
      await this._client.unload(identifier);
      // the event stream reports it too; drop it now so the row never flickers back
      this._instances = this._instances.filter(i => i.identifier !== identifier);
    } catch (error) {
      this._errors.set(model, { message: (error as Error).message });
    } finally {
      this._unloading.delete(identifier);
      this._emit();
    }
  }

  private async _fetchCatalog(): Promise<void> {
    try {
      const [models, details] = await Promise.all([
        this._client.models(),
        this._client.modelDetails().catch(() => this._details)
      ]);
      this._models = models;
      this._details = details;
      this._listError = '';
    } catch (error) {
      this._listError = `Cannot list models: ${(error as Error).message}`;
    }
    this._emit();
  }

  private _onEvent(event: IModelEvent): void {
    this._instances = applyModelEvent(this._instances, event);
    if (event.kind === 'snapshot') {
      // after a reconnect (a server restart) the catalogue may have changed too
      if (this._snapshots++ > 0 || this._listError) {
        void this.refreshCatalog();
      }
    } else if (event.modelKey && !this._models.some(m => m.id === event.modelKey)) {
      void this.refreshCatalog(); // a model this page has not listed yet
    }
    this._emit();
  }

  private _emit(): void {
    this._changed.emit();
  }

  private _stream: ModelEventStream;
  private _models: IModelV0[] = [];
  private _details: IModelV1[] = [];
  private _instances: IInstance[] = [];
  private _pending = new Set<string>();
  private _unloading = new Set<string>();
  private _errors = new Map<string, IRowError>();
  private _connection: ConnectionState = 'stopped';
  private _connectionError = '';
  private _listError = '';
  private _catalogInFlight: Promise<void> | null = null;
  private _catalogAgain = false;
  private _started = false;
  private _snapshots = 0;
  private _changed = new Signal<this, void>(this);
}
