/**
 * "Open cell": open a notebook with the document manager's `docmanager:open`
 * command and select one of its cells by nbformat id.
 *
 * Only the command and the shape of the widget it returns are used (a
 * `NotebookPanel`: `context.ready`, `content.widgets[i].model.id`,
 * `activeCellIndex`, `scrollToItem`), so the extension needs no
 * `@jupyterlab/notebook` import and works the same in JupyterLab and Jupyter
 * Notebook 7. Notebook 7 opens another notebook in a new browser tab (its
 * document opener); the cell can only be selected on the page that shows it.
 */
import { shortCellId } from './panel/origin';

/** What is used of the app's command registry. */
export interface Commands {
  execute(id: string, args?: Record<string, string>): Promise<unknown>;
}

interface CellLike {
  readonly model: { readonly id: string };
}

interface NotebookLike {
  readonly widgets: readonly CellLike[];
  activeCellIndex: number;
  deselectAll?: () => void;
  scrollToItem?: (index: number, behavior?: string) => Promise<void>;
}

interface NotebookPanelLike {
  readonly content: NotebookLike;
  readonly isDisposed?: boolean;
  readonly context?: { readonly ready?: Promise<unknown> };
  readonly revealed?: Promise<unknown>;
}

function isNotebookPanel(widget: unknown): widget is NotebookPanelLike {
  const content = (widget as { content?: unknown } | null)?.content as Partial<NotebookLike> | undefined;
  return !!content && Array.isArray(content.widgets) && typeof content.activeCellIndex === 'number';
}

/**
 * Open `path` and select the cell whose id is `cellId` (none: just open it).
 *
 * @returns what to tell the user ("opened week1.ipynb at cell 3").
 * @throws Error when the notebook cannot be opened or no longer has that cell.
 */
export async function openCell(commands: Commands, path: string, cellId: string): Promise<string> {
  const widget = await commands.execute('docmanager:open', { path, factory: 'Notebook' });
  if (!widget) {
    throw new Error(`cannot open ${path}`);
  }
  if ((widget as { isDisposed?: boolean }).isDisposed) {
    return `opened ${path} in a new browser tab`; // Notebook 7: one notebook per page
  }
  if (!isNotebookPanel(widget)) {
    return `opened ${path}`;
  }
  await widget.context?.ready;
  await widget.revealed;
  if (!cellId) {
    return `opened ${path}`;
  }
  const notebook = widget.content;
  const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
  if (index < 0) {
    throw new Error(
      `${path} has no cell ${shortCellId(cellId)} any more (deleted, or the notebook was reloaded from an older copy)`
    );
  }
  notebook.deselectAll?.();
  notebook.activeCellIndex = index;
  await notebook.scrollToItem?.(index, 'center');
  return `opened ${path} at cell ${index + 1}`;
}
