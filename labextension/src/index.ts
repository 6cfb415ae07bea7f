/**
 * lms-jupyter's JupyterLab plugin: the "LM Studio" left-sidebar panel (React components
 * in models/ and chat/), its command-palette entry, its settings and the conversation kept
 * in the state database (so it survives a page reload). The notebook tracker is optional:
 * with it, answers' code blocks insert as cells and a message can carry the active cell.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { LabIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONValue } from '@lumino/coreutils';

import { LMSClient } from './api';
import { ChatController } from './chat';
import { NotebookBridge } from './chat/notebook';
import { DEFAULT_SETTINGS, ISidebarSettings, readSettings } from './settings';
import { LMStudioSidebar } from './sidebar';
import { completerPlugin } from './completer/plugin';
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

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'LM Studio sidebar: models, load/unload and a streaming chat.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ICommandPalette, ISettingRegistry, IStateDB, ILayoutRestorer, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    state: IStateDB | null,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null
  ) => {
    let settings: ISidebarSettings = { ...DEFAULT_SETTINGS };
    const client = new LMSClient(app.serviceManager.serverSettings);
    const chat = new ChatController(client);
    const sidebar = new LMStudioSidebar({
      client,
      chat,
      notebook: new NotebookBridge(notebooks),
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
              sidebar.update();
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
      sidebar.stateChanged.connect(save);
      chat.finished.connect(save);
    });
  }
};

export default [plugin, completerPlugin];
