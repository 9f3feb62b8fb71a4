/**
 * Class section: a lab on JupyterHub with the gensyn class service.
 *
 * `GET /gensyn/api/class` (docs/panel.md, "A class on JupyterHub") says
 * whether this server belongs to a class. Outside one (`service: null`, or
 * a server without the route) the section stays hidden. A student sees
 * their own budget and spend; an instructor (a Hub admin, or one of
 * `c.GensynClass.instructors`) sees the class: every student's budget,
 * spend and tasks, with each task's verification.
 */
import { GensynApiError, sectionErrorText } from '../errors';
import { formatEth, shortHex, toWei } from '../format';
import { h, setAttr, setText, syncList } from './dom';
import type { Snapshot } from './model';

/** One task as the class view lists it (wei as JSON numbers, only formatted). */
export interface ClassTask {
  id: string;
  state: string;
  label?: string | null;
  provider: string | null;
  gpu_seconds: number;
  verify: string;
  /** `pending`, `verified`, `trusted`, `fraud`, `rejected_challenge` or `none`. */
  verification: string;
  max_wei: number | string;
  paid_wei: number | string;
}

/** One student's account, budget and spend. */
export interface ClassStudent {
  user: string;
  address: string | null;
  budget_wei: number | string;
  spent_wei: number | string;
  held_wei: number | string;
  left_wei: number | string;
  tasks: ClassTask[];
}

/** The class view of `<service>/api/class`. */
export interface ClassView {
  coordinator: string;
  default_budget_wei: number | string;
  per_task_wei: number | string;
  spent_wei: number | string;
  held_wei: number | string;
  students: ClassStudent[];
}

/** `GET /gensyn/api/class`. */
export interface ClassInfo {
  /** The class service's URL, or null when this server is not in a class. */
  service: string | null;
  user?: string;
  instructor?: boolean;
  me?: ClassStudent;
  class?: ClassView | null;
}

/** `0.000123 ETH of 0.1 ETH spent, 0.099877 ETH left` (and what escrow holds, if any). */
export function spendText(s: ClassStudent): string {
  const held = toWei(s.held_wei) ?? 0n;
  const parts = [
    `${formatEth(s.spent_wei)} of ${formatEth(s.budget_wei)} spent`,
    `${formatEth(s.left_wei)} left`
  ];
  if (held > 0n) {
    parts.push(`${formatEth(held)} held for unfinished tasks`);
  }
  return parts.join(', ');
}

/** `t-1a2b3c · settled · devnet-1 · spot: verified · paid 0.0001 ETH`. */
export function classTaskText(t: ClassTask): string {
  const parts = [t.id, t.state.replace(/_/g, ' ')];
  if (t.provider) {
    parts.push(t.provider);
  }
  parts.push(`${t.verify}: ${t.verification.replace(/_/g, ' ')}`);
  const paid = toWei(t.paid_wei) ?? 0n;
  parts.push(paid > 0n ? `paid ${formatEth(paid)}` : `at most ${formatEth(t.max_wei)}`);
  return parts.join(' · ');
}

/** How much of the budget is used (spent and held), 0 to 1. */
export function usedFraction(s: ClassStudent): number {
  const budget = toWei(s.budget_wei) ?? 0n;
  if (budget <= 0n) {
    return 1;
  }
  const used = (toWei(s.spent_wei) ?? 0n) + (toWei(s.held_wei) ?? 0n);
  const permille = Number((used * 1000n) / budget);
  return Math.min(Math.max(permille / 1000, 0), 1);
}

interface StudentItem extends HTMLElement {
  _head?: HTMLElement;
  _bar?: HTMLProgressElement;
  _tasks?: HTMLElement;
  _taskItems?: Map<string, HTMLElement>;
}

export class ClassSection {
  readonly node: HTMLElement;
  readonly title: HTMLElement;
  /** The user's own line (students and instructors alike). */
  readonly me: HTMLElement;
  readonly summary: HTMLElement;
  readonly list: HTMLElement;
  private readonly items = new Map<string, StudentItem>();

  constructor() {
    this.title = h('h3', { className: 'jp-gensyn-section-title' }, 'Class');
    this.me = h('div', { className: 'jp-gensyn-detail', 'data-testid': 'gensyn-class-me' });
    this.summary = h('div', { className: 'jp-gensyn-detail', 'data-testid': 'gensyn-class-summary' });
    this.list = h('ul', {
      className: 'jp-gensyn-list',
      'aria-label': 'Students',
      'data-testid': 'gensyn-class-students'
    });
    this.node = h(
      'section',
      { className: 'jp-gensyn-section', 'aria-label': 'Class', 'data-testid': 'gensyn-class' },
      this.title,
      this.me,
      this.summary,
      this.list
    );
    this.node.hidden = true;
  }

  update(snapshot: Snapshot): void {
    const result = snapshot.classInfo;
    if (!result) {
      return; // not read yet: keep what is shown
    }
    if (!result.ok) {
      // A server without the route (404) is not in a class; other errors are shown.
      const absent = result.error instanceof GensynApiError && result.error.status === 404;
      this.node.hidden = absent;
      setText(this.me, absent ? '' : `class: ${sectionErrorText(result.error)}`);
      return;
    }
    const info = result.value;
    this.node.hidden = !info.service;
    if (!info.service) {
      return;
    }
    const view = info.instructor ? (info.class ?? null) : null;
    setAttr(this.node, 'data-role', info.instructor ? 'instructor' : 'student');
    setText(this.title, view ? 'Class' : 'Class budget');
    const user = info.user ?? info.me?.user ?? '';
    // An instructor reads the class, not their own class account.
    setText(this.me, view ? `${user} · instructor` : info.me ? `${user}: ${spendText(info.me)}` : user);
    this.list.hidden = view === null;
    if (view === null) {
      setText(this.summary, '');
      for (const el of this.items.values()) {
        el.remove();
      }
      this.items.clear();
      return;
    }
    const tasks = view.students.reduce((n, s) => n + s.tasks.length, 0);
    setText(
      this.summary,
      `${view.students.length} students · ${tasks} tasks · ${formatEth(view.spent_wei)} spent` +
        ((toWei(view.held_wei) ?? 0n) > 0n ? ` · ${formatEth(view.held_wei)} held` : '')
    );
    syncList(
      this.list,
      view.students,
      s => s.user,
      s => this.createStudent(s),
      (el, s) => this.updateStudent(el, s),
      this.items
    );
  }

  private createStudent(s: ClassStudent): StudentItem {
    const el: StudentItem = h('li', {
      className: 'jp-gensyn-item',
      'data-testid': 'gensyn-class-student',
      'data-user': s.user
    });
    el._head = h('div', {});
    // A value from the start: a progress without one is indeterminate (animated).
    el._bar = h('progress', { max: '1', value: '0', 'aria-label': `${s.user}'s budget used` });
    el._tasks = h('ul', { className: 'jp-gensyn-list', 'aria-label': `${s.user}'s tasks` });
    el._taskItems = new Map();
    el.append(el._head, el._bar, el._tasks);
    return el;
  }

  private updateStudent(el: StudentItem, s: ClassStudent): void {
    const account = s.address ? shortHex(s.address) : 'no account yet';
    setText(el._head!, `${s.user} · ${account} · ${spendText(s)}`);
    const used = usedFraction(s);
    if (el._bar!.value !== used) {
      el._bar!.value = used;
    }
    setAttr(el, 'data-over', (toWei(s.left_wei) ?? 0n) <= 0n ? 'true' : null);
    syncList(
      el._tasks!,
      s.tasks,
      t => t.id,
      t =>
        h('li', {
          className: 'jp-gensyn-detail',
          'data-testid': 'gensyn-class-task',
          'data-task-id': t.id
        }),
      (item, t) => {
        setAttr(item, 'data-state', t.state);
        setAttr(item, 'data-verification', t.verification);
        setText(item, classTaskText(t));
      },
      el._taskItems!
    );
  }
}
