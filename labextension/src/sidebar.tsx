/**
 * The LM Studio sidebar: a ReactWidget holding the models section over the chat. The
 * models come from the server's event stream (opened when the panel is first attached and
 * kept open: it costs nothing while idle, and the list is current when the panel shows).
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon, ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';

import type { LMSClient } from './api';
import type { ChatController } from './chat';
import { ChatPanel } from './chat/ChatPanel';
import type { NotebookBridge } from './chat/notebook';
import { ModelsPanel } from './models/ModelsPanel';
import { ModelsStore } from './models/store';
import type { ISidebarSettings } from './settings';

export interface ISidebarOptions {
  client: LMSClient;
  chat: ChatController;
  notebook: NotebookBridge;
  rendermime: IRenderMimeRegistry;
  settings: () => ISidebarSettings;
  icon: LabIcon;
}

export class LMStudioSidebar extends ReactWidget {
  constructor(private _options: ISidebarOptions) {
    super();
    this.id = 'lms-jupyter-sidebar';
    this.addClass('lms-Sidebar');
    this.title.icon = _options.icon;
    this.title.caption = 'LM Studio';
    this.models = new ModelsStore(_options.client, () => _options.settings().ttl);
    this._online = () => this.models.reconnect();
  }

  readonly models: ModelsStore;

  /** The conversation or its settings changed in a way worth saving. */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.removeEventListener('online', this._online);
    this.models.dispose();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.models.start();
    window.addEventListener('online', this._online);
  }

  protected render(): JSX.Element {
    const o = this._options;
    return (
      <>
        <ModelsPanel store={this.models} />
        <ChatPanel
          chat={o.chat}
          store={this.models}
          notebook={o.notebook}
          rendermime={o.rendermime}
          settings={o.settings}
          onStateChanged={() => this._stateChanged.emit()}
        />
      </>
    );
  }

  private _online: () => void;
  private _stateChanged = new Signal<this, void>(this);
}
