/**
 * Approvals section: the tasks of the account that wait for approval (each
 * with its summary, total and why the budget did not approve it), approve or
 * reject each, and the auto-approve budget form.
 */
import type { Approval, Budget, Task } from '../types';
import { sectionErrorText } from '../errors';
import { browserAccountOf } from '../wallet/account';
import { approveWithBrowser } from '../wallet/approve';
import { button, h, setAttr, setText, syncList } from './dom';
import { post, type PanelContext, type Snapshot } from './model';
import { originText, originTitle } from './origin';

interface ApprovalItem extends HTMLElement {
  _summary?: HTMLElement;
  _total?: HTMLElement;
  _reason?: HTMLElement;
  _asked?: HTMLElement;
}

export class ApprovalsSection {
  readonly node: HTMLElement;
  readonly list: HTMLElement;
  readonly empty: HTMLElement;
  readonly budgetEnabled: HTMLInputElement;
  readonly budgetTask: HTMLInputElement;
  readonly budgetDay: HTMLInputElement;
  readonly budgetSave: HTMLButtonElement;
  readonly budgetStatus: HTMLElement;
  private readonly items = new Map<string, ApprovalItem>();
  private approvals: Approval[] = [];
  /** True while the user edits the budget form: refreshes leave it alone. */
  private budgetDirty = false;

  constructor(private readonly ctx: PanelContext) {
    this.list = h('ul', { className: 'jp-gensyn-list', 'aria-label': 'Tasks awaiting approval' });
    this.empty = h('div', { className: 'jp-gensyn-detail' });
    const container = h('div', { 'data-testid': 'gensyn-approvals' }, this.empty, this.list);

    this.budgetEnabled = h('input', {
      type: 'checkbox',
      'data-testid': 'gensyn-budget-enabled',
      id: 'gensyn-budget-enabled'
    });
    this.budgetTask = h('input', {
      type: 'text',
      inputmode: 'decimal',
      'data-testid': 'gensyn-budget-task',
      id: 'gensyn-budget-task',
      className: 'jp-gensyn-input jp-gensyn-amount jp-mod-styled',
      placeholder: '0.05'
    });
    this.budgetDay = h('input', {
      type: 'text',
      inputmode: 'decimal',
      'data-testid': 'gensyn-budget-day',
      id: 'gensyn-budget-day',
      className: 'jp-gensyn-input jp-gensyn-amount jp-mod-styled',
      placeholder: '1'
    });
    for (const input of [this.budgetEnabled, this.budgetTask, this.budgetDay]) {
      input.addEventListener('input', () => {
        this.budgetDirty = true;
      });
      input.addEventListener('change', () => {
        this.budgetDirty = true;
      });
    }
    this.budgetSave = button('Save budget', 'gensyn-budget-save', () => void this.saveBudget());
    this.budgetStatus = h('div', { className: 'jp-gensyn-detail' });
    const form = h(
      'form',
      { className: 'jp-gensyn-budget', 'aria-label': 'Auto-approve budget' },
      h(
        'div',
        { className: 'jp-gensyn-row' },
        this.budgetEnabled,
        h('label', { for: 'gensyn-budget-enabled' }, 'Auto-approve within the budget')
      ),
      h(
        'div',
        { className: 'jp-gensyn-row' },
        h('label', { for: 'gensyn-budget-task', className: 'jp-gensyn-label' }, 'ETH per task'),
        this.budgetTask
      ),
      h(
        'div',
        { className: 'jp-gensyn-row' },
        h('label', { for: 'gensyn-budget-day', className: 'jp-gensyn-label' }, 'ETH per day'),
        this.budgetDay
      ),
      h('div', { className: 'jp-gensyn-row' }, this.budgetSave),
      this.budgetStatus
    );
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.saveBudget();
    });

    this.node = h(
      'section',
      { className: 'jp-gensyn-section', 'aria-label': 'Approvals' },
      h('h3', { className: 'jp-gensyn-section-title' }, 'Approvals'),
      container,
      h('h4', { className: 'jp-gensyn-subtitle' }, 'Budget'),
      form
    );
  }

  /** The approvals shown now, newest first. */
  get pending(): readonly Approval[] {
    return this.approvals;
  }

  update(snapshot: Snapshot): void {
    const approvals = snapshot.approvals;
    if (!approvals) {
      this.approvals = [];
      setText(
        this.empty,
        snapshot.wallet?.ok ? 'no account: create, import or unlock a key to see its approvals' : ''
      );
    } else if (!approvals.ok) {
      // Keep the last list: a failed poll should not hide a task waiting for a click.
      setText(this.empty, `approvals: ${sectionErrorText(approvals.error)}`);
    } else {
      this.approvals = approvals.value;
      setText(this.empty, approvals.value.length === 0 ? 'nothing awaits approval' : '');
    }
    syncList(
      this.list,
      this.approvals,
      a => a.task_id,
      a => this.createItem(a),
      (el, a) => this.updateItem(el, a),
      this.items
    );
    this.updateBudget(snapshot.budget?.ok ? snapshot.budget.value : null, snapshot);
  }

  private createItem(approval: Approval): ApprovalItem {
    const item: ApprovalItem = h('li', {
      className: 'jp-gensyn-item',
      'data-testid': 'gensyn-approval',
      'data-task-id': approval.task_id
    });
    item._summary = h('div', { className: 'jp-gensyn-summary' });
    item._total = h('div', { className: 'jp-gensyn-total' });
    item._reason = h('div', { className: 'jp-gensyn-detail' });
    item._asked = h('div', { className: 'jp-gensyn-detail', 'data-testid': 'gensyn-approval-details' });
    const approve = button('Approve', 'gensyn-approve', () => void this.approve(approval.task_id, approve));
    const reject = button('Reject', 'gensyn-reject', () => void this.reject(approval.task_id, reject));
    approve.classList.add('jp-mod-accept');
    reject.classList.add('jp-mod-warn');
    approve.setAttribute('aria-label', `Approve ${approval.task_id}`);
    reject.setAttribute('aria-label', `Reject ${approval.task_id}`);
    item.append(item._summary, item._total, item._asked, item._reason, h('div', { className: 'jp-gensyn-row' }, approve, reject));
    return item;
  }

  private updateItem(item: ApprovalItem, approval: Approval): void {
    setText(item._summary!, approval.summary);
    setText(item._total!, `total ${approval.total}`);
    setText(item._reason!, approval.auto_approve?.reason ?? '');
    setText(item._asked!, askedText(approval));
    setAttr(item._asked!, 'title', originTitle(approval) || null);
  }

  private updateBudget(budget: Budget | null, snapshot: Snapshot): void {
    if (snapshot.budget && !snapshot.budget.ok) {
      setText(this.budgetStatus, `budget: ${sectionErrorText(snapshot.budget.error)}`);
      return;
    }
    if (!budget) {
      return;
    }
    const active = document.activeElement;
    const editing = active === this.budgetTask || active === this.budgetDay || active === this.budgetEnabled;
    if (!this.budgetDirty && !editing) {
      this.budgetEnabled.checked = budget.enabled;
      this.budgetTask.value = budget.per_task_eth ?? '';
      this.budgetDay.value = budget.per_day_eth ?? '';
    }
    const parts = [budget.enabled ? 'auto-approve on' : 'auto-approve off'];
    if (budget.spent_today_eth) {
      parts.push(`spent today ${budget.spent_today_eth} ETH`);
    }
    if (budget.error) {
      parts.push(budget.error);
    }
    setText(this.budgetStatus, parts.join(' · '));
    setAttr(this.budgetStatus, 'data-enabled', String(budget.enabled));
  }

  async approve(taskId: string, trigger: HTMLButtonElement | null = null): Promise<boolean> {
    const approval = this.approvals.find(a => a.task_id === taskId);
    const browser = browserAccountOf(this.ctx);
    if (approval && browser.owns(approval.account)) {
      // the browser wallet's task: it signs and pays (../wallet/approve.ts)
      return this.ctx.act(trigger, () => approveWithBrowser(browser, this.ctx.request, taskId));
    }
    return this.ctx.act(trigger, async () => {
      await this.ctx.request<Task>(`approvals/${encodeURIComponent(taskId)}/approve`, post());
      return `approved ${taskId}${approval ? `: ${approval.total} in escrow` : ''}`;
    });
  }

  async reject(taskId: string, trigger: HTMLButtonElement | null = null): Promise<boolean> {
    return this.ctx.act(trigger, async () => {
      await this.ctx.request<Task>(`approvals/${encodeURIComponent(taskId)}/reject`, post());
      return `rejected ${taskId}: cancelled`;
    });
  }

  async saveBudget(): Promise<boolean> {
    const body: Record<string, unknown> = { enabled: this.budgetEnabled.checked };
    const perTask = this.budgetTask.value.trim();
    const perDay = this.budgetDay.value.trim();
    if (perTask) {
      body.per_task_eth = perTask;
    }
    if (perDay) {
      body.per_day_eth = perDay;
    }
    const ok = await this.ctx.act(this.budgetSave, async () => {
      const budget = await this.ctx.request<Budget>('budget', { method: 'PUT', body: JSON.stringify(body) });
      this.budgetDirty = false;
      return budget.enabled
        ? `budget saved: auto-approve up to ${budget.per_task_eth ?? '?'} ETH a task, ${budget.per_day_eth ?? '?'} ETH a day`
        : 'budget saved: auto-approve off';
    });
    return ok;
  }
}

/** What the cell asked for beyond the order: "bundle 1.2 MB · from week1.ipynb · cell 1f0e7aa2…". */
export function askedText(approval: Approval): string {
  const parts: string[] = [];
  if (approval.bundle_size) {
    parts.push(`bundle ${approval.bundle_size}`);
  }
  const origin = originText(approval);
  if (origin) {
    parts.push(origin);
  }
  return parts.join(' · ');
}
