/**
 * The Gensyn sidebar panel: Network, Wallet, Approvals, Tasks, Providers and
 * a message line, as plain DOM in a Lumino widget.
 *
 * It refreshes while visible, and stops when the panel is hidden or detached:
 *
 * - **live** (where the browser has `EventSource`): it listens to
 *   `/gensyn/api/events` (the coordinator's change stream, relayed by the
 *   server extension) and refreshes, debounced, when something changed; a
 *   slow poll (`liveRefreshSeconds`, 30 s) catches what no event announces
 *   (other accounts' tasks, balances). When the stream fails it is reopened
 *   with backoff (1, 2, 4 … 30 s) and the panel polls every
 *   `fallbackSeconds` (10 s) meanwhile.
 * - **polling** (no `EventSource`, or the `liveUpdates` setting off): every
 *   `refreshSeconds` (1 s by default).
 *
 * A poll is skipped while the browser tab is in the background.
 */
import { Widget } from '@lumino/widgets';

import type { RequestAPI } from '../errors';
import { GensynApiError } from '../errors';
import type { Approval, Budget, ChainInfo, Health, Provider, Task, WalletState } from '../types';
import { ApprovalsSection } from './approvals';
import { ClassSection, type ClassInfo } from './classroom';
import { h, setAttr, setText } from './dom';
import { browserEventSource, type EventSourceFactory, LiveUpdates, type LiveState } from './live';
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
  /** Opens the live stream (default: the browser's `EventSource`; null: poll only). */
  eventSource?: EventSourceFactory | null;
  /** The stream's URL, resuming after an event id (default: `/gensyn/api/events`). */
  eventsUrl?: (after: string | null) => string;
  /** Seconds between refreshes while the live stream is down (default 10). */
  fallbackSeconds?: number;
  /** Seconds between refreshes while the live stream is up: a safety net (default 30). */
  liveRefreshSeconds?: number;
  /** Milliseconds events are gathered into one refresh (default 150). */
  debounceMs?: number;
  /** Reopen the stream after this many ms, doubled per failure up to `maxRetryMs`. */
  initialRetryMs?: number;
  maxRetryMs?: number;
  /**
   * Opens the notebook at `path` and selects the cell `cellId`; resolves to
   * what to tell the user. Absent: tasks show their origin without "Open cell".
   */
  openCell?: (path: string, cellId: string) => Promise<string>;
}

/** What the `gensyn-live` line says of each way of refreshing. */
export type RefreshMode = LiveState | 'polling';

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
  /** Shown only in a lab on JupyterHub with the gensyn class service. */
  readonly classroom: ClassSection;
  /** What the last refresh read. */
  snapshot: Snapshot = {};
  tasksLimit: number;
  /** Opens a notebook at a cell, or null (then no "Open cell" buttons). */
  readonly openCell: ((path: string, cellId: string) => Promise<string>) | null;
  /** The live stream, or null where the browser has no `EventSource`. */
  readonly live: LiveUpdates | null;
  private readonly liveNode: HTMLElement;
  private _liveEnabled = true;
  private _fallbackSeconds: number;
  private readonly _liveRefreshSeconds: number;
  private readonly _debounceMs: number;
  private _debounce: ReturnType<typeof setTimeout> | null = null;
  private _refreshSeconds: number;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  /** When the last poll ended (ms since the epoch). */
  private _polledAt = 0;
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
    this.openCell = options.openCell ?? null;
    this._fallbackSeconds = GensynPanel.clampSeconds(options.fallbackSeconds ?? 10);
    this._liveRefreshSeconds = GensynPanel.clampSeconds(options.liveRefreshSeconds ?? 30);
    this._debounceMs = Math.max(0, options.debounceMs ?? 150);
    const factory = options.eventSource === undefined ? browserEventSource() : options.eventSource;
    this.live = factory
      ? new LiveUpdates({
          factory,
          url: options.eventsUrl,
          onChange: () => this.changed(),
          onState: () => this.liveChanged(),
          initialRetryMs: options.initialRetryMs,
          maxRetryMs: options.maxRetryMs
        })
      : null;
    this.liveNode = h('div', { className: 'jp-gensyn-detail jp-gensyn-live', 'data-testid': 'gensyn-live' });
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
    this.classroom = new ClassSection();
    this.node.append(
      h('h2', { className: 'jp-gensyn-title' }, 'Gensyn'),
      this.liveNode,
      this.message.node,
      this.network.node,
      this.classroom.node,
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
    this.liveChanged();
  }

  get fallbackSeconds(): number {
    return this._fallbackSeconds;
  }

  set fallbackSeconds(value: number) {
    this._fallbackSeconds = GensynPanel.clampSeconds(value);
    this.liveChanged();
  }

  /** Whether the panel listens to the live stream (the `liveUpdates` setting; default true). */
  get liveUpdates(): boolean {
    return this._liveEnabled;
  }

  set liveUpdates(value: boolean) {
    if (value === this._liveEnabled) {
      return;
    }
    this._liveEnabled = value;
    if (!value) {
      this.live?.stop();
    } else if (this._polling) {
      this.live?.start();
    }
    this.liveChanged();
  }

  /** How the panel refreshes now: the live stream's state, or `polling` without one. */
  get refreshMode(): RefreshMode {
    return this.live && this._liveEnabled ? this.live.state : 'polling';
  }

  /** Seconds until the next poll: short without a stream, slow while it is live. */
  get pollSeconds(): number {
    switch (this.refreshMode) {
      case 'polling':
        return this._refreshSeconds;
      case 'live':
        return this._liveRefreshSeconds;
      default:
        return this._fallbackSeconds;
    }
  }

  /** True while the panel refreshes (visible). */
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
    const [health, wallet, budget, tasks, providers, classInfo] = await Promise.all([
      settle(r<Health>('health')),
      settle(r<WalletState>('wallet')),
      settle(r<Budget>('budget')),
      settle(r<Task[]>(`tasks?limit=${encodeURIComponent(String(this.tasksLimit))}`)),
      settle(r<Provider[]>('providers')),
      settle(r<ClassInfo>('class'))
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
    this.snapshot = { health, wallet, budget, tasks, providers, chain, approvals, classInfo };
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

  /** An event arrived (or the stream opened): refresh once the burst is over. */
  private changed(): void {
    if (this._debounce !== null || this.isDisposed) {
      return;
    }
    this._debounce = setTimeout(() => {
      this._debounce = null;
      if (this._polling) {
        void this.refresh();
      }
    }, this._debounceMs);
  }

  /** The stream's state moved: say so, and poll at the matching pace. */
  private liveChanged(): void {
    if (this.isDisposed) {
      return;
    }
    const mode = this.refreshMode;
    const text: Record<RefreshMode, string> = {
      live: 'live updates',
      connecting: 'connecting live updates…',
      down: `live updates interrupted: refreshing every ${this._fallbackSeconds} s, reconnecting`,
      off: '',
      polling: `refreshing every ${this._refreshSeconds} s`
    };
    setText(this.liveNode, this._polling || mode === 'polling' ? text[mode] : '');
    setAttr(this.liveNode, 'data-mode', mode);
    if (this._polling && this._timer !== null) {
      this.schedule(); // the next poll at the new pace (a refresh under way schedules its own)
    }
  }

  /** Show the last snapshot in every section. */
  render(): void {
    const s = this.snapshot;
    this.network.update(s);
    this.wallet.update(s);
    this.approvals.update(s);
    this.tasks.update(s);
    this.providers.update(s);
    this.classroom.update(s);
  }

  /** Start polling (the panel became visible). */
  startPolling(): void {
    if (this._polling || this.isDisposed) {
      return;
    }
    this._polling = true;
    if (this._liveEnabled) {
      this.live?.start();
    }
    this.liveChanged();
    void this.tick();
  }

  /** Stop polling (the panel was hidden, detached or disposed). */
  stopPolling(): void {
    this._polling = false;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (this._debounce !== null) {
      clearTimeout(this._debounce);
      this._debounce = null;
    }
    this.live?.stop();
    this.liveChanged();
  }

  private async tick(): Promise<void> {
    this._timer = null;
    if (!this._polling) {
      return;
    }
    if (typeof document === 'undefined' || document.visibilityState !== 'hidden') {
      await this.refresh();
    }
    this._polledAt = Date.now();
    this.schedule();
  }

  /**
   * Set the timer of the next poll: `pollSeconds` after the last one ended.
   * A change of pace moves it (sooner or later); a change of state at the
   * same pace (connecting ↔ down while the stream is retried) keeps it.
   */
  private schedule(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (this._polling && !this.isDisposed) {
      const wait = Math.max(0, this._polledAt + this.pollSeconds * 1000 - Date.now());
      this._timer = setTimeout(() => void this.tick(), wait);
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
