/**
 * One conversation and its streaming: sends the chat to `lms/v1/chat/completions`, reads
 * the SSE stream into the last assistant turn, times it, and aborts it on Stop (closing
 * the connection is what makes the server stop generating). The widget only renders what
 * this reports through `changed`.
 */
import { ISignal, Signal } from '@lumino/signaling';

import type { LMSClient } from './api';
import { interpretChunk } from './chatstream';
import { readSSE } from './sse';
import {
  buildChatRequest,
  emptyChat,
  IChatOptions,
  IChatState,
  ITurn,
  StatsTracker
} from './state';

export type ChatChange =
  | { kind: 'reset' } // the whole conversation changed (new chat, restored)
  | { kind: 'turn-added'; index: number }
  | { kind: 'turn-updated'; index: number }
  | { kind: 'busy'; busy: boolean };

export class ChatController {
  constructor(private _client: LMSClient) {}

  get state(): IChatState {
    return this._state;
  }

  get busy(): boolean {
    return this._abort !== null;
  }

  /** Every change; `finished` fires once an answer ends (done, stopped or failed). */
  get changed(): ISignal<this, ChatChange> {
    return this._changed;
  }

  get finished(): ISignal<this, ITurn> {
    return this._finished;
  }

  /** Replace the conversation (restored from the state database). */
  restore(state: IChatState): void {
    this.stop();
    this._state = state;
    this._changed.emit({ kind: 'reset' });
  }

  setModel(model: string): void {
    this._state.model = model;
  }

  setSystemPrompt(prompt: string): void {
    this._state.systemPrompt = prompt;
  }

  newChat(): void {
    this.stop();
    this._state = emptyChat(this._state.model, this._state.systemPrompt);
    this._changed.emit({ kind: 'reset' });
  }

  /** Stop the running answer: abort the fetch, which closes the stream. */
  stop(): void {
    this._abort?.abort();
  }

  /** Send a user message and stream the answer; resolves when the answer ends. */
  async send(text: string, options: IChatOptions = {}, context = ''): Promise<void> {
    if (this.busy || !text.trim()) {
      return;
    }
    const state = this._state;
    const abort = new AbortController();
    this._abort = abort;
    this._changed.emit({ kind: 'busy', busy: true });
    const question: ITurn = { role: 'user', content: text };
    if (context) {
      question.context = context;
    }
    state.turns.push(question);
    this._changed.emit({ kind: 'turn-added', index: state.turns.length - 1 });
    const body = buildChatRequest(state, options);
    const turn: ITurn = { role: 'assistant', content: '', model: state.model };
    state.turns.push(turn);
    const index = state.turns.length - 1;
    this._changed.emit({ kind: 'turn-added', index });
    const stats = new StatsTracker(performance.now());
    const updated = () => {
      if (this._state === state) {
        this._changed.emit({ kind: 'turn-updated', index });
      }
    };
    try {
      if (!state.model) {
        throw new Error('Choose a chat model first.');
      }
      const response = await this._client.chatStream(body, abort.signal);
      read: for await (const event of readSSE(response.body!)) {
        for (const update of interpretChunk(event)) {
          switch (update.kind) {
            case 'content':
              turn.content += update.text;
              stats.delta(performance.now());
              break;
            case 'reasoning':
              turn.reasoning = (turn.reasoning ?? '') + update.text;
              stats.delta(performance.now());
              break;
            case 'tool_call': {
              const calls = (turn.toolCalls ??= []);
              const call = (calls[update.index] ??= { name: '', arguments: '' });
              if (update.id) {
                call.id = update.id;
              }
              if (update.name) {
                call.name += update.name;
              }
              if (update.arguments) {
                call.arguments += update.arguments;
              }
              stats.delta(performance.now());
              break;
            }
            case 'usage':
              stats.usage(update.usage);
              break;
            case 'finish':
              stats.finish(update.reason);
              break;
            case 'error':
              turn.error = update.message;
              turn.errorCode = update.code;
              break;
            case 'done':
              break read;
          }
        }
        updated();
      }
    } catch (error) {
      if (abort.signal.aborted) {
        turn.stopped = true;
      } else {
        turn.error = (error as Error)?.message || String(error);
        turn.errorCode = (error as { code?: string })?.code;
      }
    } finally {
      if (abort.signal.aborted) {
        turn.stopped = true;
      }
      turn.stats = stats.result(performance.now());
      this._abort = null;
      updated();
      this._changed.emit({ kind: 'busy', busy: false });
      this._finished.emit(turn);
    }
  }

  private _state: IChatState = emptyChat();
  private _abort: AbortController | null = null;
  private _changed = new Signal<this, ChatChange>(this);
  private _finished = new Signal<this, ITurn>(this);
}
