import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { GensynApiError } from '../src/errors';
import { GensynPanel, PANEL_ID } from '../src/panel/panel';
import {
  ACCOUNT,
  OTHER,
  allByTestId,
  approval,
  byTestId,
  devnetApi,
  health,
  task,
  wallet,
  type StubApi
} from './helpers';

let panels: GensynPanel[] = [];

/** A panel on a stub, attached to the document, after its first refresh. */
async function mount(api: StubApi, refreshSeconds = 3600): Promise<GensynPanel> {
  const panel = new GensynPanel({ request: api.request, refreshSeconds });
  panels.push(panel);
  Widget.attach(panel, document.body);
  await panel.refresh();
  return panel;
}

function text(el: Element): string {
  return (el.textContent ?? '').replace(/\s+/g, ' ').trim();
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
  vi.useRealTimers();
});

describe('rendering', () => {
  it('has the id, the title and every section with its data-testid', async () => {
    const panel = await mount(devnetApi());
    expect(panel.id).toBe(PANEL_ID);
    expect(panel.node.id).toBe('gensyn-panel');
    expect(panel.title.caption).toBe('Gensyn');
    for (const id of [
      'gensyn-network',
      'gensyn-wallet-address',
      'gensyn-wallet-balance',
      'gensyn-import-key',
      'gensyn-passphrase',
      'gensyn-address-select',
      'gensyn-create',
      'gensyn-import',
      'gensyn-unlock',
      'gensyn-lock',
      'gensyn-faucet',
      'gensyn-approvals',
      'gensyn-budget-enabled',
      'gensyn-budget-task',
      'gensyn-budget-day',
      'gensyn-budget-save',
      'gensyn-tasks',
      'gensyn-providers',
      'gensyn-panel-message'
    ]) {
      expect(byTestId(panel.node, id), id).toBeTruthy();
    }
    // Secrets are password inputs; every action is a real, labelled <button>.
    expect(byTestId<HTMLInputElement>(panel.node, 'gensyn-import-key').type).toBe('password');
    expect(byTestId<HTMLInputElement>(panel.node, 'gensyn-passphrase').type).toBe('password');
    expect(byTestId(panel.node, 'gensyn-address-select').tagName).toBe('SELECT');
    for (const b of Array.from(panel.node.querySelectorAll('[data-testid]')).filter(e =>
      /gensyn-(create|import$|unlock|lock|faucet|approve|reject|budget-save|task-cancel)/.test(
        e.getAttribute('data-testid') ?? ''
      )
    )) {
      expect(b.tagName).toBe('BUTTON');
      expect(text(b).length).toBeGreaterThan(0);
    }
  });

  it('shows the network, chain id and coordinator health', async () => {
    const panel = await mount(devnetApi());
    const network = text(byTestId(panel.node, 'gensyn-network'));
    expect(network).toContain('http://127.0.0.1:8765');
    expect(network).toContain('31337');
    expect(network).toContain('coordinator ok');
  });

  it('shows the error of the health route when there is no network', async () => {
    const api = devnetApi().on(
      'GET health',
      health({ network: null, source: null, coordinator: null, error: 'no gensyn network configured and no devnet running' })
    );
    const panel = await mount(api);
    expect(text(byTestId(panel.node, 'gensyn-network'))).toContain('no gensyn network configured');
    expect(api.calls.some(c => c.path === 'chain')).toBe(false);
    expect(byTestId(panel.node, 'gensyn-faucet').hidden).toBe(true);
  });

  it('shows the account in use, its balance as ETH and the keystore addresses', async () => {
    const panel = await mount(devnetApi());
    expect(text(byTestId(panel.node, 'gensyn-wallet-address'))).toBe(ACCOUNT);
    expect(text(byTestId(panel.node, 'gensyn-wallet-balance'))).toBe('10 ETH');
    const select = byTestId<HTMLSelectElement>(panel.node, 'gensyn-address-select');
    expect(Array.from(select.options).map(o => o.value)).toEqual([ACCOUNT, OTHER]);
    expect(select.value).toBe(ACCOUNT);
    expect(byTestId(panel.node, 'gensyn-faucet').hidden).toBe(false);
    expect(text(byTestId(panel.node, 'gensyn-faucet'))).toBe('Get test funds');
  });

  it('says "no account" when nothing is unlocked, and hides the faucet on a free network', async () => {
    const api = devnetApi()
      .on('GET wallet', wallet({ keystore: [], unlocked: [], account: null, balance_wei: null, credits_wei: null, session: false }))
      .on('GET chain', () => {
        throw new GensynApiError(404, 'no chain on this network');
      });
    const panel = await mount(api);
    expect(text(byTestId(panel.node, 'gensyn-wallet-address'))).toBe('no account');
    expect(byTestId(panel.node, 'gensyn-faucet').hidden).toBe(true);
    expect(text(byTestId(panel.node, 'gensyn-network'))).toContain('free network');
    expect(api.calls.some(c => c.path.startsWith('approvals'))).toBe(false);
  });

  it('lists approvals with summary, total and the budget reason', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    expect(api.calls.find(c => c.path.startsWith('approvals'))?.path).toBe(
      `approvals?account=${encodeURIComponent(ACCOUNT)}`
    );
    const items = allByTestId(byTestId(panel.node, 'gensyn-approvals'), 'gensyn-approval');
    expect(items.map(i => i.dataset.taskId)).toEqual(['t-new', 't-old']);
    const first = text(items[0]);
    expect(first).toContain('task t-new: at most 0.0036 ETH');
    expect(first).toContain('0.0036 ETH');
    expect(first).toContain('auto-approve is off');
    expect(byTestId(items[1], 'gensyn-approve').tagName).toBe('BUTTON');
    expect(byTestId(items[1], 'gensyn-reject').tagName).toBe('BUTTON');
  });

  it('lists tasks with state, provider and cost, and a cancel button only while not terminal', async () => {
    const panel = await mount(devnetApi());
    const items = allByTestId(byTestId(panel.node, 'gensyn-tasks'), 'gensyn-task');
    expect(items.map(i => [i.dataset.taskId, i.dataset.state])).toEqual([
      ['t-new', 'awaiting_approval'],
      ['t-run', 'running'],
      ['t-done', 'settled']
    ]);
    expect(text(items[1])).toContain('gpu-box-1');
    expect(text(items[1])).toContain('at most 0.0036 ETH');
    expect(text(items[2])).toContain('paid 0.0012 ETH');
    expect(text(items[2])).toContain('refunded 0.0024 ETH');
    expect(byTestId(items[1], 'gensyn-task-cancel').hidden).toBe(false);
    expect(byTestId(items[2], 'gensyn-task-cancel').hidden).toBe(true);
  });

  it('lists providers with name, device, state and address', async () => {
    const panel = await mount(devnetApi());
    const items = allByTestId(byTestId(panel.node, 'gensyn-providers'), 'gensyn-provider');
    expect(items).toHaveLength(1);
    const line = text(items[0]);
    expect(line).toContain('gpu-box-p-1');
    expect(line).toContain('cuda: 2x H100');
    expect(line).toContain('idle');
    expect(line).toContain('0x22d491Bde2303f2f43325b2108D26f1eAbA1e32b');
  });

  it('fills the budget form from the server and leaves it alone while edited', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    const perTask = byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-task');
    expect(perTask.value).toBe('0.05');
    expect(byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-day').value).toBe('1');
    expect(byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-enabled').checked).toBe(false);
    perTask.value = '0.2';
    perTask.dispatchEvent(new Event('input'));
    await panel.refresh();
    expect(perTask.value).toBe('0.2');
  });

  it('updates items in place between refreshes (focus survives), and removes gone ones', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    const approve = byTestId<HTMLButtonElement>(
      panel.node.querySelector('[data-task-id="t-old"]')!,
      'gensyn-approve'
    );
    approve.focus();
    api.on('GET tasks', [task('t-run', 'verified', { provider_name: 'gpu-box-1' })]);
    await panel.refresh();
    expect(document.activeElement).toBe(approve);
    const tasks = allByTestId(panel.node, 'gensyn-task');
    expect(tasks.map(t => t.dataset.state)).toEqual(['verified']);
  });
});

describe('actions', () => {
  it('approve posts to the task and says what went into escrow', async () => {
    const api = devnetApi().on('POST approvals/t-new/approve', task('t-new', 'queued'));
    const panel = await mount(api);
    const item = panel.node.querySelector<HTMLElement>('[data-testid="gensyn-approval"][data-task-id="t-new"]')!;
    api.on('GET approvals', [approval('t-old')]);
    byTestId<HTMLButtonElement>(item, 'gensyn-approve').click();
    await vi.waitFor(() => expect(panel.message.text).toBe('approved t-new: 0.0036 ETH in escrow'));
    expect(api.writes()).toEqual([{ method: 'POST', path: 'approvals/t-new/approve', body: {} }]);
    expect(panel.message.kind).toBe('success');
    await vi.waitFor(() => expect(panel.node.querySelector('[data-task-id="t-new"][data-testid="gensyn-approval"]')).toBeNull());
  });

  it('reject posts to the task', async () => {
    const api = devnetApi().on('POST approvals/t-old/reject', task('t-old', 'cancelled'));
    const panel = await mount(api);
    const item = panel.node.querySelector<HTMLElement>('[data-testid="gensyn-approval"][data-task-id="t-old"]')!;
    byTestId<HTMLButtonElement>(item, 'gensyn-reject').click();
    await vi.waitFor(() => expect(panel.message.text).toBe('rejected t-old: cancelled'));
    expect(api.writes()).toEqual([{ method: 'POST', path: 'approvals/t-old/reject', body: {} }]);
  });

  it('shows an approval refused for want of funds on the message line', async () => {
    const detail = `${ACCOUNT} holds 0 ETH (0 wei); this order needs 0.0036 ETH (3600000000000000 wei) in escrow plus gas: fund the account (on a devnet: POST /gensyn/api/faucet)`;
    const api = devnetApi().on('POST approvals/t-new/approve', () => {
      throw new GensynApiError(402, detail);
    });
    const panel = await mount(api);
    const ok = await panel.approvals.approve('t-new');
    expect(ok).toBe(false);
    const message = byTestId(panel.node, 'gensyn-panel-message');
    expect(text(message)).toBe(detail);
    expect(message.dataset.kind).toBe('error');
  });

  it('approve-next approves the oldest waiting task', async () => {
    const api = devnetApi().on('POST approvals/t-old/approve', task('t-old', 'queued'));
    const panel = await mount(api);
    expect(await panel.approveNext()).toBe(true);
    expect(api.writes().map(c => c.path)).toEqual(['approvals/t-old/approve']);
    expect(panel.message.text).toBe('approved t-old: 0.5 ETH in escrow');
  });

  it('approve-next says so when nothing waits', async () => {
    const api = devnetApi().on('GET approvals', []);
    const panel = await mount(api);
    expect(await panel.approveNext()).toBe(false);
    expect(api.writes()).toEqual([]);
    expect(panel.message.text).toBe('nothing awaits approval');
  });

  it("a cell's request shows its approval with the Approve button focused", async () => {
    const panel = await mount(devnetApi());
    expect(await panel.showApproval('t-old')).toBe(true);
    const item = panel.node.querySelector('[data-testid="gensyn-approval"][data-task-id="t-old"]');
    expect(document.activeElement).toBe(item?.querySelector('[data-testid="gensyn-approve"]'));
    expect(await panel.showApproval('t-gone')).toBe(false);
    expect(panel.message.text).toBe('task t-gone is not waiting for approval');
  });

  it('unlock sends the selected address and passphrase, then clears the input', async () => {
    const api = devnetApi().on('POST wallet/unlock', wallet({ unlocked: [ACCOUNT, OTHER], account: OTHER }));
    const panel = await mount(api);
    const select = byTestId<HTMLSelectElement>(panel.node, 'gensyn-address-select');
    select.value = OTHER;
    select.dispatchEvent(new Event('change'));
    const passphrase = byTestId<HTMLInputElement>(panel.node, 'gensyn-passphrase');
    passphrase.value = 'correct horse battery';
    byTestId<HTMLButtonElement>(panel.node, 'gensyn-unlock').click();
    expect(passphrase.value).toBe('');
    await vi.waitFor(() => expect(panel.message.text).toBe(`unlocked ${OTHER}`));
    expect(api.writes()).toEqual([
      { method: 'POST', path: 'wallet/unlock', body: { address: OTHER, passphrase: 'correct horse battery' } }
    ]);
    expect(select.value).toBe(OTHER);
  });

  it('a wrong passphrase shows the server error and leaves no passphrase behind', async () => {
    const api = devnetApi().on('POST wallet/unlock', () => {
      throw new GensynApiError(403, `wrong passphrase for ${ACCOUNT}`, 'passphrase');
    });
    const log = vi.spyOn(console, 'log');
    const warn = vi.spyOn(console, 'warn');
    const error = vi.spyOn(console, 'error');
    const panel = await mount(api);
    const passphrase = byTestId<HTMLInputElement>(panel.node, 'gensyn-passphrase');
    passphrase.value = 'not the passphrase';
    await panel.wallet.unlock();
    expect(passphrase.value).toBe('');
    expect(text(byTestId(panel.node, 'gensyn-panel-message'))).toBe(`wrong passphrase for ${ACCOUNT}`);
    expect(panel.message.kind).toBe('error');
    expect(panel.node.outerHTML).not.toContain('not the passphrase');
    for (const spy of [log, warn, error]) {
      expect(JSON.stringify(spy.mock.calls)).not.toContain('not the passphrase');
    }
  });

  it('unlock without a passphrase asks for one and sends nothing', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    await panel.wallet.unlock();
    expect(api.writes()).toEqual([]);
    expect(panel.message.text).toBe(`enter the passphrase of ${ACCOUNT}`);
  });

  it('import sends the key and passphrase, unlocks the new address and clears both inputs', async () => {
    const key = '0x' + '4f'.repeat(32);
    const api = devnetApi()
      .on('POST wallet/import', { address: OTHER })
      .on('POST wallet/unlock', wallet({ account: OTHER }));
    const panel = await mount(api);
    const keyInput = byTestId<HTMLInputElement>(panel.node, 'gensyn-import-key');
    const passphrase = byTestId<HTMLInputElement>(panel.node, 'gensyn-passphrase');
    keyInput.value = key;
    passphrase.value = 'a good passphrase';
    byTestId<HTMLButtonElement>(panel.node, 'gensyn-import').click();
    expect(keyInput.value).toBe('');
    expect(passphrase.value).toBe('');
    await vi.waitFor(() => expect(panel.message.text).toBe(`imported and unlocked ${OTHER}`));
    expect(api.writes()).toEqual([
      { method: 'POST', path: 'wallet/import', body: { private_key: key, passphrase: 'a good passphrase' } },
      { method: 'POST', path: 'wallet/unlock', body: { address: OTHER, passphrase: 'a good passphrase' } }
    ]);
    expect(panel.node.outerHTML).not.toContain(key);
  });

  it('create posts the passphrase and unlocks the new key', async () => {
    const api = devnetApi()
      .on('POST wallet/create', { address: OTHER })
      .on('POST wallet/unlock', wallet({ account: OTHER }));
    const panel = await mount(api);
    byTestId<HTMLInputElement>(panel.node, 'gensyn-passphrase').value = 'another passphrase';
    await panel.wallet.create();
    expect(api.writes()).toEqual([
      { method: 'POST', path: 'wallet/create', body: { passphrase: 'another passphrase' } },
      { method: 'POST', path: 'wallet/unlock', body: { address: OTHER, passphrase: 'another passphrase' } }
    ]);
    expect(panel.message.text).toBe(`created and unlocked ${OTHER}`);
  });

  it('a short passphrase on create shows the 422 detail', async () => {
    const api = devnetApi().on('POST wallet/create', () => {
      throw new GensynApiError(422, 'the passphrase must have at least 8 characters', 'passphrase');
    });
    const panel = await mount(api);
    byTestId<HTMLInputElement>(panel.node, 'gensyn-passphrase').value = 'short';
    await panel.wallet.create();
    expect(panel.message.text).toBe('the passphrase must have at least 8 characters');
    expect(api.writes().map(c => c.path)).toEqual(['wallet/create']);
  });

  it('lock posts the selected address', async () => {
    const api = devnetApi().on('POST wallet/lock', wallet({ unlocked: [], account: null }));
    const panel = await mount(api);
    byTestId<HTMLButtonElement>(panel.node, 'gensyn-lock').click();
    await vi.waitFor(() => expect(panel.message.text).toBe(`locked ${ACCOUNT}`));
    expect(api.writes()).toEqual([{ method: 'POST', path: 'wallet/lock', body: { address: ACCOUNT } }]);
  });

  it('the faucet funds the account in use', async () => {
    const api = devnetApi().on('POST faucet', { address: ACCOUNT, wei: 10000000000000000000, tx: '0xabc' });
    const panel = await mount(api);
    await panel.wallet.faucet();
    expect(api.writes()).toEqual([{ method: 'POST', path: 'faucet', body: { address: ACCOUNT } }]);
    expect(panel.message.text).toBe(`faucet sent 10 ETH to ${ACCOUNT}`);
  });

  it('saving the budget PUTs the form', async () => {
    const api = devnetApi().on('PUT budget', (call: { body: unknown }) => ({
      enabled: true,
      per_task_eth: '0.01',
      per_day_eth: '0.5',
      error: null,
      ...(call.body as object)
    }));
    const panel = await mount(api);
    byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-enabled').checked = true;
    byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-task').value = '0.01';
    byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-day').value = ' 0.5 ';
    byTestId<HTMLButtonElement>(panel.node, 'gensyn-budget-save').click();
    await vi.waitFor(() =>
      expect(panel.message.text).toBe('budget saved: auto-approve up to 0.01 ETH a task, 0.5 ETH a day')
    );
    expect(api.writes()).toEqual([
      { method: 'PUT', path: 'budget', body: { enabled: true, per_task_eth: '0.01', per_day_eth: '0.5' } }
    ]);
  });

  it('a bad budget amount shows the 422 detail', async () => {
    const api = devnetApi().on('PUT budget', () => {
      throw new GensynApiError(422, 'per_task_eth: not an amount of ETH', 'per_task_eth');
    });
    const panel = await mount(api);
    byTestId<HTMLInputElement>(panel.node, 'gensyn-budget-task').value = 'lots';
    expect(await panel.approvals.saveBudget()).toBe(false);
    expect(panel.message.text).toBe('per_task_eth: not an amount of ETH');
  });

  it('cancel posts to the task', async () => {
    const api = devnetApi().on('POST tasks/t-run/cancel', { task: task('t-run', 'cancelled') });
    const panel = await mount(api);
    const item = panel.node.querySelector<HTMLElement>('[data-testid="gensyn-task"][data-task-id="t-run"]')!;
    byTestId<HTMLButtonElement>(item, 'gensyn-task-cancel').click();
    await vi.waitFor(() => expect(panel.message.text).toBe('cancelled t-run'));
    expect(api.writes()).toEqual([{ method: 'POST', path: 'tasks/t-run/cancel', body: {} }]);
  });

  it('a failed read shows in its section without blanking the others', async () => {
    const api = devnetApi().on('GET tasks', () => {
      throw new GensynApiError(502, 'cannot reach the coordinator at http://127.0.0.1:8765: connection refused');
    });
    const panel = await mount(api);
    expect(text(byTestId(panel.node, 'gensyn-tasks'))).toContain('cannot reach the coordinator');
    expect(allByTestId(panel.node, 'gensyn-provider')).toHaveLength(1);
  });
});

describe('no network', () => {
  it('says why once, in the Network section, and points there from the others', async () => {
    const noNetwork = 'no gensyn network configured and no devnet running; run %gensyn devnet up or set GENSYN_NETWORK';
    const api = devnetApi()
      .on('GET health', health({ network: null, source: null, coordinator: null, error: noNetwork }))
      .on('GET wallet', wallet({ network: null, balance_wei: null, credits_wei: null, session: false, error: noNetwork }));
    for (const route of ['GET tasks', 'GET providers', 'GET approvals']) {
      api.on(route, () => {
        throw new GensynApiError(503, noNetwork);
      });
    }
    const panel = await mount(api);
    expect(text(byTestId(panel.node, 'gensyn-network'))).toContain(noNetwork);
    for (const id of ['gensyn-tasks', 'gensyn-providers', 'gensyn-approvals']) {
      expect(text(byTestId(panel.node, id))).toContain('no network (see Network above)');
    }
    expect(text(panel.wallet.node)).not.toContain(noNetwork);
  });
});

describe('polling', () => {
  it('refreshes every refreshSeconds while visible and stops when hidden', async () => {
    vi.useFakeTimers();
    const api = devnetApi();
    const panel = new GensynPanel({ request: api.request, refreshSeconds: 1 });
    panels.push(panel);
    Widget.attach(panel, document.body);
    expect(panel.polling).toBe(true);
    const healthCalls = () => api.calls.filter(c => c.path === 'health').length;
    await vi.advanceTimersByTimeAsync(0);
    expect(healthCalls()).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(healthCalls()).toBe(2);
    await vi.advanceTimersByTimeAsync(2000);
    expect(healthCalls()).toBe(4);
    panel.hide();
    expect(panel.polling).toBe(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(healthCalls()).toBe(4);
    panel.show();
    expect(panel.polling).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(healthCalls()).toBe(5);
    Widget.detach(panel);
    expect(panel.polling).toBe(false);
  });

  it('applies a new refreshSeconds', async () => {
    vi.useFakeTimers();
    const api = devnetApi();
    const panel = new GensynPanel({ request: api.request, refreshSeconds: 1 });
    panels.push(panel);
    Widget.attach(panel, document.body);
    await vi.advanceTimersByTimeAsync(0);
    panel.refreshSeconds = 5;
    const before = api.calls.filter(c => c.path === 'health').length;
    await vi.advanceTimersByTimeAsync(4000);
    expect(api.calls.filter(c => c.path === 'health').length).toBe(before);
    await vi.advanceTimersByTimeAsync(1000);
    expect(api.calls.filter(c => c.path === 'health').length).toBe(before + 1);
  });
});
