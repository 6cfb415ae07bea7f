/**
 * The `lms-jupyter:completer` plugin: registers LM Studio's inline completion provider with
 * JupyterLab's completion manager (notebook code cells, the file editor and consoles) and
 * keeps its settings current.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { CompletionClient } from './client';
import { LMSInlineCompletionProvider } from './provider';
import { DEFAULT_COMPLETER_SETTINGS, ICompleterSettings, readCompleterSettings } from './settings';

export const COMPLETER_PLUGIN_ID = 'lms-jupyter:completer';

export const completerPlugin: JupyterFrontEndPlugin<void> = {
  id: COMPLETER_PLUGIN_ID,
  description: 'Inline (ghost-text) code completion from LM Studio models.',
  autoStart: true,
  requires: [ICompletionProviderManager],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    settingRegistry: ISettingRegistry | null
  ) => {
    let settings: ICompleterSettings = { ...DEFAULT_COMPLETER_SETTINGS };
    const provider = new LMSInlineCompletionProvider({
      client: new CompletionClient(app.serviceManager.serverSettings),
      settings: () => settings
    });
    manager.registerInlineProvider(provider);
    if (settingRegistry) {
      settingRegistry
        .load(COMPLETER_PLUGIN_ID)
        .then(loaded => {
          settings = readCompleterSettings(loaded.composite as { [key: string]: unknown });
          loaded.changed.connect(() => {
            settings = readCompleterSettings(loaded.composite as { [key: string]: unknown });
            if (!settings.enabled) {
              provider.cancel();
            }
          });
        })
        .catch(reason => {
          console.warn('lms-jupyter: completer settings could not be loaded, using defaults.', reason);
        });
    }
  }
};

export default completerPlugin;
