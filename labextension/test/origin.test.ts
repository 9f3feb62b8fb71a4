/**
 * Where a task came from: the notebook and cell in the Tasks section (with
 * "Open cell") and in an approval's details (with the bundle size), and the
 * `openCell` helper that opens a notebook at a cell through `docmanager:open`.
 */
import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { openCell, type Commands } from '../src/opencell';
import { askedText } from '../src/panel/approvals';
import { baseName, originText, shortCellId } from '../src/panel/origin';
import { GensynPanel } from '../src/panel/panel';
import { allByTestId, approval, byTestId, devnetApi, task, type StubApi } from './helpers';

const UUID = '1f0e7aa2-93b2-4a2b-9c55-1d2b9d0b11aa';

let panels: GensynPanel[] = [];

async function mount(api: StubApi, openCellFn?: (path: string, cellId: string) => Promise<string>) {
  const panel = new GensynPanel({ request: api.request, refreshSeconds: 3600, openCell: openCellFn });
  panels.push(panel);
  Widget.attach(panel, document.body);
  await panel.refresh();
  return panel;
}

function item(panel: GensynPanel, taskId: string): HTMLElement {
  const el = panel.node.querySelector<HTMLElement>(`[data-testid="gensyn-task"][data-task-id="${taskId}"]`);
  if (!el) {
    throw new Error(`no task ${taskId}`);
  }
  return el;
}

function withOrigins(api: StubApi): StubApi {
  return api
    .on('GET tasks', [
      task('t-mine', 'running', {
        spec: { label: 'mnist', gpus: 1, notebook: '~/course/week1.ipynb', cell_id: UUID, bundle_bytes: 1234567 },
        notebook_path: 'course/week1.ipynb'
      }),
      task('t-theirs', 'queued', {
        spec: { label: '', gpus: 1, notebook: '/home/bob/secret.ipynb', cell_id: 'c9' },
        notebook_path: null
      }),
      task('t-plain', 'settled')
    ])
    .on('GET approvals', [
      approval('t-mine', {
        bundle_bytes: 1234567,
        bundle_size: '1.2 MB',
        notebook: '~/course/week1.ipynb',
        notebook_path: 'course/week1.ipynb',
        cell_id: UUID
      }),
      approval('t-old')
    ]);
}

beforeEach(() => {
  document.body.innerHTML = '';
});

afterEach(() => {
  for (const panel of panels) {
    if (panel.isAttached) {
      Widget.detach(panel);
    }
    panel.dispose();
  }
  panels = [];
});

describe('words', () => {
  it('names the notebook by its file and shortens UUID cell ids', () => {
    expect(baseName('course/week1.ipynb')).toBe('week1.ipynb');
    expect(baseName('C:\\\\work\\\\a.ipynb')).toBe('a.ipynb');
    expect(shortCellId(UUID)).toBe('1f0e7aa2…');
    expect(shortCellId('c1')).toBe('c1');
    expect(originText({ notebook: '~/x/a.ipynb', notebook_path: null, cell_id: 'c1' })).toBe('from a.ipynb · cell c1');
    expect(originText({ notebook: '', cell_id: '' })).toBe('');
  });

  it('an approval says the bundle size and where the cell is', () => {
    expect(
      askedText(approval('t', { bundle_size: '1.2 MB', notebook_path: 'course/week1.ipynb', cell_id: UUID }))
    ).toBe('bundle 1.2 MB · from week1.ipynb · cell 1f0e7aa2…');
    expect(askedText(approval('t'))).toBe(''); // an older server: nothing to add
  });
});

describe('the Tasks section', () => {
  it('shows each task’s notebook and cell, and "Open cell" only where it can open it', async () => {
    const opened: [string, string][] = [];
    const panel = await mount(withOrigins(devnetApi()), async (path, cellId) => {
      opened.push([path, cellId]);
      return `opened ${path} at cell 2`;
    });
    const mine = item(panel, 't-mine');
    expect(byTestId(mine, 'gensyn-task-origin').textContent).toBe('from week1.ipynb · cell 1f0e7aa2…');
    expect(byTestId(mine, 'gensyn-task-origin').getAttribute('title')).toBe(`course/week1.ipynb\ncell id ${UUID}`);
    const open = byTestId<HTMLButtonElement>(mine, 'gensyn-task-open');
    expect(open.tagName).toBe('BUTTON');
    expect(open.hidden).toBe(false);
    expect(open.textContent).toBe('Open cell');
    expect(open.getAttribute('aria-label')).toBe('Open the cell of t-mine (week1.ipynb)');

    const theirs = item(panel, 't-theirs');
    expect(byTestId(theirs, 'gensyn-task-origin').textContent).toBe('from secret.ipynb · cell c9');
    expect(byTestId<HTMLButtonElement>(theirs, 'gensyn-task-open').hidden).toBe(true);
    expect(byTestId(item(panel, 't-plain'), 'gensyn-task-origin').textContent).toBe('');
    expect(byTestId<HTMLButtonElement>(item(panel, 't-plain'), 'gensyn-task-open').hidden).toBe(true);

    open.click();
    await vi.waitFor(() => expect(panel.message.text).toBe('opened course/week1.ipynb at cell 2'));
    expect(opened).toEqual([['course/week1.ipynb', UUID]]);
    expect(panel.message.kind).toBe('success');
  });

  it('says why when the cell cannot be opened', async () => {
    const panel = await mount(withOrigins(devnetApi()), async () => {
      throw new Error('course/week1.ipynb has no cell 1f0e7aa2… any more');
    });
    byTestId<HTMLButtonElement>(item(panel, 't-mine'), 'gensyn-task-open').click();
    await vi.waitFor(() => expect(panel.message.kind).toBe('error'));
    expect(panel.message.text).toContain('has no cell');
  });

  it('has no "Open cell" without a way to open documents', async () => {
    const panel = await mount(withOrigins(devnetApi()));
    expect(allByTestId<HTMLButtonElement>(panel.node, 'gensyn-task-open').every(b => b.hidden)).toBe(true);
  });
});

describe('the Approvals section', () => {
  it('shows what the cell asked for: bundle size, notebook and cell', async () => {
    const panel = await mount(withOrigins(devnetApi()));
    const [mine, old] = allByTestId(panel.node, 'gensyn-approval');
    expect(byTestId(mine, 'gensyn-approval-details').textContent).toBe(
      'bundle 1.2 MB · from week1.ipynb · cell 1f0e7aa2…'
    );
    expect(byTestId(old, 'gensyn-approval-details').textContent).toBe('');
  });
});

// ----------------------------------------------------------------------------- openCell

interface FakeNotebook {
  widgets: { model: { id: string } }[];
  activeCellIndex: number;
  scrolledTo: number | null;
  deselected: boolean;
  deselectAll(): void;
  scrollToItem(index: number): Promise<void>;
}

function notebookPanel(ids: string[]): { content: FakeNotebook; context: { ready: Promise<void> }; revealed: Promise<void> } {
  const content: FakeNotebook = {
    widgets: ids.map(id => ({ model: { id } })),
    activeCellIndex: 0,
    scrolledTo: null,
    deselected: false,
    deselectAll() {
      this.deselected = true;
    },
    async scrollToItem(index: number) {
      this.scrolledTo = index;
    }
  };
  return { content, context: { ready: Promise.resolve() }, revealed: Promise.resolve() };
}

function commands(answer: unknown): Commands & { calls: [string, unknown][] } {
  const calls: [string, unknown][] = [];
  return {
    calls,
    execute: async (id: string, args?: Record<string, string>) => {
      calls.push([id, args]);
      return answer;
    }
  };
}

describe('openCell', () => {
  it('opens the notebook with the document manager and selects the cell by id', async () => {
    const widget = notebookPanel(['c0', 'c1', 'c2']);
    const registry = commands(widget);
    expect(await openCell(registry, 'course/week1.ipynb', 'c2')).toBe('opened course/week1.ipynb at cell 3');
    expect(registry.calls).toEqual([['docmanager:open', { path: 'course/week1.ipynb', factory: 'Notebook' }]]);
    expect(widget.content.activeCellIndex).toBe(2);
    expect(widget.content.scrolledTo).toBe(2);
    expect(widget.content.deselected).toBe(true);
  });

  it('fails with words when the cell is gone, and just opens without a cell id', async () => {
    const widget = notebookPanel(['c0']);
    await expect(openCell(commands(widget), 'a.ipynb', 'c7')).rejects.toThrow('a.ipynb has no cell c7 any more');
    expect(await openCell(commands(widget), 'a.ipynb', '')).toBe('opened a.ipynb');
  });

  it('says so when the notebook opened in a new browser tab (Notebook 7), or could not open', async () => {
    expect(await openCell(commands({ isDisposed: true }), 'b.ipynb', 'c1')).toBe('opened b.ipynb in a new browser tab');
    await expect(openCell(commands(undefined), 'b.ipynb', 'c1')).rejects.toThrow('cannot open b.ipynb');
  });
});
