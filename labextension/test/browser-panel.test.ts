/**
 * The panel with a browser wallet: the Wallet section connects, signs in and
 * switches chain through a fake EIP-1193 wallet; Approve goes through the
 * wallet for the browser account's tasks. Nothing is sent when anything fails.
 */
import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { GensynApiError } from '../src/errors';
import { GensynPanel } from '../src/panel/panel';
import type { BrowserState, WalletWithBrowser } from '../src/wallet/account';
import { NO_PROVIDER_TEXT, REJECTED_TEXT } from '../src/wallet/browser';
import { FakeWallet, MARKET, SIGNATURE, TX_HASH, WALLET_ADDRESS, inject, typedData } from './fake-wallet';
import { approval, byTestId, devnetApi, wallet as walletState, type StubApi } from './helpers';

const MESSAGE = `127.0.0.1:8765 wants you to sign in with your Ethereum account:\n${WALLET_ADDRESS}\n\n...`;

let panels: GensynPanel[] = [];

async function mount(api: StubApi): Promise<GensynPanel> {
  const panel = new GensynPanel({ request: api.request, refreshSeconds: 3600 });
  panels.push(panel);
  Widget.attach(panel, document.body);
  await panel.refresh();
  return panel;
}

function browserState(overrides: Partial<BrowserState> = {}): BrowserState {
  return {
    address: WALLET_ADDRESS,
    network: 'http://127.0.0.1:8765',
    signed_in: true,
    expires_at: 1900000000,
    chain_id: 31337,
    balance_wei: '5000000000000000000',
    credits_wei: 0,
    error: null,
    ...overrides
  };
}

/** A devnet stub whose wallet state follows the browser login and logout. */
function browserApi(): StubApi {
  const api = devnetApi();
  let signedIn = false;
  const state = (): WalletWithBrowser =>
    signedIn
      ? walletState({ account: WALLET_ADDRESS, source: 'browser', browser: browserState() } as Partial<WalletWithBrowser>)
      : walletState({ source: 'keystore', browser: null } as Partial<WalletWithBrowser>);
  api.on('GET wallet', () => state());
  api.on('POST wallet/browser/challenge', () => ({
    message: MESSAGE,
    address: WALLET_ADDRESS,
    chain_id: 31337,
    network: 'http://127.0.0.1:8765',
    expiration_time: null
  }));
  api.on('POST wallet/browser/login', () => {
    signedIn = true;
    return state();
  });
  api.on('POST wallet/browser/logout', () => {
    signedIn = false;
    return state();
  });
  return api;
}

function writes(api: StubApi): string[] {
  return api.writes().map(c => `${c.method} ${c.path}`);
}

beforeEach(() => {
  document.body.innerHTML = '';
});

afterEach(() => {
  for (const panel of panels) {
    if (panel.isAttached) {
      Widget.detach(panel);
    }
    panel.dispose();
  }
  panels = [];
  inject(null);
});

describe('connecting the browser wallet', () => {
  it('without a wallet in the page says how to get one and sends nothing', async () => {
    const api = browserApi();
    const panel = await mount(api);
    expect(byTestId(panel.node, 'gensyn-browser-address').textContent).toBe('not connected');
    byTestId<HTMLButtonElement>(panel.node, 'gensyn-connect-browser').click();
    await vi.waitFor(() => expect(panel.message.text).toBe(NO_PROVIDER_TEXT));
    expect(panel.message.kind).toBe('error');
    expect(writes(api)).toEqual([]);
  });

  it('connects, signs the server’s sign-in message and shows the account in use', async () => {
    const fake = new FakeWallet();
    inject(fake);
    const api = browserApi();
    const panel = await mount(api);
    expect(byTestId(panel.node, 'gensyn-connect-browser').textContent).toBe('Connect browser wallet');
    expect(await panel.wallet.connectBrowser()).toBe(true);
    expect(panel.message.text).toBe(
      `signed in as ${WALLET_ADDRESS} with your browser wallet: approvals and the kernel's tasks use it now`
    );
    expect(writes(api)).toEqual(['POST wallet/browser/challenge', 'POST wallet/browser/login']);
    const [challenge, login] = api.writes();
    expect(challenge.body).toEqual({ address: WALLET_ADDRESS, chain_id: 31337 });
    expect(login.body).toEqual({ address: WALLET_ADDRESS, message: MESSAGE, signature: SIGNATURE });
    expect(fake.calls('personal_sign')).toHaveLength(1);

    const node = panel.node;
    expect(byTestId(node, 'gensyn-browser-address').textContent).toBe(WALLET_ADDRESS);
    expect(byTestId(node, 'gensyn-browser-chain').textContent).toBe('chain 31337');
    expect(byTestId(node, 'gensyn-browser-balance').textContent).toBe('5 ETH');
    const session = byTestId(node, 'gensyn-browser-session');
    expect(session.getAttribute('data-signed-in')).toBe('true');
    expect(session.getAttribute('data-in-use')).toBe('true');
    expect(session.textContent).toContain('signed in to http://127.0.0.1:8765');
    expect(byTestId(node, 'gensyn-wallet-address').textContent).toBe(WALLET_ADDRESS);
    expect(byTestId(node, 'gensyn-connect-browser').hidden).toBe(true);
    expect(byTestId(node, 'gensyn-switch-chain').hidden).toBe(true);
    // approvals are now listed for the browser account
    expect(api.calls.some(c => c.path === `approvals?account=${encodeURIComponent(WALLET_ADDRESS)}`)).toBe(true);
  });

  it('a rejected signature signs nothing in and says so', async () => {
    const fake = new FakeWallet();
    fake.refuse.set('personal_sign', { code: 4001, message: 'User denied message signature.' });
    inject(fake);
    const api = browserApi();
    const panel = await mount(api);
    expect(await panel.wallet.connectBrowser()).toBe(false);
    expect(panel.message.text).toBe(REJECTED_TEXT);
    expect(writes(api)).toEqual(['POST wallet/browser/challenge']);
    expect(byTestId(panel.node, 'gensyn-browser-address').textContent).toBe(WALLET_ADDRESS);
    expect(byTestId(panel.node, 'gensyn-browser-session').textContent).toBe('not signed in');
    expect(byTestId(panel.node, 'gensyn-connect-browser').textContent).toBe('Sign in with browser wallet');
  });

  it('on another chain offers to switch, then signs in', async () => {
    const fake = new FakeWallet(1);
    inject(fake);
    const api = browserApi();
    const panel = await mount(api);
    expect(await panel.wallet.connectBrowser()).toBe(false);
    expect(panel.message.text).toBe(
      'your wallet is on chain 1, this network is chain 31337: switch your wallet to chain 31337'
    );
    expect(writes(api)).toEqual([]);
    const chain = byTestId(panel.node, 'gensyn-browser-chain');
    expect(chain.textContent).toBe('chain 1 · this network is chain 31337');
    expect(chain.getAttribute('data-wrong-chain')).toBe('true');
    const switchButton = byTestId<HTMLButtonElement>(panel.node, 'gensyn-switch-chain');
    expect(switchButton.hidden).toBe(false);
    expect(switchButton.textContent).toBe('Switch to chain 31337');

    switchButton.click();
    await vi.waitFor(() =>
      expect(panel.message.text).toBe(`your wallet is on chain 31337 now; signed in as ${WALLET_ADDRESS}`)
    );
    expect(fake.calls('wallet_switchEthereumChain')).toHaveLength(1);
    expect(writes(api)).toEqual(['POST wallet/browser/challenge', 'POST wallet/browser/login']);
    expect(switchButton.hidden).toBe(true);
  });

  it('follows the wallet when its user changes account or chain', async () => {
    const fake = new FakeWallet();
    inject(fake);
    const panel = await mount(browserApi());
    await panel.wallet.connectBrowser();
    fake.emit('chainChanged', '0x5');
    expect(byTestId(panel.node, 'gensyn-browser-chain').textContent).toBe('chain 5 · this network is chain 31337');
    expect(byTestId(panel.node, 'gensyn-switch-chain').hidden).toBe(false);
    fake.emit('accountsChanged', []);
    // no account shared any more: the server's sign-in is still shown until disconnected
    expect(byTestId(panel.node, 'gensyn-browser-address').textContent).toBe(WALLET_ADDRESS);
  });

  it('disconnect forgets the browser account on the server', async () => {
    inject(new FakeWallet());
    const api = browserApi();
    const panel = await mount(api);
    await panel.wallet.connectBrowser();
    byTestId<HTMLButtonElement>(panel.node, 'gensyn-disconnect-browser').click();
    await vi.waitFor(() => expect(panel.message.text).toContain(`disconnected the browser wallet ${WALLET_ADDRESS}`));
    expect(writes(api).at(-1)).toBe('POST wallet/browser/logout');
    expect(byTestId(panel.node, 'gensyn-browser-address').textContent).toBe('not connected');
    expect(byTestId(panel.node, 'gensyn-disconnect-browser').hidden).toBe(true);
  });
});

describe('refunds', () => {
  it('are withdrawn by the wallet with the call the server prepares', async () => {
    const fake = new FakeWallet();
    inject(fake);
    const api = browserApi();
    const panel = await mount(api);
    await panel.wallet.connectBrowser();
    const withdraw = byTestId<HTMLButtonElement>(panel.node, 'gensyn-browser-withdraw');
    expect(withdraw.hidden).toBe(true);

    api.on('GET wallet', () =>
      walletState({
        account: WALLET_ADDRESS,
        source: 'browser',
        browser: browserState({ credits_wei: '2400000000000000' })
      } as Partial<WalletWithBrowser>)
    );
    api.on('GET wallet/browser/withdrawal', {
      account: WALLET_ADDRESS,
      chain_id: 31337,
      rpc_url: 'http://127.0.0.1:8545',
      transaction: { to: MARKET, data: '0x3ccfd60b', value: '0', chain_id: 31337 },
      credits_wei: '2400000000000000',
      credits: '0.0024 ETH'
    });
    await panel.refresh();
    expect(byTestId(panel.node, 'gensyn-browser-session').textContent).toContain('refunds to withdraw 0.0024 ETH');
    expect(withdraw.hidden).toBe(false);
    withdraw.click();
    await vi.waitFor(() => expect(panel.message.text).toBe(`withdrew 0.0024 ETH of refunds to ${WALLET_ADDRESS}`));
    expect(fake.calls('eth_sendTransaction')[0].params).toEqual([
      expect.objectContaining({ to: MARKET, data: '0x3ccfd60b', value: '0x0' })
    ]);
  });
});

describe('approving with the browser wallet', () => {
  function prepared(overrides: Record<string, unknown> = {}) {
    return {
      task_id: 't-new',
      account: WALLET_ADDRESS,
      network: 'http://127.0.0.1:8765',
      chain_id: 31337,
      rpc_url: 'http://127.0.0.1:8545',
      typed_data: typedData(),
      transaction: { to: MARKET, data: '0x12345678', value: '3600000000000000', chain_id: 31337 },
      funded: false,
      total_wei: '3600000000000000',
      total: '0.0036 ETH',
      ...overrides
    };
  }

  async function signedIn(fake: FakeWallet, prepare: unknown = prepared()): Promise<[GensynPanel, StubApi]> {
    inject(fake);
    const api = browserApi();
    api.on('GET approvals', [approval('t-new', { account: WALLET_ADDRESS })]);
    api.on('GET approvals/t-new/prepare', prepare);
    api.on('POST approvals/t-new/order', { id: 't-new', state: 'queued' });
    const panel = await mount(api);
    await panel.wallet.connectBrowser();
    api.calls.length = 0;
    return [panel, api];
  }

  it('signs the order, funds the escrow, then posts the order', async () => {
    const fake = new FakeWallet();
    const [panel, api] = await signedIn(fake);
    const item = panel.node.querySelector('[data-testid="gensyn-approval"][data-task-id="t-new"]')!;
    byTestId<HTMLButtonElement>(item, 'gensyn-approve').click();
    await vi.waitFor(() =>
      expect(panel.message.text).toBe('approved t-new: 0.0036 ETH in escrow, signed and paid from your browser wallet')
    );
    expect(writes(api)).toEqual(['POST approvals/t-new/order']);
    expect(api.writes()[0].body).toEqual({ signature: SIGNATURE, tx_hash: TX_HASH });
    const order = fake.requests.map(r => r.method).filter(m => m.startsWith('eth_s') || m === 'eth_getTransactionReceipt');
    expect(order.slice(0, 2)).toEqual(['eth_signTypedData_v4', 'eth_sendTransaction']);
    expect(fake.calls('eth_sendTransaction')[0].params).toEqual([
      expect.objectContaining({ to: MARKET, data: '0x12345678', value: '0xcca2e51310000' })
    ]);
  });

  it('an escrow funded already is not funded twice', async () => {
    const fake = new FakeWallet();
    const [panel, api] = await signedIn(fake, prepared({ funded: true }));
    expect(await panel.approvals.approve('t-new')).toBe(true);
    expect(fake.calls('eth_sendTransaction')).toHaveLength(0);
    expect(api.writes()[0].body).toEqual({ signature: SIGNATURE, tx_hash: null });
  });

  it('a rejection in the wallet sends nothing and leaves the task waiting', async () => {
    const fake = new FakeWallet();
    fake.refuse.set('eth_signTypedData_v4', { code: 4001, message: 'User rejected the request.' });
    const [panel, api] = await signedIn(fake);
    expect(await panel.approvals.approve('t-new')).toBe(false);
    expect(panel.message.text).toBe(REJECTED_TEXT);
    expect(fake.calls('eth_sendTransaction')).toHaveLength(0);
    expect(writes(api)).toEqual([]);
    expect(panel.node.querySelector('[data-testid="gensyn-approval"][data-task-id="t-new"]')).not.toBeNull();

    fake.refuse.delete('eth_signTypedData_v4');
    fake.refuse.set('eth_sendTransaction', { code: 4001, message: 'User rejected the request.' });
    expect(await panel.approvals.approve('t-new')).toBe(false);
    expect(panel.message.text).toBe(REJECTED_TEXT);
    expect(writes(api)).toEqual([]); // the signature alone is never posted
  });

  it('an account that cannot pay is told before anything is signed', async () => {
    const fake = new FakeWallet();
    fake.balance = 1000n;
    const [panel, api] = await signedIn(fake);
    expect(await panel.approvals.approve('t-new')).toBe(false);
    expect(panel.message.text).toContain(`your browser account ${WALLET_ADDRESS} holds <0.000001 ETH`);
    expect(panel.message.text).toContain('this order needs 0.0036 ETH in escrow plus gas');
    expect(fake.calls('eth_signTypedData_v4')).toHaveLength(0);
    expect(writes(api)).toEqual([]);
  });

  it('a wallet moved to another chain is stopped, with the switch offered', async () => {
    const fake = new FakeWallet();
    const [panel, api] = await signedIn(fake);
    fake.chainId = 1;
    expect(await panel.approvals.approve('t-new')).toBe(false);
    expect(panel.message.text).toBe(
      'your wallet is on chain 1, this network is chain 31337: switch your wallet to chain 31337'
    );
    expect(byTestId(panel.node, 'gensyn-switch-chain').hidden).toBe(false);
    expect(fake.calls('eth_signTypedData_v4')).toHaveLength(0);
    expect(writes(api)).toEqual([]);
  });

  it('a reverted funding transaction posts no order', async () => {
    const fake = new FakeWallet();
    fake.receiptStatus = '0x0';
    const [panel, api] = await signedIn(fake);
    expect(await panel.approvals.approve('t-new')).toBe(false);
    expect(panel.message.text).toBe(`the funding transaction ${TX_HASH} failed on chain (reverted): nothing was escrowed`);
    expect(writes(api)).toEqual([]);
  });

  it('the server’s refusal of the order is shown as it says it', async () => {
    const fake = new FakeWallet();
    const [panel, api] = await signedIn(fake);
    api.on('POST approvals/t-new/order', () => {
      throw new GensynApiError(401, 'connect and sign in with your browser wallet again (Gensyn panel, Wallet)');
    });
    expect(await panel.approvals.approve('t-new')).toBe(false);
    expect(panel.message.text).toBe('connect and sign in with your browser wallet again (Gensyn panel, Wallet)');
  });

  it('a keystore account’s task is still approved by the server', async () => {
    inject(new FakeWallet());
    const api = devnetApi();
    api.on('POST approvals/t-new/approve', { id: 't-new', state: 'queued' });
    const panel = await mount(api);
    expect(await panel.approvals.approve('t-new')).toBe(true);
    expect(writes(api)).toEqual(['POST approvals/t-new/approve']);
  });
});
