/** What one refresh of the panel read, and how sections reach the panel. */
import type { RequestAPI } from '../errors';
import type {
  Approval,
  Budget,
  ChainInfo,
  Health,
  Provider,
  Task,
  WalletState
} from '../types';
import type { ClassInfo } from './classroom';
import type { MessageLine } from './message';

/** A read that succeeded (`value`) or failed (`error`); absent when not read. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: unknown };

export interface Snapshot {
  health?: Result<Health>;
  /** `null` value: the network is free (404) or there is no network. */
  chain?: Result<ChainInfo | null>;
  wallet?: Result<WalletState>;
  /** Absent when there is no account to list approvals for. */
  approvals?: Result<Approval[]>;
  budget?: Result<Budget>;
  tasks?: Result<Task[]>;
  providers?: Result<Provider[]>;
  /** `/gensyn/api/class`: the user's class on JupyterHub (`service: null` outside one). */
  classInfo?: Result<ClassInfo>;
}

/** What a section may use of its panel. */
export interface PanelContext {
  readonly request: RequestAPI;
  readonly message: MessageLine;
  /**
   * Run a user action: disables `trigger` while it runs, shows the text it
   * resolves to (success) or its error on the message line, then refreshes.
   */
  act(trigger: HTMLButtonElement | null, action: () => Promise<string>): Promise<boolean>;
  /** The address chosen in the Wallet section (the account in use by default). */
  selectedAddress(): string | null;
  /** Opens a notebook at a cell (resolves to what to tell the user); null where it cannot. */
  readonly openCell?: ((path: string, cellId: string) => Promise<string>) | null;
}

/** A JSON body for `requestAPI`. */
export function post(body: Record<string, unknown> = {}): RequestInit {
  return { method: 'POST', body: JSON.stringify(body) };
}
