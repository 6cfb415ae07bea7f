/**
 * An answer rendered by JupyterLab's own rendermime (so it looks like a notebook Markdown
 * cell: the same sanitizer, math and code highlighting), cut into prose and code blocks;
 * each code block gets "Copy" and "Insert as cell below" (into the current notebook).
 */
import { Clipboard } from '@jupyterlab/apputils';
import { IRenderMime, IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { addBelowIcon, Button, copyIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { fenced, splitMarkdown } from './markdown';

/** At most ~30 renders a second while an answer streams. */
const RENDER_INTERVAL_MS = 33;

interface IRenderedProps {
  source: string;
  rendermime: IRenderMimeRegistry;
  className?: string;
  onRendered?: () => void;
}

/** Markdown through a rendermime renderer (untrusted: no scripts, sanitized HTML). */
export function RenderedMarkdown(props: IRenderedProps): JSX.Element {
  const host = React.useRef<HTMLDivElement>(null);
  const state = React.useRef<{
    renderer: IRenderMime.IRenderer | null;
    rendered: string | null;
    busy: boolean;
    disposed: boolean;
  }>({ renderer: null, rendered: null, busy: false, disposed: false });
  const latest = React.useRef(props);
  latest.current = props;
  const [failure, setFailure] = React.useState('');

  const pump = React.useCallback(async () => {
    const s = state.current;
    if (s.busy || !s.renderer) {
      return;
    }
    s.busy = true;
    try {
      while (!s.disposed && s.renderer && latest.current.source !== s.rendered) {
        const text = latest.current.source;
        s.rendered = text;
        await s.renderer.renderModel(new MimeModel({ data: { 'text/markdown': text }, trusted: false }));
        latest.current.onRendered?.();
        await new Promise(resolve => setTimeout(resolve, RENDER_INTERVAL_MS));
      }
    } catch (error) {
      s.rendered = null;
      setFailure(`Rendering failed: ${(error as Error).message}`);
    } finally {
      s.busy = false;
    }
  }, []);

  React.useEffect(() => {
    const s = state.current;
    const renderer = props.rendermime.createRenderer('text/markdown');
    s.renderer = renderer;
    s.disposed = false;
    host.current?.appendChild(renderer.node);
    void pump();
    return () => {
      s.disposed = true;
      s.renderer = null;
      s.rendered = null;
      renderer.dispose();
    };
  }, [props.rendermime]);

  React.useEffect(() => {
    void pump();
  }, [props.source]);

  return (
    <div className={props.className}>
      <div className="lms-Rendered" ref={host} />
      {failure && <div className="lms-Error">{failure}</div>}
    </div>
  );
}

interface ICodeBlockProps {
  code: string;
  language: string;
  rendermime: IRenderMimeRegistry;
  canInsert: boolean;
  onInsert: (code: string) => boolean;
  onRendered?: () => void;
}

export function CodeBlock(props: ICodeBlockProps): JSX.Element {
  const [note, setNote] = React.useState('');
  const flash = (text: string) => {
    setNote(text);
    setTimeout(() => setNote(''), 1500);
  };
  return (
    <div className="lms-CodeBlock" role="group" aria-label={`Code${props.language ? ' (' + props.language + ')' : ''}`}>
      <div className="lms-CodeBlock-toolbar">
        <span className="lms-CodeBlock-language">{props.language || 'code'}</span>
        <span className="lms-CodeBlock-note" role="status">
          {note}
        </span>
        <Button
          minimal
          small
          className="lms-CodeBlock-button"
          aria-label="Copy"
          title="Copy the code"
          onClick={() => {
            Clipboard.copyToSystem(props.code);
            flash('copied');
          }}
        >
          <copyIcon.react tag="span" className="lms-ButtonIcon" />
          Copy
        </Button>
        <Button
          minimal
          small
          className="lms-CodeBlock-button"
          aria-label="Insert as cell below"
          title={props.canInsert ? 'Insert the code as a new cell below the active cell' : 'Open a notebook first'}
          disabled={!props.canInsert}
          onClick={() => flash(props.onInsert(props.code) ? 'inserted' : 'no notebook')}
        >
          <addBelowIcon.react tag="span" className="lms-ButtonIcon" />
          Insert as cell below
        </Button>
      </div>
      <RenderedMarkdown
        className="lms-CodeBlock-code"
        source={fenced(props.code, props.language)}
        rendermime={props.rendermime}
        onRendered={props.onRendered}
      />
    </div>
  );
}

interface IAnswerProps {
  content: string;
  rendermime: IRenderMimeRegistry;
  canInsert: boolean;
  onInsert: (code: string) => boolean;
  onRendered?: () => void;
}

/** The whole answer: prose and code blocks in order. */
export function AnswerMarkdown(props: IAnswerProps): JSX.Element {
  const segments = splitMarkdown(props.content);
  return (
    <div className="lms-Turn-content">
      {segments.map((segment, i) =>
        segment.kind === 'markdown' ? (
          <RenderedMarkdown
            key={i}
            source={segment.text}
            rendermime={props.rendermime}
            onRendered={props.onRendered}
          />
        ) : (
          <CodeBlock
            key={i}
            code={segment.code}
            language={segment.language}
            rendermime={props.rendermime}
            canInsert={props.canInsert}
            onInsert={props.onInsert}
            onRendered={props.onRendered}
          />
        )
      )}
    </div>
  );
}
