/** The sidebar's user settings (schema/plugin.json), read once and on every change. */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';

export interface ISidebarSettings {
  defaultModel: string;
  systemPrompt: string;
  ttl: number;
  maxTokens: number;
  extraRequestFields: { [key: string]: unknown };
}

export const DEFAULT_SETTINGS: ISidebarSettings = {
  defaultModel: '',
  systemPrompt: '',
  ttl: 0,
  maxTokens: 0,
  extraRequestFields: {}
};

export function readSettings(settings: ISettingRegistry.ISettings | null): ISidebarSettings {
  if (!settings) {
    return { ...DEFAULT_SETTINGS };
  }
  const c = settings.composite as { [key: string]: unknown };
  const num = (v: unknown, d: number) => (typeof v === 'number' && isFinite(v) ? v : d);
  const extra = c.extraRequestFields;
  return {
    defaultModel: typeof c.defaultModel === 'string' ? c.defaultModel : '',
    systemPrompt: typeof c.systemPrompt === 'string' ? c.systemPrompt : '',
    ttl: num(c.ttl, 0),
    maxTokens: num(c.maxTokens, 0),
    extraRequestFields:
      extra && typeof extra === 'object' && !Array.isArray(extra) ? (extra as { [key: string]: unknown }) : {}
  };
}
