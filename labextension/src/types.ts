/**
 * The answers of `/gensyn/api/...` the panel reads (docs/server.md); only the
 * fields it uses are typed. Amounts in wei arrive as JSON numbers and may be
 * above 2**53: they are only ever formatted, never computed with.
 */

export type Wei = number | string;

/** `GET /gensyn/api/health`. */
export interface Health {
  network: string | null;
  source: string | null;
  coordinator: { status?: string; version?: string; providers_online?: number } | null;
  error: string | null;
}

/** `GET /gensyn/api/chain` (the coordinator's `ChainInfo`). */
export interface ChainInfo {
  rpc_url: string;
  chain_id: number;
  market: string;
  faucet: boolean;
  rate_wei_per_gpu_second?: Wei;
}

/** The wallet state: `GET /gensyn/api/wallet`, and the answer of unlock and lock. */
export interface WalletState {
  keystore: string[];
  unlocked: string[];
  account: string | null;
  network: string | null;
  balance_wei: Wei | null;
  credits_wei: Wei | null;
  session: boolean;
  error: string | null;
}

/** One item of `GET /gensyn/api/approvals`. */
export interface Approval {
  task_id: string;
  label: string;
  account: string;
  created_at: number;
  total: string;
  total_wei: Wei;
  max_price: string;
  verifier_fee: string;
  summary: string;
  auto_approve: { allowed: boolean; reason: string };
  /** Bytes of the bundle JSON plus its input blobs, as the coordinator measured them. */
  bundle_bytes?: number;
  /** `bundle_bytes` for a person ("1.2 MB"); null when unknown. */
  bundle_size?: string | null;
  /** The notebook the cell came from, as its kernel knew it ("" when unknown). */
  notebook?: string;
  /** That notebook below this server's root (what "Open cell" opens), or null. */
  notebook_path?: string | null;
  /** The nbformat id of the cell ("" when unknown). */
  cell_id?: string;
}

/** `GET|PUT /gensyn/api/budget`. */
export interface Budget {
  enabled: boolean;
  per_task_eth: string | null;
  per_day_eth: string | null;
  spent_today_eth?: string | null;
  error: string | null;
}

export interface Payment {
  order?: { max_price_wei: Wei; verifier_fee_wei: Wei };
  provider_paid_wei?: Wei;
  refunded_wei?: Wei;
  outcome?: string | null;
}

/** The coordinator's `Task` (the fields the panel shows). */
export interface Task {
  id: string;
  state: string;
  spec: { label?: string; gpus?: number; notebook?: string; cell_id?: string; bundle_bytes?: number };
  /** The notebook below this server's root (`GET /gensyn/api/tasks` adds it), or null. */
  notebook_path?: string | null;
  provider_id?: string | null;
  provider_name?: string | null;
  error?: string | null;
  created_at: number;
  account?: string | null;
  payment?: Payment | null;
}

/** The coordinator's `Provider`. */
export interface Provider {
  id: string;
  info: {
    name: string;
    device_type: string;
    gpus?: { name: string; memory_bytes?: number }[];
    cpu_count?: number;
  };
  state: string;
  last_seen: number;
  tasks_done?: number;
  address?: string | null;
}

/** `POST /gensyn/api/faucet`. */
export interface FaucetAnswer {
  address: string;
  wei: Wei;
  tx?: string | null;
}

/** States after which nothing more happens to a task (protocol `TERMINAL_STATES`). */
export const TERMINAL_STATES: ReadonlySet<string> = new Set([
  'settled',
  'cancelled',
  'failed',
  'slashed',
  'expired'
]);
