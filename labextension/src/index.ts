/**
 * lms-jupyter's JupyterLab plugin: the "LM Studio" left-sidebar panel, its command-palette
 * entry, its settings and the conversation kept in the state database (so it survives a
 * page reload).
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { LabIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONValue } from '@lumino/coreutils';

import { LMSClient } from './api';
import { ChatController } from './chat';
import { completerPlugin } from './completer/plugin';
import { DEFAULT_SETTINGS, ISidebarSettings, LMStudioSidebar } from './panel';
import { restoreChat, serializeChat } from './state';

const PLUGIN_ID = 'lms-jupyter:plugin';
const STATE_KEY = 'lms-jupyter:chat';
export const COMMAND_OPEN = 'lms-jupyter:open';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2h-7.6L7 21.4V17H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm1 4v2h14V7H5zm0 4v2h9v-2H5z"/>
  </g>
</svg>`;

export const lmsIcon = new LabIcon({ name: 'lms-jupyter:icon', svgstr: ICON_SVG });

function readSettings(settings: ISettingRegistry.ISettings | null): ISidebarSettings {
  if (!settings) {
    return { ...DEFAULT_SETTINGS };
  }
  const c = settings.composite as { [key: string]: any };
  const num = (v: unknown, d: number) => (typeof v === 'number' && isFinite(v) ? v : d);
  const extra = c.extraRequestFields;
  return {
    defaultModel: typeof c.defaultModel === 'string' ? c.defaultModel : '',
    systemPrompt: typeof c.systemPrompt === 'string' ? c.systemPrompt : '',
    ttl: num(c.ttl, 0),
    maxTokens: num(c.maxTokens, 0),
    extraRequestFields: extra && typeof extra === 'object' && !Array.isArray(extra) ? extra : {},
    refreshInterval: num(c.refreshInterval, 2)
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'LM Studio sidebar: models, load/unload and a streaming chat.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ICommandPalette, ISettingRegistry, IStateDB, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    state: IStateDB | null,
    restorer: ILayoutRestorer | null
  ) => {
    let settings: ISidebarSettings = { ...DEFAULT_SETTINGS };
    const client = new LMSClient(app.serviceManager.serverSettings);
    const chat = new ChatController(client);
    const sidebar = new LMStudioSidebar({
      client,
      chat,
      rendermime,
      settings: () => settings,
      icon: lmsIcon
    });
    app.shell.add(sidebar, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(sidebar, 'lms-jupyter-sidebar');
    }

    app.commands.addCommand(COMMAND_OPEN, {
      label: 'LM Studio: Open',
      caption: 'Show the LM Studio sidebar (models and chat)',
      icon: args => (args['isPalette'] ? undefined : lmsIcon),
      execute: () => {
        app.shell.activateById(sidebar.id);
      }
    });
    if (palette) {
      palette.addItem({ command: COMMAND_OPEN, category: 'LM Studio' });
    }

    const settingsLoaded = settingRegistry
      ? settingRegistry
          .load(PLUGIN_ID)
          .then(loaded => {
            settings = readSettings(loaded);
            loaded.changed.connect(() => {
              settings = readSettings(loaded);
              void sidebar.models.refresh();
            });
          })
          .catch(reason => {
            console.warn('lms-jupyter: settings could not be loaded, using defaults.', reason);
          })
      : Promise.resolve();

    // The conversation: restored once, saved after each answer and each change.
    void Promise.all([settingsLoaded, app.restored]).then(async () => {
      let restored = null;
      if (state) {
        try {
          restored = restoreChat(await state.fetch(STATE_KEY));
        } catch (reason) {
          console.warn('lms-jupyter: the saved conversation could not be read.', reason);
        }
      }
      chat.restore(restored ?? { model: settings.defaultModel, systemPrompt: settings.systemPrompt, turns: [] });
      if (!state) {
        return;
      }
      let timer: number | null = null;
      const save = () => {
        if (timer !== null) {
          clearTimeout(timer);
        }
        timer = window.setTimeout(() => {
          timer = null;
          void state
            .save(STATE_KEY, serializeChat(chat.state) as ReadonlyPartialJSONValue)
            .catch(reason => console.warn('lms-jupyter: the conversation could not be saved.', reason));
        }, 200);
      };
      sidebar.chatSection.stateChanged.connect(save);
      chat.finished.connect(save);
    });
  }
};

export default [plugin, completerPlugin];
