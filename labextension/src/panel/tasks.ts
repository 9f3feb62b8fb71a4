/**
 * Tasks section: the coordinator's recent tasks, their state, provider, cost
 * and the notebook cell they came from; open that cell, cancel.
 */
import type { Task } from '../types';
import { TERMINAL_STATES } from '../types';
import { sectionErrorText } from '../errors';
import { formatEth, toWei } from '../format';
import { button, h, setAttr, setText, syncList } from './dom';
import { post, type PanelContext, type Snapshot } from './model';
import { baseName, originText, originTitle } from './origin';

interface TaskItem extends HTMLElement {
  _title?: HTMLElement;
  _state?: HTMLElement;
  _origin?: HTMLElement;
  _detail?: HTMLElement;
  _open?: HTMLButtonElement;
  _cancel?: HTMLButtonElement;
  /** The task as last rendered (what "Open cell" opens). */
  _task?: Task;
}

/** What a task cost or may cost: paid to the provider once settled, else the order's total. */
export function taskCost(task: Task): string | null {
  const payment = task.payment;
  if (!payment) {
    return null;
  }
  const paid = toWei(payment.provider_paid_wei ?? null);
  if (paid !== null && (paid > 0n || payment.outcome)) {
    const refunded = toWei(payment.refunded_wei ?? null);
    return `paid ${formatEth(paid)}${refunded !== null && refunded > 0n ? `, refunded ${formatEth(refunded)}` : ''}`;
  }
  const order = payment.order;
  if (order) {
    const max = toWei(order.max_price_wei);
    const fee = toWei(order.verifier_fee_wei);
    if (max !== null) {
      return `at most ${formatEth(max + (fee ?? 0n))}`;
    }
  }
  return null;
}

export class TasksSection {
  readonly node: HTMLElement;
  readonly list: HTMLElement;
  readonly empty: HTMLElement;
  private readonly items = new Map<string, TaskItem>();
  private tasks: Task[] = [];

  constructor(private readonly ctx: PanelContext) {
    this.list = h('ul', { className: 'jp-gensyn-list', 'aria-label': 'Tasks' });
    this.empty = h('div', { className: 'jp-gensyn-detail' });
    this.node = h(
      'section',
      { className: 'jp-gensyn-section', 'aria-label': 'Tasks' },
      h('h3', { className: 'jp-gensyn-section-title' }, 'Tasks'),
      h('div', { 'data-testid': 'gensyn-tasks' }, this.empty, this.list)
    );
  }

  update(snapshot: Snapshot): void {
    const tasks = snapshot.tasks;
    if (!tasks) {
      setText(this.empty, 'loading…');
      return;
    }
    if (!tasks.ok) {
      setText(this.empty, `tasks: ${sectionErrorText(tasks.error)}`);
    } else {
      this.tasks = tasks.value;
      setText(this.empty, tasks.value.length === 0 ? 'no tasks yet' : '');
    }
    syncList(
      this.list,
      this.tasks,
      t => t.id,
      t => this.createItem(t),
      (el, t) => this.updateItem(el, t),
      this.items
    );
  }

  private createItem(task: Task): TaskItem {
    const item: TaskItem = h('li', {
      className: 'jp-gensyn-item',
      'data-testid': 'gensyn-task',
      'data-task-id': task.id
    });
    item._title = h('div', { className: 'jp-gensyn-mono' });
    item._state = h('span', { className: 'jp-gensyn-state' });
    item._origin = h('div', { className: 'jp-gensyn-detail', 'data-testid': 'gensyn-task-origin' });
    item._detail = h('div', { className: 'jp-gensyn-detail' });
    const open = button('Open cell', 'gensyn-task-open', () => void this.open(item._task ?? task, open));
    item._open = open;
    const cancel = button('Cancel', 'gensyn-task-cancel', () => void this.cancel(task.id, cancel));
    cancel.setAttribute('aria-label', `Cancel ${task.id}`);
    item._cancel = cancel;
    item.append(
      item._title,
      h('div', { className: 'jp-gensyn-row' }, item._state, open, cancel),
      item._origin,
      item._detail
    );
    return item;
  }

  private updateItem(item: TaskItem, task: Task): void {
    setAttr(item, 'data-state', task.state);
    const label = task.spec?.label ? ` ${task.spec.label}` : '';
    setText(item._title!, `${task.id}${label}`);
    setText(item._state!, task.state);
    setAttr(item._state!, 'data-state', task.state);
    const details: string[] = [];
    details.push(`provider ${task.provider_name ?? task.provider_id ?? '—'}`);
    const cost = taskCost(task);
    if (cost) {
      details.push(cost);
    }
    if (task.error) {
      details.push(task.error);
    }
    setText(item._detail!, details.join(' · '));
    item._cancel!.hidden = TERMINAL_STATES.has(task.state);
    this.updateOrigin(item, task);
  }

  private updateOrigin(item: TaskItem, task: Task): void {
    item._task = task;
    const origin = { ...task.spec, notebook_path: task.notebook_path };
    setText(item._origin!, originText(origin));
    setAttr(item._origin!, 'title', originTitle(origin) || null);
    const path = task.notebook_path ?? null;
    const open = item._open!;
    open.hidden = !path || !this.ctx.openCell;
    setText(open, task.spec?.cell_id ? 'Open cell' : 'Open notebook');
    setAttr(
      open,
      'aria-label',
      path ? `Open ${task.spec?.cell_id ? 'the cell' : 'the notebook'} of ${task.id} (${baseName(path)})` : null
    );
    setAttr(open, 'title', path);
  }

  /** Open the notebook of `task` at its cell (the app's document manager does it). */
  async open(task: Task, trigger: HTMLButtonElement | null = null): Promise<boolean> {
    const path = task.notebook_path;
    const openCell = this.ctx.openCell;
    if (!path || !openCell) {
      this.ctx.message.show(`task ${task.id} names no notebook this server can open`, 'info');
      return false;
    }
    return this.ctx.act(trigger, () => openCell(path, task.spec?.cell_id ?? ''));
  }

  async cancel(taskId: string, trigger: HTMLButtonElement | null = null): Promise<boolean> {
    return this.ctx.act(trigger, async () => {
      const answer = await this.ctx.request<{ task: Task }>(`tasks/${encodeURIComponent(taskId)}/cancel`, post());
      const cost = answer?.task ? taskCost(answer.task) : null;
      return `cancelled ${taskId}${cost && cost.startsWith('paid') ? `: ${cost}` : ''}`;
    });
  }
}
