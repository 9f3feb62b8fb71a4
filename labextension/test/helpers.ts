/** Fixtures and a stubbed `requestAPI` for the panel's unit tests. */
import { GensynApiError, type RequestAPI } from '../src/errors';
import type { Approval, Budget, ChainInfo, Health, Provider, Task, WalletState } from '../src/types';

export const ACCOUNT = '0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1';
export const OTHER = '0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0';

export interface Call {
  method: string;
  path: string;
  body: unknown;
}

type Handler = (call: Call) => unknown;

/**
 * A `requestAPI` stub: routes are `"METHOD path"` (path without its query
 * string) to a value or a handler; a handler may throw a GensynApiError.
 * Unknown routes answer 404 like the server extension.
 */
export class StubApi {
  readonly calls: Call[] = [];
  readonly routes = new Map<string, unknown | Handler>();

  constructor(routes: Record<string, unknown> = {}) {
    for (const [key, value] of Object.entries(routes)) {
      this.routes.set(key, value);
    }
  }

  on(route: string, value: unknown): this {
    this.routes.set(route, value);
    return this;
  }

  readonly request: RequestAPI = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const method = (init.method ?? 'GET').toUpperCase();
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : undefined;
    const call = { method, path, body };
    this.calls.push(call);
    const route = `${method} ${path.split('?')[0]}`;
    if (!this.routes.has(route)) {
      throw new GensynApiError(404, `no route ${route}`);
    }
    const value = this.routes.get(route);
    const answer = typeof value === 'function' ? (value as Handler)(call) : value;
    return structuredClone(answer) as T;
  };

  /** The calls other than the periodic GETs. */
  writes(): Call[] {
    return this.calls.filter(c => c.method !== 'GET');
  }
}

export function health(overrides: Partial<Health> = {}): Health {
  return {
    network: 'http://127.0.0.1:8765',
    source: 'devnet',
    coordinator: { status: 'ok', version: '0.1.0', providers_online: 1 },
    error: null,
    ...overrides
  };
}

export function chain(overrides: Partial<ChainInfo> = {}): ChainInfo {
  return {
    rpc_url: 'http://127.0.0.1:8545',
    chain_id: 31337,
    market: '0x5FbDB2315678afecb367f032d93F642f64180aa3',
    faucet: true,
    ...overrides
  };
}

export function wallet(overrides: Partial<WalletState> = {}): WalletState {
  return {
    keystore: [ACCOUNT, OTHER],
    unlocked: [ACCOUNT],
    account: ACCOUNT,
    network: 'http://127.0.0.1:8765',
    balance_wei: 10000000000000000000,
    credits_wei: 0,
    session: true,
    error: null,
    ...overrides
  };
}

export function approval(taskId: string, overrides: Partial<Approval> = {}): Approval {
  return {
    task_id: taskId,
    label: 'mnist',
    account: ACCOUNT,
    created_at: 1700000000,
    total: '0.0036 ETH',
    total_wei: 3600000000000000,
    max_price: '0.0036 ETH',
    verifier_fee: '0 ETH',
    summary: `task ${taskId}: at most 0.0036 ETH for 1 GPUs, up to 1800 s, verification none`,
    auto_approve: { allowed: false, reason: 'auto-approve is off: approve this task in the Gensyn panel' },
    ...overrides
  };
}

export function budget(overrides: Partial<Budget> = {}): Budget {
  return {
    enabled: false,
    per_task_eth: '0.05',
    per_day_eth: '1',
    spent_today_eth: '0',
    error: null,
    ...overrides
  };
}

export function task(id: string, state: string, overrides: Partial<Task> = {}): Task {
  return {
    id,
    state,
    spec: { label: 'mnist', gpus: 1 },
    provider_id: null,
    provider_name: null,
    created_at: 1700000000,
    account: ACCOUNT,
    payment: null,
    ...overrides
  };
}

export function provider(id: string, overrides: Partial<Provider> = {}): Provider {
  return {
    id,
    info: { name: `gpu-box-${id}`, device_type: 'cuda', gpus: [{ name: 'H100' }, { name: 'H100' }], cpu_count: 16 },
    state: 'idle',
    last_seen: 1700000000,
    tasks_done: 0,
    address: '0x22d491Bde2303f2f43325b2108D26f1eAbA1e32b',
    ...overrides
  };
}

/** A stub with every GET route of a healthy devnet. */
export function devnetApi(): StubApi {
  return new StubApi({
    'GET health': health(),
    'GET chain': chain(),
    'GET wallet': wallet(),
    'GET budget': budget(),
    'GET approvals': [approval('t-new'), approval('t-old', { total: '0.5 ETH', total_wei: 500000000000000000 })],
    'GET tasks': [
      task('t-new', 'awaiting_approval'),
      task('t-run', 'running', {
        provider_name: 'gpu-box-1',
        payment: { order: { max_price_wei: 3600000000000000, verifier_fee_wei: 0 }, provider_paid_wei: 0 }
      }),
      task('t-done', 'settled', {
        provider_name: 'gpu-box-1',
        payment: {
          order: { max_price_wei: 3600000000000000, verifier_fee_wei: 0 },
          provider_paid_wei: 1200000000000000,
          refunded_wei: 2400000000000000,
          outcome: 'finalized'
        }
      })
    ],
    'GET providers': [provider('p-1')]
  });
}

/** The element with this `data-testid` under `root` (fails when absent). */
export function byTestId<E extends HTMLElement = HTMLElement>(root: ParentNode, id: string): E {
  const el = root.querySelector<E>(`[data-testid="${id}"]`);
  if (!el) {
    throw new Error(`no [data-testid="${id}"]`);
  }
  return el;
}

export function allByTestId<E extends HTMLElement = HTMLElement>(root: ParentNode, id: string): E[] {
  return Array.from(root.querySelectorAll<E>(`[data-testid="${id}"]`));
}
