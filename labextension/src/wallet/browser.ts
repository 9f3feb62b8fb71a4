/**
 * The browser wallet (EIP-1193 `window.ethereum`, e.g. MetaMask), through viem:
 * connect, read and switch the chain, `personal_sign` a sign-in message,
 * sign an EIP-712 order, send a transaction and wait for its receipt, all
 * through the wallet's own provider. The key never leaves the wallet.
 *
 * Every failure becomes a {@link BrowserWalletError} whose message a person
 * can act on (no wallet, rejected, wrong chain, not enough funds).
 */
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  getAddress,
  type Address,
  type Chain,
  type Hex,
  type TypedDataDefinition
} from 'viem';

import { BrowserWalletError, NO_PROVIDER_TEXT, errorCode, toWalletError, wrongChainText } from './errors';

export {
  BrowserWalletError,
  NO_PROVIDER_TEXT,
  REJECTED_TEXT,
  errorCode,
  toWalletError,
  wrongChainText,
  type WalletErrorKind
} from './errors';

/** The EIP-1193 provider a wallet injects as `window.ethereum`. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown }): Promise<unknown>;
  on?(event: string, listener: (...args: never[]) => void): unknown;
  removeListener?(event: string, listener: (...args: never[]) => void): unknown;
}

/** The network's chain as the wallet needs it: its id and an RPC URL (to add it). */
export interface NetworkChain {
  id: number;
  rpcUrl: string;
  name?: string;
}

/** A viem chain for `network` (viem needs one to send a transaction). */
export function toChain(network: NetworkChain): Chain {
  return defineChain({
    id: network.id,
    name: network.name ?? `Gensyn network (chain ${network.id})`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [network.rpcUrl] } }
  });
}

/** A chain id as wallets give it: `0x7a69`, `"31337"` or a number. */
export function parseChainId(value: unknown): number {
  if (typeof value === 'number') {
    return value;
  }
  const text = String(value);
  return text.startsWith('0x') ? Number.parseInt(text, 16) : Number(text);
}

/** `window.ethereum` when it looks like an EIP-1193 provider, else null. */
export function findProvider(scope: unknown = globalThis): Eip1193Provider | null {
  const candidate = (scope as { ethereum?: unknown } | null)?.ethereum;
  if (candidate && typeof (candidate as Eip1193Provider).request === 'function') {
    return candidate as Eip1193Provider;
  }
  return null;
}

/** Typed data as the server sends it (JSON: big integers as decimal strings). */
export interface JsonTypedData {
  types: Record<string, { name: string; type: string }[]>;
  primaryType: string;
  domain: Record<string, unknown>;
  message: Record<string, unknown>;
}

/** `typed`, with integer fields as bigint (viem's signTypedData checks them). */
export function fromJsonTypedData(typed: JsonTypedData): TypedDataDefinition {
  const ints = (fields: { name: string; type: string }[] | undefined, values: Record<string, unknown>) => {
    const out: Record<string, unknown> = { ...values };
    for (const field of fields ?? []) {
      const value = out[field.name];
      if (/^u?int\d*$/.test(field.type) && (typeof value === 'string' || typeof value === 'number')) {
        out[field.name] = BigInt(value);
      }
    }
    return out;
  };
  const { EIP712Domain, ...types } = typed.types;
  return {
    types,
    primaryType: typed.primaryType,
    domain: ints(EIP712Domain, typed.domain),
    message: ints(typed.types[typed.primaryType], typed.message)
  } as unknown as TypedDataDefinition;
}

/** A call to send: the server's `transaction` of `GET approvals/{id}/prepare`. */
export interface TransactionCall {
  to: string;
  data: string;
  value: string;
  chain_id: number;
}

/** One injected wallet. All methods throw {@link BrowserWalletError}. */
export class BrowserWallet {
  constructor(readonly provider: Eip1193Provider) {}

  /** The wallet of the page (`window.ethereum`); throws `no-provider` when there is none. */
  static detect(scope: unknown = globalThis): BrowserWallet {
    const provider = findProvider(scope);
    if (!provider) {
      throw new BrowserWalletError('no-provider', NO_PROVIDER_TEXT);
    }
    return new BrowserWallet(provider);
  }

  private client(chain?: NetworkChain) {
    return createWalletClient({
      chain: chain ? toChain(chain) : undefined,
      transport: custom(this.provider, { retryCount: 0 })
    });
  }

  private reader(chain: NetworkChain) {
    return createPublicClient({
      chain: toChain(chain),
      pollingInterval: 250,
      transport: custom(this.provider, { retryCount: 0 })
    });
  }

  private async call<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw toWalletError(error, doing);
    }
  }

  /** Ask the wallet for its account (`eth_requestAccounts`: it may show a prompt). */
  async connect(): Promise<Address> {
    const accounts = await this.call('connecting the wallet failed', () => this.client().requestAddresses());
    if (accounts.length === 0) {
      throw new BrowserWalletError('failed', 'the wallet shared no account: unlock it and connect again');
    }
    return getAddress(accounts[0]);
  }

  /** The accounts the wallet already shares with this page (`eth_accounts`: no prompt). */
  async accounts(): Promise<Address[]> {
    const accounts = await this.call('reading the wallet failed', () => this.client().getAddresses());
    return accounts.map(a => getAddress(a));
  }

  /** The chain the wallet is on now. */
  async chainId(): Promise<number> {
    return this.call('reading the wallet chain failed', () => this.client().getChainId());
  }

  /** Throws `wrong-chain` (with both ids) unless the wallet is on `chain`. */
  async ensureChain(chain: NetworkChain): Promise<void> {
    const actual = await this.chainId();
    if (actual !== chain.id) {
      throw new BrowserWalletError('wrong-chain', wrongChainText(actual, chain.id), {
        actual,
        expected: chain.id
      });
    }
  }

  /** `wallet_switchEthereumChain`; a wallet that does not know it (4902) is asked to add it. */
  async switchChain(chain: NetworkChain): Promise<void> {
    const client = this.client();
    try {
      await client.switchChain({ id: chain.id });
    } catch (error) {
      if (errorCode(error) !== 4902) {
        throw toWalletError(error, `switching to chain ${chain.id} failed`);
      }
      await this.call(`adding chain ${chain.id} to the wallet failed`, () =>
        client.addChain({ chain: toChain(chain) })
      );
      if ((await this.chainId()) !== chain.id) {
        await this.call(`switching to chain ${chain.id} failed`, () => client.switchChain({ id: chain.id }));
      }
    }
  }

  /** `personal_sign` of `message` (a sign-in message) by `account`. */
  async signMessage(account: Address, message: string): Promise<Hex> {
    return this.call('signing in failed', () => this.client().signMessage({ account, message }));
  }

  /** `eth_signTypedData_v4` of the server's typed data by `account`. */
  async signTypedData(account: Address, typed: JsonTypedData): Promise<Hex> {
    const definition = fromJsonTypedData(typed);
    return this.call('signing the order failed', () =>
      this.client().signTypedData({ account, ...definition } as Parameters<
        ReturnType<BrowserWallet['client']>['signTypedData']
      >[0])
    );
  }

  /** Send `call` from `account` on `chain` (the wallet fills nonce, gas and fees). */
  async sendTransaction(account: Address, call: TransactionCall, chain: NetworkChain): Promise<Hex> {
    return this.call('sending the transaction failed', () =>
      this.client(chain).sendTransaction({
        account,
        chain: toChain(chain),
        to: getAddress(call.to),
        data: call.data as Hex,
        value: BigInt(call.value)
      })
    );
  }

  /** Wait (through the wallet's provider) until `hash` is mined; whether it succeeded. */
  async waitForReceipt(hash: Hex, chain: NetworkChain, timeoutMs = 120_000): Promise<boolean> {
    const receipt = await this.call(`waiting for transaction ${hash} failed`, () =>
      this.reader(chain).waitForTransactionReceipt({ hash, timeout: timeoutMs })
    );
    return receipt.status === 'success';
  }

  /** The balance of `account`, read through the wallet. */
  async balance(account: Address, chain: NetworkChain): Promise<bigint> {
    return this.call('reading the balance failed', () => this.reader(chain).getBalance({ address: account }));
  }

  /** Call `listener` when the wallet's account or chain changes; returns how to stop. */
  onChange(listener: (change: { accounts?: string[]; chainId?: number }) => void): () => void {
    const provider = this.provider;
    if (typeof provider.on !== 'function') {
      return () => undefined;
    }
    const accounts = (value: string[]) => listener({ accounts: Array.isArray(value) ? value : [] });
    const chain = (value: string | number) => listener({ chainId: parseChainId(value) });
    provider.on('accountsChanged', accounts as (...args: never[]) => void);
    provider.on('chainChanged', chain as (...args: never[]) => void);
    return () => {
      provider.removeListener?.('accountsChanged', accounts as (...args: never[]) => void);
      provider.removeListener?.('chainChanged', chain as (...args: never[]) => void);
    };
  }
}
