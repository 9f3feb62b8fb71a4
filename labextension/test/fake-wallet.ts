/**
 * A fake EIP-1193 wallet (`window.ethereum`) for the unit tests: it answers
 * what viem asks, records every request, and can refuse any method the way
 * a wallet does (`{code, message}`, 4001 when the user rejects).
 */
import type { Eip1193Provider, JsonTypedData } from '../src/wallet/browser';

export const WALLET_ADDRESS = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC';
export const SIGNATURE = `0x${'ab'.repeat(65)}`;
export const TX_HASH = `0x${'cd'.repeat(32)}`;
export const MARKET = '0x5FbDB2315678afecb367f032d93F642f64180aa3';

/** A TaskOrder as `GET approvals/{id}/prepare` sends it (big integers as strings). */
export function typedData(): JsonTypedData {
  return {
    types: {
      EIP712Domain: [
        { name: 'name', type: 'string' },
        { name: 'version', type: 'string' },
        { name: 'chainId', type: 'uint256' },
        { name: 'verifyingContract', type: 'address' }
      ],
      TaskOrder: [
        { name: 'taskId', type: 'bytes32' },
        { name: 'specHash', type: 'bytes32' },
        { name: 'maxPrice', type: 'uint256' },
        { name: 'verifierFee', type: 'uint256' },
        { name: 'verification', type: 'uint8' },
        { name: 'deadline', type: 'uint64' },
        { name: 'nonce', type: 'uint64' },
        { name: 'submitter', type: 'address' }
      ]
    },
    primaryType: 'TaskOrder',
    domain: { name: 'GensynTaskMarket', version: '1', chainId: 31337, verifyingContract: MARKET },
    message: {
      taskId: `0x${'93'.repeat(32)}`,
      specHash: `0x${'ab'.repeat(32)}`,
      maxPrice: '100000000000000000000',
      verifierFee: 0,
      verification: 1,
      deadline: 1800000000,
      nonce: 3,
      submitter: WALLET_ADDRESS
    }
  };
}

export interface RpcRequest {
  method: string;
  params: unknown;
}

type Listener = (...args: never[]) => void;

export class FakeWallet implements Eip1193Provider {
  readonly requests: RpcRequest[] = [];
  /** Methods answered with an error: `{code, message}`. */
  readonly refuse = new Map<string, { code: number; message: string }>();
  chainId: number;
  /** Chains the wallet knows (others answer 4902 to a switch). */
  readonly known: Set<number>;
  balance = 10n ** 19n;
  receiptStatus: '0x1' | '0x0' = '0x1';
  account: string = WALLET_ADDRESS;
  /** True once the page was given the account (`eth_requestAccounts`), as a wallet remembers. */
  authorized = false;
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(chainId = 31337, known: number[] = [1, 31337]) {
    this.chainId = chainId;
    this.known = new Set(known);
  }

  /** The requests of `method`. */
  calls(method: string): RpcRequest[] {
    return this.requests.filter(r => r.method === method);
  }

  on(event: string, listener: Listener): void {
    if (!this.listeners.has(event)) {
      this.listeners.set(event, new Set());
    }
    this.listeners.get(event)!.add(listener);
  }

  removeListener(event: string, listener: Listener): void {
    this.listeners.get(event)?.delete(listener);
  }

  emit(event: string, value: unknown): void {
    for (const listener of this.listeners.get(event) ?? []) {
      (listener as (v: unknown) => void)(value);
    }
  }

  async request({ method, params }: { method: string; params?: unknown }): Promise<unknown> {
    this.requests.push({ method, params });
    const refusal = this.refuse.get(method);
    if (refusal) {
      throw Object.assign(new Error(refusal.message), refusal);
    }
    const hex = (n: number | bigint) => `0x${n.toString(16)}`;
    switch (method) {
      case 'eth_requestAccounts':
        this.authorized = true;
        return [this.account.toLowerCase()];
      case 'eth_accounts':
        return this.authorized ? [this.account.toLowerCase()] : [];
      case 'eth_chainId':
        return hex(this.chainId);
      case 'wallet_switchEthereumChain': {
        const id = Number.parseInt((params as { chainId: string }[])[0].chainId, 16);
        if (!this.known.has(id)) {
          throw Object.assign(new Error(`Unrecognized chain ID ${hex(id)}`), { code: 4902 });
        }
        this.chainId = id;
        this.emit('chainChanged', hex(id));
        return null;
      }
      case 'wallet_addEthereumChain': {
        const id = Number.parseInt((params as { chainId: string }[])[0].chainId, 16);
        this.known.add(id);
        this.chainId = id;
        this.emit('chainChanged', hex(id));
        return null;
      }
      case 'personal_sign':
      case 'eth_signTypedData_v4':
        return SIGNATURE;
      case 'eth_sendTransaction':
        return TX_HASH;
      case 'eth_getBalance':
        return hex(this.balance);
      case 'eth_blockNumber':
        return '0x10';
      case 'eth_getTransactionReceipt':
        return {
          transactionHash: TX_HASH,
          transactionIndex: '0x0',
          blockHash: `0x${'01'.repeat(32)}`,
          blockNumber: '0x10',
          from: this.account.toLowerCase(),
          to: '0x5fbdb2315678afecb367f032d93f642f64180aa3',
          cumulativeGasUsed: '0x5208',
          gasUsed: '0x5208',
          effectiveGasPrice: '0x1',
          contractAddress: null,
          logs: [],
          logsBloom: `0x${'00'.repeat(256)}`,
          status: this.receiptStatus,
          type: '0x2'
        };
      default:
        throw Object.assign(new Error(`the method ${method} does not exist`), { code: -32601 });
    }
  }
}

/** Put `wallet` (or nothing) in the page as `window.ethereum`. */
export function inject(wallet: FakeWallet | null): void {
  const scope = window as unknown as { ethereum?: unknown };
  if (wallet) {
    scope.ethereum = wallet;
  } else {
    delete scope.ethereum;
  }
}
