/**
 * One turn of the conversation: the user's message (with the notebook context it carried,
 * folded), or an answer: reasoning folded in a <details>, the Markdown answer, tool calls
 * shown as calls (name and arguments), the error, and the statistics line.
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import * as React from 'react';

import { formatStats, IToolCall, ITurn } from '../state';
import { AnswerMarkdown } from './Markdown';
import { splitThinking } from './markdown';

export interface ITurnProps {
  turn: ITurn;
  streaming: boolean;
  modelName: string;
  rendermime: IRenderMimeRegistry;
  canInsert: boolean;
  onInsert: (code: string) => boolean;
  onRendered: () => void;
}

function prettyArguments(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text; // still streaming, or not JSON
  }
}

export function ToolCallView({ call }: { call: IToolCall }): JSX.Element {
  return (
    <div className="lms-ToolCall" role="group" aria-label={`Tool call ${call.name}`}>
      <div className="lms-ToolCall-head">
        <span className="lms-ToolCall-label">Tool call</span>
        <code className="lms-ToolCall-name">{call.name || '…'}</code>
        {call.id && <span className="lms-ToolCall-id">{call.id}</span>}
      </div>
      {call.arguments && <pre className="lms-ToolCall-arguments">{prettyArguments(call.arguments)}</pre>}
    </div>
  );
}

export function TurnView(props: ITurnProps): JSX.Element {
  const { turn, streaming } = props;
  if (turn.role === 'user') {
    return (
      <div className="lms-Turn lms-Turn-user" role="group" aria-label="You">
        <div className="lms-Turn-who">You</div>
        <div className="lms-Turn-text">{turn.content}</div>
        {turn.context && (
          <details className="lms-Context">
            <summary>Notebook context sent with it</summary>
            <pre className="lms-Context-text">{turn.context}</pre>
          </details>
        )}
      </div>
    );
  }
  const inline = splitThinking(turn.content);
  const reasoning = [turn.reasoning ?? '', inline.reasoning].filter(Boolean).join('\n');
  const content = inline.content;
  const calls = (turn.toolCalls ?? []).filter(Boolean);
  const stats = formatStats(turn.stats, turn.stopped);
  const pending = content || calls.length ? 'generating…' : reasoning ? 'reasoning…' : 'waiting for the model…';
  return (
    <div
      className={`lms-Turn lms-Turn-assistant${streaming ? ' lms-mod-streaming' : ''}`}
      role="group"
      aria-label="Answer"
    >
      <div className="lms-Turn-who">{props.modelName || 'Assistant'}</div>
      {reasoning && (
        <details className="lms-Reasoning">
          <summary>{streaming && !content ? 'Reasoning…' : 'Reasoning'}</summary>
          <div className="lms-Reasoning-text">{reasoning}</div>
        </details>
      )}
      <AnswerMarkdown
        content={content}
        rendermime={props.rendermime}
        canInsert={props.canInsert}
        onInsert={props.onInsert}
        onRendered={props.onRendered}
      />
      {calls.map((call, i) => (
        <ToolCallView key={i} call={call} />
      ))}
      <div className="lms-Turn-footer">
        {turn.error && (
          <div className="lms-Error" role="alert">
            {turn.error}
          </div>
        )}
        {streaming ? (
          <div className="lms-Pending">{pending}</div>
        ) : (
          stats && <div className="lms-Stats">{stats}</div>
        )}
      </div>
    </div>
  );
}
