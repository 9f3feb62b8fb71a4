import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { GensynApiError } from '../src/errors';
import type { ClassInfo, ClassStudent, ClassTask } from '../src/panel/classroom';
import { GensynPanel } from '../src/panel/panel';
import { allByTestId, byTestId, devnetApi, type StubApi } from './helpers';

const SERVICE = 'http://127.0.0.1:8000/services/gensyn';

let panels: GensynPanel[] = [];

async function mount(api: StubApi): Promise<GensynPanel> {
  const panel = new GensynPanel({ request: api.request, refreshSeconds: 3600, eventSource: null });
  panels.push(panel);
  Widget.attach(panel, document.body);
  await panel.refresh();
  return panel;
}

function text(el: Element): string {
  return (el.textContent ?? '').replace(/\s+/g, ' ').trim();
}

function classTask(id: string, overrides: Partial<ClassTask> = {}): ClassTask {
  return {
    id,
    state: 'settled',
    label: null,
    provider: 'devnet-1',
    gpu_seconds: 0.2,
    verify: 'spot',
    verification: 'verified',
    max_wei: 120000000000000,
    paid_wei: 196942000000,
    ...overrides
  };
}

function student(user: string, overrides: Partial<ClassStudent> = {}): ClassStudent {
  return {
    user,
    address: '0x1aCBd873624bC841ab3Cca34336492408077e755',
    budget_wei: 100000000000000000,
    spent_wei: 196942000000,
    held_wei: 0,
    left_wei: 99999803058000000,
    tasks: [],
    ...overrides
  };
}

const alice = student('alice', { tasks: [classTask('t-alice1')] });
const bob = student('bob', {
  address: '0x2b6ddC472f38aa3D01F4521820cDec65F4258155',
  budget_wei: 500000000000000,
  spent_wei: 206114000000,
  left_wei: 499793886000000,
  tasks: [
    classTask('t-bob2', { state: 'cancelled', provider: null, verify: 'none', verification: 'none', paid_wei: 0, max_wei: 3600000000000000 }),
    classTask('t-bob1', { provider: 'devnet-2', verify: 'none', verification: 'trusted', paid_wei: 206114000000 })
  ]
});

function instructorInfo(): ClassInfo {
  return {
    service: SERVICE,
    user: 'teacher',
    instructor: true,
    me: student('teacher', { address: null, spent_wei: 0, left_wei: 100000000000000000 }),
    class: {
      coordinator: 'http://127.0.0.1:8765',
      default_budget_wei: 100000000000000000,
      per_task_wei: 0,
      spent_wei: 403056000000,
      held_wei: 0,
      students: [alice, bob]
    }
  };
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

describe('Class section', () => {
  it('stays hidden outside a JupyterHub class, and on a server without the route', async () => {
    const outside = await mount(devnetApi().on('GET class', { service: null }));
    expect(byTestId(outside.node, 'gensyn-class').hidden).toBe(true);
    const old = await mount(devnetApi()); // the stub answers 404 for GET class
    expect(byTestId(old.node, 'gensyn-class').hidden).toBe(true);
  });

  it("shows an instructor every student's budget, spend and tasks with their verification", async () => {
    const api = devnetApi().on('GET class', instructorInfo());
    const panel = await mount(api);
    const section = byTestId(panel.node, 'gensyn-class');
    expect(section.hidden).toBe(false);
    expect(section.dataset.role).toBe('instructor');
    expect(text(section.querySelector('h3')!)).toBe('Class');
    expect(text(byTestId(section, 'gensyn-class-me'))).toBe('teacher · instructor');
    expect(text(byTestId(section, 'gensyn-class-summary'))).toBe('2 students · 3 tasks · <0.000001 ETH spent');
    const students = allByTestId(section, 'gensyn-class-student');
    expect(students.map(s => s.dataset.user)).toEqual(['alice', 'bob']);
    expect(text(students[1])).toContain('bob · 0x2b6d…8155 · <0.000001 ETH of 0.0005 ETH spent, 0.000499 ETH left');
    const tasks = allByTestId(students[1], 'gensyn-class-task');
    expect(tasks.map(t => [t.dataset.taskId, t.dataset.verification])).toEqual([
      ['t-bob2', 'none'],
      ['t-bob1', 'trusted']
    ]);
    expect(text(tasks[0])).toBe('t-bob2 · cancelled · none: none · at most 0.0036 ETH');
    expect(text(allByTestId(students[0], 'gensyn-class-task')[0])).toBe(
      't-alice1 · settled · devnet-1 · spot: verified · paid <0.000001 ETH'
    );
    const bar = students[0].querySelector('progress')!;
    expect(bar.getAttribute('value')).not.toBeNull(); // determinate from the start
    expect(bar.value).toBeCloseTo(0, 3);
  });

  it('updates students in place and shows what escrow holds', async () => {
    const info = instructorInfo();
    const api = devnetApi().on('GET class', () => info);
    const panel = await mount(api);
    const before = allByTestId(panel.node, 'gensyn-class-student')[0];
    info.class!.students[0] = student('alice', {
      held_wei: 50000000000000000,
      spent_wei: 50000000000000000,
      left_wei: 0,
      tasks: [classTask('t-alice2', { state: 'running', verification: 'pending', paid_wei: 0 })]
    });
    info.class!.held_wei = 50000000000000000;
    await panel.refresh();
    const after = allByTestId(panel.node, 'gensyn-class-student')[0];
    expect(after).toBe(before);
    expect(after.dataset.over).toBe('true');
    expect(text(after)).toContain('0.05 ETH of 0.1 ETH spent, 0 ETH left, 0.05 ETH held for unfinished tasks');
    expect(after.querySelector('progress')!.value).toBe(1);
    expect(allByTestId(after, 'gensyn-class-task').map(t => t.dataset.verification)).toEqual(['pending']);
    expect(text(byTestId(panel.node, 'gensyn-class-summary'))).toContain('· 0.05 ETH held');
  });

  it('shows a student only their own budget, not the class', async () => {
    const me = student('alice', { tasks: [classTask('t-alice1')] });
    const panel = await mount(
      devnetApi().on('GET class', { service: SERVICE, user: 'alice', instructor: false, me, class: null })
    );
    const section = byTestId(panel.node, 'gensyn-class');
    expect(section.hidden).toBe(false);
    expect(section.dataset.role).toBe('student');
    expect(text(section.querySelector('h3')!)).toBe('Class budget');
    expect(text(byTestId(section, 'gensyn-class-me'))).toBe(
      'alice: <0.000001 ETH of 0.1 ETH spent, 0.099999 ETH left'
    );
    expect(allByTestId(section, 'gensyn-class-student')).toEqual([]);
    expect(byTestId(section, 'gensyn-class-students').hidden).toBe(true);
  });

  it("says why the class cannot be read (the class service's own words)", async () => {
    const denied = new GensynApiError(403, 'this token may not use the class service: it needs access:services!service=gensyn');
    const panel = await mount(
      devnetApi().on('GET class', () => {
        throw denied;
      })
    );
    const section = byTestId(panel.node, 'gensyn-class');
    expect(section.hidden).toBe(false);
    expect(text(byTestId(section, 'gensyn-class-me'))).toBe(`class: ${denied.detail}`);
  });
});
