/**
 * The chat's link to the notebooks: what the active cell holds (its source, the editor's
 * selection, its error output) and "insert as a cell below" for code from an answer,
 * through JupyterLab's INotebookTracker and NotebookActions. The tracker is optional:
 * without the notebook plugin both report that there is no notebook.
 */
import type { ICodeCellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { ICellContext, ICellError } from './context';

export class NotebookBridge {
  constructor(private _tracker: INotebookTracker | null) {
    if (_tracker) {
      _tracker.currentChanged.connect(this._emit, this);
      _tracker.activeCellChanged.connect(this._emit, this);
      _tracker.selectionChanged.connect(this._emit, this);
    }
  }

  /** The current notebook or its active cell changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get hasNotebook(): boolean {
    return !!this._tracker?.currentWidget;
  }

  /** The active cell of the current notebook, as chat context; null when there is none. */
  activeCell(): ICellContext | null {
    const panel = this._tracker?.currentWidget;
    const cell = panel?.content.activeCell;
    if (!panel || !cell) {
      return null;
    }
    const model = cell.model;
    const source = model.sharedModel.getSource();
    const context: ICellContext = {
      index: panel.content.activeCellIndex,
      cellType: model.type,
      language: panel.model?.defaultKernelLanguage || 'python',
      source,
      notebookPath: panel.context.path
    };
    const editor = cell.editor;
    if (editor) {
      const range = editor.getSelection();
      const start = editor.getOffsetAt(range.start);
      const end = editor.getOffsetAt(range.end);
      if (end !== start) {
        context.selection = source.slice(Math.min(start, end), Math.max(start, end));
      }
    }
    if (model.type === 'code') {
      const code = model as ICodeCellModel;
      context.executionCount = code.executionCount;
      context.error = errorOutput(code);
    }
    return context;
  }

  /** Put `code` in a new code cell below the active one (and select it). */
  insertBelow(code: string): boolean {
    const panel = this._tracker?.currentWidget;
    if (!panel) {
      return false;
    }
    const notebook = panel.content;
    NotebookActions.insertBelow(notebook);
    const cell = notebook.activeCell;
    if (!cell) {
      return false;
    }
    cell.model.sharedModel.setSource(code);
    return true;
  }

  dispose(): void {
    Signal.clearData(this);
  }

  private _emit(): void {
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
}

function errorOutput(cell: ICodeCellModel): ICellError | null {
  const outputs = cell.outputs;
  for (let i = 0; i < outputs.length; i++) {
    const output = outputs.get(i);
    if (output.type !== 'error') {
      continue;
    }
    const json = output.toJSON() as { ename?: unknown; evalue?: unknown; traceback?: unknown };
    return {
      ename: typeof json.ename === 'string' ? json.ename : 'Error',
      evalue: typeof json.evalue === 'string' ? json.evalue : '',
      traceback: Array.isArray(json.traceback) ? json.traceback.map(String) : []
    };
  }
  return null;
}
