/**
 * The LM Studio sidebar: a models list (load, unload, progress, errors) over a streaming
 * chat. Plain DOM inside Lumino widgets; answers are rendered by JupyterLab's own
 * rendermime (Markdown, code blocks, math), so they look like notebook Markdown cells.
 */
import { IRenderMime, MimeModel, IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';

import { LMSClient, LMSRequestError } from './api';
import { ChatChange, ChatController } from './chat';
import {
  chatModelChoices,
  formatBytes,
  formatContext,
  formatDuration,
  formatStats,
  IChatState,
  IInstance,
  IModelV0,
  IModelV1,
  IModelView,
  ITurn,
  loadProgressOf,
  mergeModels,
  pickChatModel
} from './state';

/** The user's settings (schema/plugin.json). */
export interface ISidebarSettings {
  defaultModel: string;
  systemPrompt: string;
  ttl: number;
  maxTokens: number;
  extraRequestFields: { [key: string]: unknown };
  refreshInterval: number;
}

export const DEFAULT_SETTINGS: ISidebarSettings = {
  defaultModel: '',
  systemPrompt: '',
  ttl: 0,
  maxTokens: 0,
  extraRequestFields: {},
  refreshInterval: 2
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { [key: string]: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') {
      node.className = value;
    } else if (key === 'text') {
      node.textContent = value;
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    node.append(child);
  }
  return node;
}

function button(label: string, ariaLabel: string, className = ''): HTMLButtonElement {
  const b = el('button', { type: 'button', class: `jp-Button lms-Button ${className}`, text: label });
  if (ariaLabel !== label) {
    b.setAttribute('aria-label', ariaLabel);
  }
  return b;
}

// ---- models ------------------------------------------------------------------------------

interface IRowError {
  message: string;
  code?: string;
}

/** The models list, refreshed while it is visible and after every action. */
export class ModelsSection extends Widget {
  constructor(
    private _client: LMSClient,
    private _settings: () => ISidebarSettings
  ) {
    super();
    this.addClass('lms-Models');
    const heading = el('h3', { class: 'lms-Heading', id: 'lms-models-heading', text: 'Models' });
    this._refreshButton = button('↻', 'Refresh models', 'lms-IconButton');
    this._refreshButton.title = 'Refresh models';
    this._refreshButton.addEventListener('click', () => void this.refresh());
    this._banner = el('div', { class: 'lms-Banner', role: 'alert' });
    this._banner.hidden = true;
    this._list = el('ul', { class: 'lms-ModelList', role: 'list', 'aria-label': 'Models' });
    this.node.append(el('div', { class: 'lms-SectionHead' }, heading, this._refreshButton), this._banner, this._list);
  }

  /** Models and loaded instances, after every refresh (for the chat model picker). */
  get listed(): ISignal<this, { models: IModelV0[]; instances: IInstance[] }> {
    return this._listed;
  }

  /** Fetch `api/v0/models`, `api/v0/ps` and `api/v1/models` and show them. */
  async refresh(): Promise<void> {
    if (this._inFlight) {
      this._again = true;
      return this._inFlight;
    }
    this._inFlight = this._refresh();
    try {
      await this._inFlight;
    } finally {
      this._inFlight = null;
    }
    if (this._again) {
      this._again = false;
      await this.refresh();
    }
  }

  private async _refresh(): Promise<void> {
    try {
      const [models, instances, details] = await Promise.all([
        this._client.models(),
        this._client.ps(),
        this._client.modelDetails().catch(() => this._details)
      ]);
      this._models = models;
      this._instances = instances;
      this._details = details;
      this._banner.hidden = true;
      this._banner.textContent = '';
    } catch (error) {
      this._banner.textContent = `Cannot list models: ${(error as Error).message}`;
      this._banner.hidden = false;
    }
    this._render();
    this._listed.emit({ models: this._models, instances: this._instances });
  }

  /** Explicit load (`POST lms/api/v1/models/load`); `force` skips the memory guardrail. */
  async load(model: string, force = false): Promise<void> {
    if (this._pending.has(model)) {
      return;
    }
    this._pending.add(model);
    this._errors.delete(model);
    this._render();
    this._schedule(0);
    try {
      await this._client.load(model, { force, ttl: this._settings().ttl });
    } catch (error) {
      const e = error as LMSRequestError;
      this._errors.set(model, { message: e.message, code: e.code });
    } finally {
      this._pending.delete(model);
    }
    await this.refresh();
  }

  async unload(model: string, instanceId: string): Promise<void> {
    this._errors.delete(model);
    this._unloading.add(instanceId);
    this._render();
    try {
      await this._client.unload(instanceId);
    } catch (error) {
      this._errors.set(model, { message: (error as Error).message });
    } finally {
      this._unloading.delete(instanceId);
    }
    await this.refresh();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._schedule(0);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this._schedule(0);
    }
  }

  dispose(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    super.dispose();
  }

  /** Poll while visible: fast while a load runs or a model works, else every few seconds. */
  private _schedule(delay: number): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      if (!this.isVisible || this.isDisposed) {
        return; // onAfterShow starts it again
      }
      await this.refresh();
      const active =
        this._pending.size > 0 ||
        this._instances.some(i => i.status && i.status !== 'idle' && i.status !== 'crashed');
      const interval = Math.max(0.5, this._settings().refreshInterval || 2) * 1000;
      if (this._timer === null && !this.isDisposed) {
        this._schedule(active ? 500 : interval);
      }
    }, delay);
  }

  private _render(): void {
    const views = mergeModels(this._models, this._instances, this._details);
    const seen = new Set<string>();
    let previous: Element | null = null;
    for (const view of views) {
      seen.add(view.id);
      let row = this._rows.get(view.id);
      if (!row) {
        row = el('li', { class: 'lms-Model' });
        row.dataset.modelId = view.id;
        this._rows.set(view.id, row);
      }
      const pending = this._pending.has(view.id);
      const error = this._errors.get(view.id);
      const signature = JSON.stringify([view, pending, error, [...this._unloading]]);
      if (row.dataset.signature !== signature) {
        row.dataset.signature = signature;
        this._fillRow(row, view, pending, error);
      }
      const want: Element | null = previous ? previous.nextElementSibling : this._list.firstElementChild;
      if (want !== row) {
        this._list.insertBefore(row, want);
      }
      previous = row;
    }
    for (const [id, row] of this._rows) {
      if (!seen.has(id)) {
        row.remove();
        this._rows.delete(id);
      }
    }
    if (views.length === 0 && this._banner.hidden) {
      this._list.setAttribute('data-empty', 'true');
    } else {
      this._list.removeAttribute('data-empty');
    }
  }

  private _fillRow(row: HTMLLIElement, view: IModelView, pending: boolean, error: IRowError | undefined): void {
    row.replaceChildren();
    row.className = `lms-Model lms-mod-${view.state}`;
    const stateText = pending && view.state !== 'loaded' ? 'loading' : view.state === 'not-loaded' ? 'not loaded' : view.state;
    const head = el(
      'div',
      { class: 'lms-Model-head' },
      el('span', { class: 'lms-Model-name', text: view.name, title: view.id }),
      el('span', { class: `lms-Badge lms-Badge-${stateText.replace(' ', '-')}`, text: stateText })
    );
    row.append(head);
    if (view.name !== view.id) {
      row.append(el('div', { class: 'lms-Model-id', text: view.id }));
    }
    const meta = [
      view.publisher,
      view.quantization,
      formatBytes(view.sizeBytes),
      formatContext(view.loadedContextLength ?? view.maxContextLength),
      ...view.capabilities
    ].filter(Boolean);
    row.append(el('div', { class: 'lms-Model-meta', text: meta.join(' · ') }));

    for (const inst of view.instances) {
      if (inst.loading) {
        continue;
      }
      const parts = inst.crashReason
        ? [`crashed (${inst.crashReason}); the next request reloads it`]
        : [inst.statusLabel, `queued ${inst.queued}`];
      if (inst.ttlRemainingMs !== null) {
        parts.push(`TTL left ${formatDuration(inst.ttlRemainingMs)}`);
      }
      if (inst.contextLength) {
        parts.push(formatContext(inst.contextLength));
      }
      const unload = button('Unload', `Unload ${inst.identifier}`);
      const unloading = this._unloading.has(inst.identifier);
      unload.disabled = unloading;
      if (unloading) {
        unload.textContent = 'Unloading…';
      }
      unload.addEventListener('click', () => void this.unload(view.id, inst.identifier));
      const label = inst.identifier === view.id ? '' : `${inst.identifier}: `;
      row.append(
        el(
          'div',
          { class: `lms-Instance lms-status-${inst.status}` },
          el('span', { class: 'lms-Instance-state', text: label + parts.join(' · ') }),
          unload
        )
      );
    }

    const progress = loadProgressOf(view, pending);
    if (progress) {
      const bar = el('progress', { class: 'lms-Progress', 'aria-label': `Loading ${view.id}`, max: '1' });
      if (progress.value !== null) {
        bar.value = progress.value;
        bar.title = `${Math.round(progress.value * 100)}%`;
      } else {
        bar.removeAttribute('value'); // indeterminate
      }
      row.append(bar);
    }

    if (error) {
      const box = el('div', { class: 'lms-Error', role: 'alert' }, el('span', { text: error.message }));
      if (error.code === 'insufficient_memory') {
        const anyway = button('Load anyway', 'Load anyway', 'lms-mod-warn');
        anyway.addEventListener('click', () => void this.load(view.id, true));
        box.append(anyway);
      }
      row.append(box);
    }

    if (view.state === 'not-loaded' || (pending && view.state !== 'loaded')) {
      const load = button(pending ? 'Loading…' : 'Load', `Load ${view.id}`, 'jp-mod-accept');
      load.disabled = pending;
      load.addEventListener('click', () => void this.load(view.id));
      row.append(el('div', { class: 'lms-Model-actions' }, load));
    }
  }

  private _list: HTMLUListElement;
  private _banner: HTMLDivElement;
  private _refreshButton: HTMLButtonElement;
  private _rows = new Map<string, HTMLLIElement>();
  private _models: IModelV0[] = [];
  private _instances: IInstance[] = [];
  private _details: IModelV1[] = [];
  private _pending = new Set<string>();
  private _unloading = new Set<string>();
  private _errors = new Map<string, IRowError>();
  private _inFlight: Promise<void> | null = null;
  private _again = false;
  private _timer: number | null = null;
  private _listed = new Signal<this, { models: IModelV0[]; instances: IInstance[] }>(this);
}

// ---- one turn of the conversation ----------------------------------------------------------

class TurnWidget extends Panel {
  constructor(
    private _turn: ITurn,
    rendermime: IRenderMimeRegistry,
    streaming: boolean
  ) {
    super();
    const user = _turn.role === 'user';
    this.addClass('lms-Turn');
    this.addClass(user ? 'lms-Turn-user' : 'lms-Turn-assistant');
    this.node.setAttribute('role', 'group');
    this.node.setAttribute('aria-label', user ? 'You' : 'Answer');
    const who = new Widget();
    who.addClass('lms-Turn-who');
    who.node.textContent = user ? 'You' : _turn.model || 'Assistant';
    this.addWidget(who);
    if (user) {
      const text = new Widget();
      text.addClass('lms-Turn-text');
      text.node.textContent = _turn.content;
      this.addWidget(text);
      return;
    }
    this._reasoning = new Widget({ node: el('details', { class: 'lms-Reasoning' }) });
    this._reasoningText = el('div', { class: 'lms-Reasoning-text' });
    this._reasoning.node.append(el('summary', { text: 'Reasoning' }), this._reasoningText);
    this._reasoning.hide();
    this.addWidget(this._reasoning);
    this._renderer = rendermime.createRenderer('text/markdown');
    this._renderer.addClass('lms-Turn-content');
    this.addWidget(this._renderer);
    this._footer = new Widget();
    this._footer.addClass('lms-Turn-footer');
    this.addWidget(this._footer);
    this._streaming = streaming;
    this.update();
  }

  setStreaming(streaming: boolean): void {
    this._streaming = streaming;
    this.update();
  }

  /** Show the turn's current text; Markdown renders at most ~30 times a second. */
  protected onUpdateRequest(msg: Message): void {
    super.onUpdateRequest(msg);
    const turn = this._turn;
    if (!this._renderer || !this._footer || !this._reasoning || !this._reasoningText) {
      return;
    }
    if (turn.reasoning) {
      this._reasoningText.textContent = turn.reasoning;
      this._reasoning.show();
    }
    this._scheduleRender();
    const footer = this._footer.node;
    footer.replaceChildren();
    if (turn.error) {
      footer.append(el('div', { class: 'lms-Error', role: 'alert', text: turn.error }));
    }
    if (this._streaming) {
      footer.append(el('div', { class: 'lms-Pending', text: turn.content ? 'generating…' : turn.reasoning ? 'reasoning…' : 'waiting for the model…' }));
    } else {
      const stats = formatStats(turn.stats, turn.stopped);
      if (stats) {
        footer.append(el('div', { class: 'lms-Stats', text: stats }));
      }
    }
    this.node.classList.toggle('lms-mod-streaming', this._streaming);
  }

  private _scheduleRender(): void {
    if (this._rendering) {
      this._dirty = true;
      return;
    }
    void this._renderLoop();
  }

  private async _renderLoop(): Promise<void> {
    this._rendering = true;
    try {
      do {
        this._dirty = false;
        const text = this._turn.content;
        if (text !== this._rendered && this._renderer && !this.isDisposed) {
          this._rendered = text;
          await this._renderer.renderModel(
            new MimeModel({ data: { 'text/markdown': text }, trusted: false })
          );
          this.node.dispatchEvent(new CustomEvent('lms-rendered', { bubbles: true }));
          await new Promise(resolve => setTimeout(resolve, 33));
        }
      } while (this._dirty && !this.isDisposed);
    } catch (error) {
      this._rendered = '';
      this._footer?.node.append(el('div', { class: 'lms-Error', text: `Rendering failed: ${(error as Error).message}` }));
    } finally {
      this._rendering = false;
    }
  }

  private _renderer: IRenderMime.IRenderer | null = null;
  private _reasoning: Widget | null = null;
  private _reasoningText: HTMLElement | null = null;
  private _footer: Widget | null = null;
  private _streaming = false;
  private _rendering = false;
  private _dirty = false;
  private _rendered: string | null = null;
}

// ---- chat ----------------------------------------------------------------------------------

let idCounter = 0;

export class ChatSection extends Panel {
  constructor(
    private _chat: ChatController,
    private _rendermime: IRenderMimeRegistry,
    private _settings: () => ISidebarSettings
  ) {
    super();
    this.addClass('lms-Chat');
    const id = `lms-chat-model-${++idCounter}`;

    // Controls: model picker and the optional system prompt.
    this._select = el('select', { id, class: 'jp-mod-styled lms-Select' });
    this._select.addEventListener('change', () => {
      this._chat.setModel(this._select.value);
      this._stateChanged.emit();
    });
    this._system = el('textarea', {
      class: 'jp-mod-styled lms-System-text',
      'aria-label': 'System prompt',
      rows: '3',
      placeholder: 'Optional instructions for the model'
    });
    this._system.addEventListener('input', () => {
      this._chat.setSystemPrompt(this._system.value);
      this._stateChanged.emit();
    });
    const controls = new Widget();
    controls.addClass('lms-Chat-controls');
    controls.node.append(
      el('h3', { class: 'lms-Heading', text: 'Chat' }),
      el('div', { class: 'lms-Field' }, el('label', { for: id, text: 'Chat model' }), this._select),
      el('details', { class: 'lms-System' }, el('summary', { text: 'System prompt' }), this._system)
    );
    this.addWidget(controls);

    // The conversation.
    this._conversation = new Panel();
    this._conversation.addClass('lms-Conversation');
    this._conversation.node.setAttribute('role', 'region');
    this._conversation.node.setAttribute('aria-label', 'Conversation');
    this._conversation.node.tabIndex = 0;
    this._conversation.node.addEventListener('lms-rendered', () => this._stickToBottom());
    this._conversation.node.addEventListener('scroll', () => {
      const node = this._conversation.node;
      this._follow = node.scrollHeight - node.scrollTop - node.clientHeight < 40;
    });
    this.addWidget(this._conversation);

    // The composer.
    this._message = el('textarea', {
      class: 'jp-mod-styled lms-Message',
      'aria-label': 'Message',
      rows: '3',
      placeholder: 'Message (Enter sends, Shift+Enter for a new line)'
    });
    this._message.addEventListener('keydown', event => {
      if (event.key === 'Enter' && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
        event.preventDefault();
        event.stopPropagation();
        void this.send();
      }
    });
    this._send = button('Send', 'Send', 'jp-mod-accept');
    this._send.addEventListener('click', () => void this.send());
    this._stop = button('Stop', 'Stop', 'jp-mod-warn');
    this._stop.disabled = true;
    this._stop.addEventListener('click', () => this._chat.stop());
    this._new = button('New chat', 'New chat');
    this._new.addEventListener('click', () => {
      this._chat.newChat();
      this._stateChanged.emit();
      this._message.focus();
    });
    const composer = new Widget();
    composer.addClass('lms-Composer');
    composer.node.append(this._message, el('div', { class: 'lms-Buttons' }, this._send, this._stop, this._new));
    this.addWidget(composer);

    this._chat.changed.connect(this._onChange, this);
    this._rebuild();
  }

  /** The conversation or its settings changed in a way worth saving. */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  /** Send the message box's text. */
  async send(): Promise<void> {
    const text = this._message.value;
    if (!text.trim() || this._chat.busy) {
      return;
    }
    this._chat.setModel(this._select.value);
    this._message.value = '';
    const settings = this._settings();
    await this._chat.send(text, {
      ttl: settings.ttl,
      maxTokens: settings.maxTokens,
      extra: settings.extraRequestFields
    });
  }

  /** The picker: loaded instances, then every model (JIT loads it on first use). */
  setChoices(models: IModelV0[], instances: IInstance[]): void {
    const choices = chatModelChoices(models, instances);
    const value = pickChatModel(this._chat.state.model, choices, this._settings().defaultModel);
    const signature = JSON.stringify([choices, value]);
    if (signature === this._choicesSignature) {
      return;
    }
    this._choicesSignature = signature;
    const groups: { [group: string]: HTMLOptGroupElement } = {
      loaded: el('optgroup', { label: 'Loaded' }),
      all: el('optgroup', { label: 'All models (loaded on first use)' })
    };
    for (const choice of choices) {
      groups[choice.group].append(el('option', { value: choice.value, text: choice.label }));
    }
    if (value && !choices.some(c => c.value === value)) {
      groups.all.append(el('option', { value, text: value }));
    }
    this._select.replaceChildren(...Object.values(groups).filter(g => g.children.length));
    this._select.value = value;
    if (this._chat.state.model !== value) {
      this._chat.setModel(value);
      this._stateChanged.emit();
    }
  }

  private _onChange(_: ChatController, change: ChatChange): void {
    switch (change.kind) {
      case 'reset':
        this._rebuild();
        break;
      case 'turn-added': {
        const turn = this._chat.state.turns[change.index];
        const widget = new TurnWidget(turn, this._rendermime, turn.role === 'assistant' && this._chat.busy);
        this._turns.push(widget);
        this._conversation.addWidget(widget);
        this._stickToBottom(true);
        break;
      }
      case 'turn-updated':
        this._turns[change.index]?.update();
        this._stickToBottom();
        break;
      case 'busy':
        this._send.disabled = change.busy;
        this._stop.disabled = !change.busy;
        this._conversation.node.setAttribute('aria-busy', String(change.busy));
        if (!change.busy) {
          for (const turn of this._turns) {
            turn.setStreaming(false);
          }
          this._stateChanged.emit();
        }
        break;
    }
  }

  /** Show the whole conversation again (a new chat, or one restored after a reload). */
  private _rebuild(): void {
    for (const turn of this._turns) {
      turn.dispose();
    }
    this._turns = [];
    const state: IChatState = this._chat.state;
    for (const turn of state.turns) {
      const widget = new TurnWidget(turn, this._rendermime, false);
      this._turns.push(widget);
      this._conversation.addWidget(widget);
    }
    if (this._system.value !== state.systemPrompt) {
      this._system.value = state.systemPrompt;
    }
    if (state.systemPrompt) {
      (this._system.parentElement as HTMLDetailsElement).open = true;
    }
    if (state.model && this._select.value !== state.model) {
      if (![...this._select.options].some(o => o.value === state.model)) {
        this._select.append(el('option', { value: state.model, text: state.model }));
      }
      this._select.value = state.model;
    }
    this._send.disabled = this._chat.busy;
    this._stop.disabled = !this._chat.busy;
    this._stickToBottom(true);
  }

  /** Follow the answer as it grows, unless the user scrolled up to read. */
  private _stickToBottom(force = false): void {
    if (force) {
      this._follow = true;
    }
    if (this._follow) {
      const node = this._conversation.node;
      node.scrollTop = node.scrollHeight;
    }
  }

  private _select: HTMLSelectElement;
  private _system: HTMLTextAreaElement;
  private _conversation: Panel;
  private _message: HTMLTextAreaElement;
  private _send: HTMLButtonElement;
  private _stop: HTMLButtonElement;
  private _new: HTMLButtonElement;
  private _turns: TurnWidget[] = [];
  private _choicesSignature = '';
  private _follow = true;
  private _stateChanged = new Signal<this, void>(this);
}

// ---- the sidebar ----------------------------------------------------------------------------

export class LMStudioSidebar extends Panel {
  constructor(options: {
    client: LMSClient;
    chat: ChatController;
    rendermime: IRenderMimeRegistry;
    settings: () => ISidebarSettings;
    icon: LabIcon;
  }) {
    super();
    this.id = 'lms-jupyter-sidebar';
    this.addClass('lms-Sidebar');
    this.title.icon = options.icon;
    this.title.caption = 'LM Studio';
    this.models = new ModelsSection(options.client, options.settings);
    this.chatSection = new ChatSection(options.chat, options.rendermime, options.settings);
    this.addWidget(this.models);
    this.addWidget(this.chatSection);
    this.models.listed.connect((_, { models, instances }) => this.chatSection.setChoices(models, instances));
    options.chat.finished.connect(() => void this.models.refresh());
  }

  readonly models: ModelsSection;
  readonly chatSection: ChatSection;
}
