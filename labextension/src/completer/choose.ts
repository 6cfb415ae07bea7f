/**
 * Which model a completion goes to, from the loaded models (`GET lms/api/v0/ps`) and the
 * settings: pure, so it is unit-tested.
 */
import { ICompleterSettings } from './settings';

/** A row of `GET lms/api/v0/ps`. */
export interface ILoadedModel {
  identifier: string;
  modelKey?: string;
  type?: string;
}

/** Loaded models that generate text (not embedding models). */
export function generativeModels(rows: ILoadedModel[]): ILoadedModel[] {
  return rows.filter(row => row.type !== 'embeddings' && row.type !== 'embedding');
}

/**
 * The model a completion goes to, or null (stay quiet): the configured one when it is
 * loaded (or JIT loading is allowed), else the first loaded LLM.
 */
export function chooseModel(rows: ILoadedModel[], settings: ICompleterSettings): string | null {
  const loaded = generativeModels(rows);
  const wanted = settings.model;
  if (wanted) {
    const key = wanted.toLowerCase();
    const match = loaded.find(
      row => row.identifier === wanted || (row.modelKey ?? '').toLowerCase() === key
    );
    if (match) {
      return match.identifier;
    }
    return settings.allowJitLoad ? wanted : null;
  }
  return loaded.length ? loaded[0].identifier : null;
}
