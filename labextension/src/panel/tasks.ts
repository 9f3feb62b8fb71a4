/** Tasks section: the coordinator's recent tasks, their state, provider and cost; cancel. */
import type { Task } from '../types';
import { TERMINAL_STATES } from '../types';
import { sectionErrorText } from '../errors';
import { formatEth, toWei } from '../format';
import { button, h, setAttr, setText, syncList } from './dom';
import { post, type PanelContext, type Snapshot } from './model';

interface TaskItem extends HTMLElement {
  _title?: HTMLElement;
  _state?: HTMLElement;
  _detail?: HTMLElement;
  _cancel?: HTMLButtonElement;
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
    item._detail = h('div', { className: 'jp-gensyn-detail' });
    const cancel = button('Cancel', 'gensyn-task-cancel', () => void this.cancel(task.id, cancel));
    cancel.setAttribute('aria-label', `Cancel ${task.id}`);
    item._cancel = cancel;
    item.append(item._title, h('div', { className: 'jp-gensyn-row' }, item._state, cancel), item._detail);
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
  }

  async cancel(taskId: string, trigger: HTMLButtonElement | null = null): Promise<boolean> {
    return this.ctx.act(trigger, async () => {
      const answer = await this.ctx.request<{ task: Task }>(`tasks/${encodeURIComponent(taskId)}/cancel`, post());
      const cost = answer?.task ? taskCost(answer.task) : null;
      return `cancelled ${taskId}${cost && cost.startsWith('paid') ? `: ${cost}` : ''}`;
    });
  }
}
