/**
 * The errors of the browser wallet, in words a person can act on: no wallet,
 * rejected in the wallet (EIP-1193 code 4001), wrong chain, not enough funds.
 */

export const NO_PROVIDER_TEXT =
  'no browser wallet found: install one such as MetaMask, or use the keystore below';
export const REJECTED_TEXT = 'you rejected the request in your wallet; nothing was signed or sent';

/** What went wrong, for the panel to decide what to offer (a switch button for `wrong-chain`). */
export type WalletErrorKind = 'no-provider' | 'rejected' | 'wrong-chain' | 'insufficient-funds' | 'failed';

export class BrowserWalletError extends Error {
  constructor(
    readonly kind: WalletErrorKind,
    message: string,
    readonly chains: { actual: number; expected: number } | null = null
  ) {
    super(message);
    this.name = 'BrowserWalletError';
  }
}

/** The words of a wallet on another chain than the network (as the server says them). */
export function wrongChainText(actual: number, expected: number): string {
  return `your wallet is on chain ${actual}, this network is chain ${expected}: switch your wallet to chain ${expected}`;
}

interface ErrorLike {
  code?: unknown;
  name?: unknown;
  message?: unknown;
  shortMessage?: unknown;
  details?: unknown;
  cause?: unknown;
}

/** The error and its causes (viem wraps the provider's error several times). */
function chainOf(error: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  let current: unknown = error;
  while (current && typeof current === 'object' && out.length < 10) {
    out.push(current as ErrorLike);
    current = (current as ErrorLike).cause;
  }
  return out;
}

/** The first EIP-1193 / JSON-RPC error code in the chain of causes. */
export function errorCode(error: unknown): number | null {
  for (const e of chainOf(error)) {
    if (typeof e.code === 'number') {
      return e.code;
    }
  }
  return null;
}

/** Any error of a wallet call as a {@link BrowserWalletError} saying what to do. */
export function toWalletError(error: unknown, doing = 'the wallet failed'): BrowserWalletError {
  if (error instanceof BrowserWalletError) {
    return error;
  }
  const causes = chainOf(error);
  if (causes.some(e => e.code === 4001 || e.name === 'UserRejectedRequestError')) {
    return new BrowserWalletError('rejected', REJECTED_TEXT);
  }
  const text = causes.map(e => `${String(e.details ?? '')} ${String(e.message ?? '')}`).join(' ');
  if (causes.some(e => e.name === 'InsufficientFundsError') || /insufficient funds/i.test(text)) {
    return new BrowserWalletError(
      'insufficient-funds',
      'your wallet cannot pay this: not enough ETH for the escrow plus gas; nothing was sent'
    );
  }
  const first = causes[0];
  const reason = first
    ? String(first.shortMessage ?? first.message ?? first.name ?? 'unknown error')
    : String(error);
  return new BrowserWalletError('failed', `${doing}: ${reason.split('\n')[0]}`);
}
