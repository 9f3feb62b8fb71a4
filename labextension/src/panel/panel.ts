/**
 * The Gensyn sidebar panel: Network, Wallet, Approvals, Tasks, Providers and
 * a message line, as plain DOM in a Lumino widget.
 *
 * It refreshes while visible: every `refreshSeconds` (1 s by default) it
 * reads the server extension's routes, and stops when the panel is hidden or
 * detached (and skips a round while the browser tab is in the background).
 * Polling is the first step; server-sent events relayed by the server
 * extension from the coordinator's stream are a later one.
 */
import { Widget } from '@lumino/widgets';

import type { RequestAPI } from '../errors';
import { GensynApiError } from '../errors';
import type { Approval, Budget, ChainInfo, Health, Provider, Task, WalletState } from '../types';
import { ApprovalsSection } from './approvals';
import { h } from './dom';
import { MessageLine } from './message';
import type { PanelContext, Result, Snapshot } from './model';
import { NetworkSection } from './network';
import { ProvidersSection } from './providers';
import { TasksSection } from './tasks';
import { WalletSection } from './wallet';

/** The widget id of the panel (also its DOM id). */
export const PANEL_ID = 'gensyn-panel';

export interface GensynPanelOptions {
  /** How the panel calls `/gensyn/api/...` (`requestAPI`, or a stub in tests). */
  request: RequestAPI;
  /** Seconds between refreshes while visible (default 1). */
  refreshSeconds?: number;
  /** How many recent tasks the Tasks section lists (default 20). */
  tasksLimit?: number;
}

async function settle<T>(promise: Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

export class GensynPanel extends Widget implements PanelContext {
  readonly request: RequestAPI;
  readonly message = new MessageLine();
  readonly network: NetworkSection;
  readonly wallet: WalletSection;
  readonly approvals: ApprovalsSection;
  readonly tasks: TasksSection;
  readonly providers: ProvidersSection;
  /** What the last refresh read. */
  snapshot: Snapshot = {};
  tasksLimit: number;
  private _refreshSeconds: number;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _polling = false;
  private _refreshing: Promise<void> | null = null;
  private _again = false;
  /** `/gensyn/api/chain` per network URL: it does not change while the network runs. */
  private _chain: { network: string; result: Result<ChainInfo | null> } | null = null;

  constructor(options: GensynPanelOptions) {
    super();
    this.request = options.request;
    this._refreshSeconds = GensynPanel.clampSeconds(options.refreshSeconds ?? 1);
    this.tasksLimit = options.tasksLimit ?? 20;
    this.id = PANEL_ID;
    this.addClass('jp-gensyn-panel');
    this.title.caption = 'Gensyn';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Gensyn');
    this.network = new NetworkSection();
    this.wallet = new WalletSection(this);
    this.approvals = new ApprovalsSection(this);
    this.tasks = new TasksSection(this);
    this.providers = new ProvidersSection();
    this.node.append(
      h('h2', { className: 'jp-gensyn-title' }, 'Gensyn'),
      this.message.node,
      this.network.node,
      this.wallet.node,
      this.approvals.node,
      this.tasks.node,
      this.providers.node
    );
    this.render();
  }

  static clampSeconds(value: number): number {
    return Number.isFinite(value) ? Math.min(Math.max(value, 0.25), 3600) : 1;
  }

  get refreshSeconds(): number {
    return this._refreshSeconds;
  }

  set refreshSeconds(value: number) {
    this._refreshSeconds = GensynPanel.clampSeconds(value);
    if (this._polling) {
      this.schedule();
    }
  }

  /** True while the panel polls (visible). */
  get polling(): boolean {
    return this._polling;
  }

  selectedAddress(): string | null {
    return this.wallet.selectedAddress();
  }

  async act(trigger: HTMLButtonElement | null, action: () => Promise<string>): Promise<boolean> {
    if (trigger) {
      trigger.disabled = true;
    }
    let ok = false;
    try {
      this.message.success(await action());
      ok = true;
    } catch (error) {
      this.message.error(error);
    } finally {
      if (trigger) {
        trigger.disabled = false;
      }
    }
    if (!this.isDisposed) {
      await this.refresh();
    }
    return ok;
  }

  /**
   * Show the approval of ``taskId`` (asked by a cell's monitor): refresh, then
   * scroll to and focus its Approve button. Resolves to false when it is not
   * waiting (any more), with a message saying so.
   */
  async showApproval(taskId: string): Promise<boolean> {
    await this.refresh();
    const item = this.node.querySelector<HTMLElement>(
      `[data-testid="gensyn-approval"][data-task-id="${CSS.escape(taskId)}"]`
    );
    if (!item) {
      this.message.show(`task ${taskId} is not waiting for approval`, 'info');
      return false;
    }
    item.scrollIntoView({ block: 'nearest' });
    item.querySelector<HTMLButtonElement>('[data-testid="gensyn-approve"]')?.focus();
    return true;
  }

  /**
   * Approve the oldest task waiting for approval (the list is newest first).
   * Resolves to false, with a message, when nothing waits.
   */
  async approveNext(): Promise<boolean> {
    if (this.approvals.pending.length === 0) {
      await this.refresh();
    }
    const pending = this.approvals.pending;
    const next: Approval | undefined = pending[pending.length - 1];
    if (!next) {
      this.message.show('nothing awaits approval', 'info');
      return false;
    }
    return this.approvals.approve(next.task_id);
  }

  /** Read everything once and render it; concurrent calls share one round (and run one more after it). */
  refresh(): Promise<void> {
    if (this._refreshing) {
      this._again = true;
      return this._refreshing;
    }
    this._refreshing = (async () => {
      try {
        do {
          this._again = false;
          await this.refreshOnce();
        } while (this._again && !this.isDisposed);
      } finally {
        this._refreshing = null;
      }
    })();
    return this._refreshing;
  }

  private async refreshOnce(): Promise<void> {
    const r = this.request;
    const [health, wallet, budget, tasks, providers] = await Promise.all([
      settle(r<Health>('health')),
      settle(r<WalletState>('wallet')),
      settle(r<Budget>('budget')),
      settle(r<Task[]>(`tasks?limit=${encodeURIComponent(String(this.tasksLimit))}`)),
      settle(r<Provider[]>('providers'))
    ]);
    const network = health.ok ? health.value.network : null;
    const account = (wallet.ok ? wallet.value.account : null) ?? this.pickedAccount(wallet);
    const [chain, approvals] = await Promise.all([
      this.readChain(network),
      account
        ? settle(r<Approval[]>(`approvals?account=${encodeURIComponent(account)}`))
        : Promise.resolve(undefined)
    ]);
    if (this.isDisposed) {
      return;
    }
    this.snapshot = { health, wallet, budget, tasks, providers, chain, approvals };
    this.render();
  }

  /** The address picked in the Wallet section when no account is in use (its approvals wait for an unlock). */
  private pickedAccount(wallet: Result<WalletState>): string | null {
    const picked = this.wallet.selectedAddress();
    if (!picked || !wallet.ok) {
      return null;
    }
    return wallet.value.keystore.some(a => a.toLowerCase() === picked.toLowerCase()) ? picked : null;
  }

  private async readChain(network: string | null): Promise<Result<ChainInfo | null> | undefined> {
    if (!network) {
      this._chain = null;
      return undefined;
    }
    if (this._chain && this._chain.network === network) {
      return this._chain.result;
    }
    let result: Result<ChainInfo | null>;
    try {
      result = { ok: true, value: await this.request<ChainInfo>('chain') };
    } catch (error) {
      // 404: a free network (no chain, no faucet).
      result =
        error instanceof GensynApiError && error.status === 404
          ? { ok: true, value: null }
          : { ok: false, error };
    }
    if (result.ok) {
      this._chain = { network, result };
    }
    return result;
  }

  /** Show the last snapshot in every section. */
  render(): void {
    const s = this.snapshot;
    this.network.update(s);
    this.wallet.update(s);
    this.approvals.update(s);
    this.tasks.update(s);
    this.providers.update(s);
  }

  /** Start polling (the panel became visible). */
  startPolling(): void {
    if (this._polling || this.isDisposed) {
      return;
    }
    this._polling = true;
    void this.tick();
  }

  /** Stop polling (the panel was hidden, detached or disposed). */
  stopPolling(): void {
    this._polling = false;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private async tick(): Promise<void> {
    this._timer = null;
    if (!this._polling) {
      return;
    }
    if (typeof document === 'undefined' || document.visibilityState !== 'hidden') {
      await this.refresh();
    }
    this.schedule();
  }

  private schedule(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (this._polling && !this.isDisposed) {
      this._timer = setTimeout(() => void this.tick(), this._refreshSeconds * 1000);
    }
  }

  protected override onAfterShow(): void {
    this.startPolling();
  }

  protected override onAfterAttach(): void {
    if (this.isVisible) {
      this.startPolling();
    }
  }

  protected override onAfterHide(): void {
    this.stopPolling();
  }

  protected override onBeforeDetach(): void {
    this.stopPolling();
  }

  override dispose(): void {
    this.stopPolling();
    super.dispose();
  }
}
