/**
 * The browser account of one panel: the page's wallet, the address and chain
 * it shares, and what the server says of its sign-in. The Wallet section
 * connects, signs in, switches chain and disconnects with it; the Approvals
 * section approves through it. Both find it with {@link browserAccountOf}.
 */
import { getAddress, type Address } from 'viem';

import { GensynApiError, type RequestAPI } from '../errors';
import type { ChainInfo, WalletState, Wei } from '../types';
import { BrowserWallet, BrowserWalletError, type NetworkChain } from './browser';

/** The browser account as `GET /gensyn/api/wallet` reports it (`browser`). */
export interface BrowserState {
  address: string;
  network: string;
  signed_in: boolean;
  expires_at: number;
  chain_id: number | null;
  balance_wei: Wei | null;
  credits_wei: Wei | null;
  error: string | null;
}

/** The wallet state with the browser account (`source`: which wallet the account in use is in). */
export interface WalletWithBrowser extends WalletState {
  source?: 'keystore' | 'browser' | null;
  browser?: BrowserState | null;
}

/** `POST /gensyn/api/wallet/browser/challenge`. */
export interface Challenge {
  message: string;
  address: string;
  chain_id: number;
  network: string;
  expiration_time: string | null;
}

export function sameAddress(a: string | null | undefined, b: string | null | undefined): boolean {
  return !!a && !!b && a.toLowerCase() === b.toLowerCase();
}

function body(value: Record<string, unknown> = {}): RequestInit {
  return { method: 'POST', body: JSON.stringify(value) };
}

export class BrowserAccount {
  /** The page's wallet, once looked for. */
  wallet: BrowserWallet | null = null;
  /** The account the wallet shares with the page (null: not connected). */
  address: Address | null = null;
  /** The chain the wallet is on (null: unknown). */
  chainId: number | null = null;
  /** The balance read through the wallet (before the server reads it). */
  balance: bigint | null = null;
  /** The server's view of the browser sign-in, from the last refresh. */
  server: BrowserState | null = null;
  /** Called when the wallet's account or chain changed. */
  onChange: (() => void) | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(
    readonly request: RequestAPI,
    private readonly scope: unknown = typeof window !== 'undefined' ? window : globalThis
  ) {}

  get connected(): boolean {
    return this.address !== null;
  }

  /** Signed in on the server as the connected account (or any, when none is connected). */
  get signedIn(): boolean {
    return !!this.server?.signed_in && (this.address === null || sameAddress(this.server.address, this.address));
  }

  /** True when `account` is the browser's: connected here, or signed in on the server. */
  owns(account: string | null | undefined): boolean {
    return sameAddress(account, this.address) || (!!this.server?.signed_in && sameAddress(account, this.server.address));
  }

  /** The page's wallet; throws `no-provider` when there is none. */
  detect(): BrowserWallet {
    if (!this.wallet) {
      const wallet = BrowserWallet.detect(this.scope);
      this.unsubscribe = wallet.onChange(change => this.changed(change));
      this.wallet = wallet;
    }
    return this.wallet;
  }

  /** Pick up a wallet that already shares an account with this page (no prompt, no error). */
  async restore(): Promise<void> {
    try {
      const wallet = this.detect();
      const [address] = await wallet.accounts();
      if (address && !this.address) {
        this.address = address;
        this.chainId = await wallet.chainId();
        this.notify();
      }
    } catch {
      // no wallet, or it does not answer: the Connect button says why when clicked
    }
  }

  /** Ask the wallet for its account (it may show a prompt). */
  async connect(): Promise<Address> {
    const wallet = this.detect();
    const address = await wallet.connect();
    if (!sameAddress(address, this.address)) {
      this.balance = null;
    }
    this.address = address;
    this.chainId = await wallet.chainId();
    this.notify();
    return address;
  }

  /** The network's chain (`GET /gensyn/api/chain`). */
  async networkChain(): Promise<NetworkChain> {
    try {
      const info = await this.request<ChainInfo>('chain');
      return { id: info.chain_id, rpcUrl: info.rpc_url };
    } catch (error) {
      if (error instanceof GensynApiError && error.status === 404) {
        throw new Error('this network runs without a chain: there is nothing to sign in to or pay');
      }
      throw error;
    }
  }

  /** Throws `wrong-chain` unless the wallet is on `chain` (and remembers where it is). */
  async ensureChain(chain: NetworkChain): Promise<void> {
    try {
      await this.detect().ensureChain(chain);
      this.chainId = chain.id;
    } catch (error) {
      if (error instanceof BrowserWalletError && error.chains) {
        this.chainId = error.chains.actual;
        this.notify();
      }
      throw error;
    }
  }

  /** Switch the wallet to `chain` (adding it when the wallet does not know it). */
  async switchTo(chain: NetworkChain): Promise<void> {
    const wallet = this.detect();
    await wallet.switchChain(chain);
    this.chainId = await wallet.chainId();
    this.notify();
  }

  /** Read the balance through the wallet (shown until the server reads it). */
  async readBalance(chain: NetworkChain): Promise<void> {
    if (this.address) {
      try {
        this.balance = await this.detect().balance(this.address, chain);
      } catch {
        this.balance = null;
      }
    }
  }

  /**
   * Sign in to the network: the server's sign-in message, `personal_sign`
   * in the wallet, then the login (the kernel's tasks become this account's).
   */
  async signIn(chain: NetworkChain): Promise<WalletWithBrowser> {
    const address = this.address ?? (await this.connect());
    await this.ensureChain(chain);
    const challenge = await this.request<Challenge>(
      'wallet/browser/challenge',
      body({ address, chain_id: chain.id })
    );
    const signature = await this.detect().signMessage(address, challenge.message);
    const state = await this.request<WalletWithBrowser>(
      'wallet/browser/login',
      body({ address, message: challenge.message, signature })
    );
    this.server = state.browser ?? null;
    this.notify();
    return state;
  }

  /** Forget the browser account here and on the server (the keystore's is in use again). */
  async disconnect(): Promise<void> {
    await this.request<WalletWithBrowser>('wallet/browser/logout', body());
    this.address = null;
    this.chainId = null;
    this.balance = null;
    this.server = null;
    this.notify();
  }

  /** Take the server's view of the browser account (each refresh). */
  sync(server: BrowserState | null | undefined): void {
    this.server = server ?? null;
  }

  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private changed(change: { accounts?: string[]; chainId?: number }): void {
    if (change.accounts) {
      const [first] = change.accounts;
      this.address = first ? getAddress(first) : null;
      this.balance = null;
    }
    if (change.chainId !== undefined && Number.isFinite(change.chainId)) {
      this.chainId = change.chainId;
    }
    this.notify();
  }

  private notify(): void {
    this.onChange?.();
  }
}

const accounts = new WeakMap<object, BrowserAccount>();

/** The browser account of a panel (one per panel, made on first use). */
export function browserAccountOf(ctx: { readonly request: RequestAPI }): BrowserAccount {
  let account = accounts.get(ctx);
  if (!account) {
    account = new BrowserAccount(ctx.request);
    accounts.set(ctx, account);
  }
  return account;
}
