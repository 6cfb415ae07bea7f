/**
 * The chat: the model picker (a dropdown of the models, loaded ones first, by their
 * display names), an optional system prompt, the conversation and the composer, with Send,
 * Stop (aborts the stream, so the server stops generating), New chat and the "Include
 * active cell" toggle that sends the notebook's active cell (or the editor's selection)
 * and its error output with the message.
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Button, HTMLSelect } from '@jupyterlab/ui-components';
import * as React from 'react';

import type { ChatController } from '../chat';
import { useSignalCount } from '../hooks';
import type { ModelsStore } from '../models/store';
import type { ISidebarSettings } from '../settings';
import { pickChatModel } from '../state';
import { describeContext, formatCellContext } from './context';
import type { NotebookBridge } from './notebook';
import { TurnView } from './Turn';

export interface IChatPanelProps {
  chat: ChatController;
  store: ModelsStore;
  notebook: NotebookBridge;
  rendermime: IRenderMimeRegistry;
  settings: () => ISidebarSettings;
  /** The conversation or its settings changed in a way worth saving. */
  onStateChanged: () => void;
}

let idCounter = 0;

export function ChatPanel(props: IChatPanelProps): JSX.Element {
  const { chat, store, notebook } = props;
  useSignalCount(chat.changed);
  useSignalCount(store.changed);
  useSignalCount(notebook.changed);
  const [id] = React.useState(() => `lms-chat-model-${++idCounter}`);
  const [message, setMessage] = React.useState('');
  const [includeCell, setIncludeCell] = React.useState(false);
  const [systemOpen, setSystemOpen] = React.useState(!!chat.state.systemPrompt);
  const conversation = React.useRef<HTMLDivElement>(null);
  const follow = React.useRef(true);
  const messageBox = React.useRef<HTMLTextAreaElement>(null);

  const state = chat.state;
  const choices = store.choices;
  const names = store.names;
  const selected = pickChatModel(state.model, choices, props.settings().defaultModel);
  const choicesKey = JSON.stringify(choices);

  // A new list of models may change the pick (the first loaded model, the default).
  React.useEffect(() => {
    if (selected !== chat.state.model) {
      chat.setModel(selected);
      props.onStateChanged();
    }
  }, [choicesKey, selected]);

  React.useEffect(() => {
    if (state.systemPrompt) {
      setSystemOpen(true);
    }
  }, [state]);

  const stick = React.useCallback((force = false) => {
    const node = conversation.current;
    if (force) {
      follow.current = true;
    }
    if (node && follow.current) {
      node.scrollTop = node.scrollHeight;
    }
  }, []);

  // Follow the answer as it grows, unless the user scrolled up to read.
  React.useLayoutEffect(() => stick());
  React.useEffect(() => {
    const onChange = (_: unknown, change: { kind: string }) => {
      if (change.kind === 'reset' || change.kind === 'turn-added') {
        follow.current = true;
      }
      if (change.kind === 'busy' && !chat.busy) {
        props.onStateChanged();
      }
    };
    chat.changed.connect(onChange);
    return () => {
      chat.changed.disconnect(onChange);
    };
  }, [chat]);

  const send = async () => {
    const text = message;
    if (!text.trim() || chat.busy) {
      return;
    }
    const cell = includeCell ? notebook.activeCell() : null;
    chat.setModel(selected);
    setMessage('');
    const settings = props.settings();
    await chat.send(
      text,
      { ttl: settings.ttl, maxTokens: settings.maxTokens, extra: settings.extraRequestFields },
      cell ? formatCellContext(cell) : ''
    );
  };

  const insert = (code: string) => notebook.insertBelow(code);
  const canInsert = notebook.hasNotebook;
  const loaded = choices.filter(c => c.group === 'loaded');
  const others = choices.filter(c => c.group === 'all');
  const listed = choices.some(c => c.value === selected);
  const cellNote = includeCell ? describeContext(notebook.activeCell()) : '';

  return (
    <section className="lms-Chat" aria-label="Chat">
      <div className="lms-Chat-controls">
        <h3 className="lms-Heading">Chat</h3>
        <div className="lms-Field">
          <label htmlFor={id}>Chat model</label>
          <HTMLSelect
            id={id}
            className="lms-Select"
            value={selected}
            onChange={event => {
              chat.setModel(event.currentTarget.value);
              props.onStateChanged();
            }}
          >
            {loaded.length > 0 && (
              <optgroup label="Loaded">
                {loaded.map(c => (
                  <option key={c.value} value={c.value}>
                    {c.label}
                  </option>
                ))}
              </optgroup>
            )}
            {(others.length > 0 || (selected && !listed)) && (
              <optgroup label="All models (loaded on first use)">
                {others.map(c => (
                  <option key={c.value} value={c.value}>
                    {c.label}
                  </option>
                ))}
                {selected && !listed && <option value={selected}>{selected}</option>}
              </optgroup>
            )}
          </HTMLSelect>
        </div>
        <details
          className="lms-System"
          open={systemOpen}
          onToggle={event => setSystemOpen((event.currentTarget as HTMLDetailsElement).open)}
        >
          <summary>System prompt</summary>
          <textarea
            className="jp-mod-styled lms-System-text"
            aria-label="System prompt"
            rows={3}
            placeholder="Optional instructions for the model"
            value={state.systemPrompt}
            onChange={event => {
              chat.setSystemPrompt(event.currentTarget.value);
              props.onStateChanged();
              setMessage(m => m); // re-render with the new prompt
            }}
          />
        </details>
      </div>

      <div
        className="lms-Conversation"
        role="region"
        aria-label="Conversation"
        aria-busy={chat.busy}
        tabIndex={0}
        ref={conversation}
        onScroll={() => {
          const node = conversation.current;
          if (node) {
            follow.current = node.scrollHeight - node.scrollTop - node.clientHeight < 40;
          }
        }}
      >
        {state.turns.length === 0 && <p className="lms-Empty">Pick a model and send a message.</p>}
        {state.turns.map((turn, i) => (
          <TurnView
            key={i}
            turn={turn}
            streaming={chat.busy && i === state.turns.length - 1 && turn.role === 'assistant'}
            modelName={(turn.model && names.get(turn.model)) || turn.model || ''}
            rendermime={props.rendermime}
            canInsert={canInsert}
            onInsert={insert}
            onRendered={() => stick()}
          />
        ))}
      </div>

      <div className="lms-Composer">
        <textarea
          ref={messageBox}
          className="jp-mod-styled lms-Message"
          aria-label="Message"
          rows={3}
          placeholder="Message (Enter sends, Shift+Enter for a new line)"
          value={message}
          onChange={event => setMessage(event.currentTarget.value)}
          onKeyDown={event => {
            const native = event.nativeEvent as KeyboardEvent;
            if (
              event.key === 'Enter' &&
              !event.shiftKey &&
              !event.altKey &&
              !event.ctrlKey &&
              !event.metaKey &&
              !native.isComposing
            ) {
              event.preventDefault();
              event.stopPropagation();
              void send();
            }
          }}
        />
        <label className="lms-Toggle" title="Send the notebook's active cell (or the selected code) and its error with the message">
          <input
            type="checkbox"
            checked={includeCell}
            onChange={event => setIncludeCell(event.currentTarget.checked)}
          />
          <span>Include active cell</span>
          {cellNote && <span className="lms-Toggle-note">({cellNote})</span>}
        </label>
        <div className="lms-Buttons">
          <Button className="lms-Button jp-mod-accept" disabled={chat.busy} onClick={() => void send()}>
            Send
          </Button>
          <Button className="lms-Button jp-mod-warn" disabled={!chat.busy} onClick={() => chat.stop()}>
            Stop
          </Button>
          <Button
            className="lms-Button"
            onClick={() => {
              chat.newChat();
              props.onStateChanged();
              messageBox.current?.focus();
            }}
          >
            New chat
          </Button>
        </div>
      </div>
    </section>
  );
}
