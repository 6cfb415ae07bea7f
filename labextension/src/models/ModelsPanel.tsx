/**
 * The models section: every model on disk with its loaded instances (status, queue, TTL),
 * load progress, Load / Unload, the memory guardrail's refusal with "Load anyway", and
 * whether the live event stream is connected. Rendered from a ModelsStore, which the
 * server's event stream keeps current.
 */
import { Button, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { useSignalCount } from '../hooks';
import { formatBytes, formatContext, formatDuration, IModelView, loadProgressOf } from '../state';
import { IRowError, ModelsStore } from './store';

const CONNECTION_LABELS: { [state: string]: string } = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  stopped: 'offline'
};

export function ModelsPanel({ store }: { store: ModelsStore }): JSX.Element {
  useSignalCount(store.changed);
  const views = store.views;
  const connection = store.connection;
  return (
    <section className="lms-Models" aria-labelledby="lms-models-heading">
      <div className="lms-SectionHead">
        <h3 className="lms-Heading" id="lms-models-heading">
          Models
        </h3>
        <span
          className={`lms-Connection lms-Connection-${connection}`}
          role="status"
          aria-label="Model events"
          title={
            connection === 'live'
              ? 'The server pushes model events: this list is current.'
              : store.connectionError || 'Connecting to the server’s model events…'
          }
        >
          {CONNECTION_LABELS[connection] ?? connection}
        </span>
        <Button
          minimal
          small
          className="lms-IconButton"
          aria-label="Refresh models"
          title="Refresh models"
          onClick={() => {
            void store.refreshCatalog();
            if (store.connection !== 'live') {
              store.reconnect();
            }
          }}
        >
          <refreshIcon.react tag="span" />
        </Button>
      </div>
      {store.listError && (
        <div className="lms-Banner" role="alert">
          {store.listError}
        </div>
      )}
      <ul className="lms-ModelList" role="list" aria-label="Models" data-empty={views.length === 0 && !store.listError ? 'true' : undefined}>
        {views.map(view => (
          <ModelRow
            key={view.id}
            view={view}
            pending={store.isPending(view.id)}
            error={store.errorOf(view.id)}
            isUnloading={id => store.isUnloading(id)}
            onLoad={force => void store.load(view.id, force)}
            onUnload={identifier => void store.unload(view.id, identifier)}
          />
        ))}
      </ul>
    </section>
  );
}

interface IRowProps {
  view: IModelView;
  pending: boolean;
  error?: IRowError;
  isUnloading: (identifier: string) => boolean;
  onLoad: (force: boolean) => void;
  onUnload: (identifier: string) => void;
}

function ModelRow({ view, pending, error, isUnloading, onLoad, onUnload }: IRowProps): JSX.Element {
  const stateText =
    pending && view.state !== 'loaded' ? 'loading' : view.state === 'not-loaded' ? 'not loaded' : view.state;
  const meta = [
    view.publisher,
    view.quantization,
    formatBytes(view.sizeBytes),
    formatContext(view.loadedContextLength ?? view.maxContextLength),
    ...view.capabilities
  ].filter(Boolean);
  const progress = loadProgressOf(view, pending);
  return (
    <li className={`lms-Model lms-mod-${view.state}`} data-model-id={view.id}>
      <div className="lms-Model-head">
        <span className="lms-Model-name" title={view.id}>
          {view.name}
        </span>
        <span className={`lms-Badge lms-Badge-${stateText.replace(' ', '-')}`}>{stateText}</span>
      </div>
      {view.name !== view.id && <div className="lms-Model-id">{view.id}</div>}
      <div className="lms-Model-meta">{meta.join(' · ')}</div>
      {view.instances
        .filter(inst => !inst.loading)
        .map(inst => {
          const parts = inst.crashReason
            ? [`crashed (${inst.crashReason}); the next request reloads it`]
            : [inst.statusLabel, `queued ${inst.queued}`];
          if (inst.ttlRemainingMs !== null) {
            parts.push(`TTL left ${formatDuration(inst.ttlRemainingMs)}`);
          }
          if (inst.contextLength) {
            parts.push(formatContext(inst.contextLength));
          }
          const label = inst.identifier === view.id ? '' : `${inst.identifier}: `;
          const unloading = isUnloading(inst.identifier);
          return (
            <div key={inst.identifier} className={`lms-Instance lms-status-${inst.status}`}>
              <span className="lms-Instance-state">{label + parts.join(' · ')}</span>
              <Button
                small
                className="lms-Button"
                aria-label={`Unload ${inst.identifier}`}
                disabled={unloading}
                onClick={() => onUnload(inst.identifier)}
              >
                {unloading ? 'Unloading…' : 'Unload'}
              </Button>
            </div>
          );
        })}
      {progress && (
        <progress
          className="lms-Progress"
          aria-label={`Loading ${view.id}`}
          max={1}
          value={progress.value ?? undefined}
          title={progress.value !== null ? `${Math.round(progress.value * 100)}%` : undefined}
        />
      )}
      {error && (
        <div className="lms-Error" role="alert">
          <span>{error.message}</span>
          {error.code === 'insufficient_memory' && (
            <Button small className="lms-Button jp-mod-warn" onClick={() => onLoad(true)}>
              Load anyway
            </Button>
          )}
        </div>
      )}
      {(view.state === 'not-loaded' || (pending && view.state !== 'loaded')) && (
        <div className="lms-Model-actions">
          <Button
            small
            className="lms-Button jp-mod-accept"
            aria-label={`Load ${view.id}`}
            disabled={pending}
            onClick={() => onLoad(false)}
          >
            {pending ? 'Loading…' : 'Load'}
          </Button>
        </div>
      )}
    </li>
  );
}
