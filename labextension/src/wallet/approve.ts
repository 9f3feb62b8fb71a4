/**
 * Paying with the browser wallet. Approving a waiting task: the server
 * prepares the EIP-712 order and the `createTask` call, the wallet signs the
 * order and sends the call (funding the escrow), and the server posts the
 * signed order once the escrow is on chain. Withdrawing refunds: the server
 * prepares the market's `withdraw` call, the wallet sends it.
 *
 * The checks come first (account, chain, balance), the signature before the
 * transaction: a refusal at any step leaves the task waiting, nothing sent.
 */
import type { Address, Hex } from 'viem';

import type { RequestAPI } from '../errors';
import { formatEth } from '../format';
import type { Task } from '../types';
import { sameAddress, type BrowserAccount } from './account';
import {
  BrowserWalletError,
  type BrowserWallet,
  type JsonTypedData,
  type NetworkChain,
  type TransactionCall
} from './browser';

/** `GET /gensyn/api/approvals/{task_id}/prepare`. */
export interface Prepared {
  task_id: string;
  account: string;
  network: string;
  chain_id: number;
  rpc_url: string;
  typed_data: JsonTypedData;
  transaction: TransactionCall;
  /** The escrow exists already (an approval that stopped half-way): no transaction to send. */
  funded: boolean;
  total_wei: string;
  total: string;
}

/** `GET /gensyn/api/wallet/browser/withdrawal`. */
export interface Withdrawal {
  account: string;
  chain_id: number;
  rpc_url: string;
  transaction: TransactionCall;
  credits_wei: string;
  credits: string;
}

/** The wallet, connected as `account` and on `chain`; throws saying what to change otherwise. */
async function walletAs(
  browser: BrowserAccount,
  account: string,
  chain: NetworkChain,
  what: string
): Promise<[BrowserWallet, Address]> {
  const address = browser.address ?? (await browser.connect());
  if (!sameAddress(address, account)) {
    throw new BrowserWalletError(
      'failed',
      `your wallet's account is ${address}; ${what} belongs to ${account}: pick that account in your wallet`
    );
  }
  await browser.ensureChain(chain);
  return [browser.detect(), address];
}

/** Send `call` and wait until it is mined; throws when it reverted. */
async function sendMined(
  wallet: BrowserWallet,
  address: Address,
  call: TransactionCall,
  chain: NetworkChain,
  what: 'funding' | 'withdrawal'
): Promise<Hex> {
  const hash = await wallet.sendTransaction(address, call, chain);
  if (!(await wallet.waitForReceipt(hash, chain))) {
    const lost = what === 'funding' ? 'nothing was escrowed' : 'nothing moved';
    throw new BrowserWalletError('failed', `the ${what} transaction ${hash} failed on chain (reverted): ${lost}`);
  }
  return hash;
}

/**
 * Approve `taskId` with the browser wallet; resolves to what the panel says.
 *
 * @throws {BrowserWalletError} when the wallet refuses, is on another chain or
 *   account, or cannot pay; {GensynApiError} when the server does.
 */
export async function approveWithBrowser(
  browser: BrowserAccount,
  request: RequestAPI,
  taskId: string
): Promise<string> {
  const path = `approvals/${encodeURIComponent(taskId)}`;
  const prepared = await request<Prepared>(`${path}/prepare`);
  const chain = { id: prepared.chain_id, rpcUrl: prepared.rpc_url };
  const [wallet, address] = await walletAs(browser, prepared.account, chain, `task ${taskId}`);
  if (!prepared.funded) {
    const balance = await wallet.balance(address, chain);
    if (balance <= BigInt(prepared.transaction.value)) {
      throw new BrowserWalletError(
        'insufficient-funds',
        `your browser account ${address} holds ${formatEth(balance)}; this order needs ` +
          `${prepared.total} in escrow plus gas: fund it (on a devnet: Get test funds); nothing was signed or sent`
      );
    }
  }
  const signature = await wallet.signTypedData(address, prepared.typed_data);
  let txHash: Hex | null = null;
  if (!prepared.funded) {
    txHash = await sendMined(wallet, address, prepared.transaction, chain, 'funding');
  }
  await request<Task>(`${path}/order`, { method: 'POST', body: JSON.stringify({ signature, tx_hash: txHash }) });
  return `approved ${taskId}: ${prepared.total} in escrow, signed and paid from your browser wallet`;
}

/** Withdraw the browser account's refunds (credits of the market) to it. */
export async function withdrawWithBrowser(browser: BrowserAccount, request: RequestAPI): Promise<string> {
  const withdrawal = await request<Withdrawal>('wallet/browser/withdrawal');
  const chain = { id: withdrawal.chain_id, rpcUrl: withdrawal.rpc_url };
  const [wallet, address] = await walletAs(browser, withdrawal.account, chain, 'the refund');
  await sendMined(wallet, address, withdrawal.transaction, chain, 'withdrawal');
  return `withdrew ${withdrawal.credits} of refunds to ${address}`;
}
