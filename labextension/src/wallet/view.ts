/**
 * The browser wallet part of the Wallet section: connect (and sign in),
 * switch the wallet's chain, disconnect; the connected address, its chain,
 * balance and sign-in state.
 */
import { formatEth } from '../format';
import { button, h, setAttr, setText } from '../panel/dom';
import type { PanelContext, Snapshot } from '../panel/model';
import { browserAccountOf, sameAddress, type BrowserAccount, type WalletWithBrowser } from './account';
import { withdrawWithBrowser } from './approve';

export class BrowserWalletView {
  readonly node: HTMLElement;
  readonly address: HTMLElement;
  readonly chain: HTMLElement;
  readonly balance: HTMLElement;
  readonly session: HTMLElement;
  readonly connectButton: HTMLButtonElement;
  readonly switchButton: HTMLButtonElement;
  readonly disconnectButton: HTMLButtonElement;
  readonly withdrawButton: HTMLButtonElement;
  readonly account: BrowserAccount;
  private snapshot: Snapshot = {};

  constructor(private readonly ctx: PanelContext) {
    this.account = browserAccountOf(ctx);
    this.account.onChange = () => this.render();
    this.address = h('span', { 'data-testid': 'gensyn-browser-address', className: 'jp-gensyn-mono' });
    this.chain = h('span', { 'data-testid': 'gensyn-browser-chain' });
    this.balance = h('span', { 'data-testid': 'gensyn-browser-balance' });
    this.session = h('div', { 'data-testid': 'gensyn-browser-session', className: 'jp-gensyn-detail' });
    this.connectButton = button(
      'Connect browser wallet',
      'gensyn-connect-browser',
      () => void this.connect(),
      'Connect your browser wallet (MetaMask…) and sign in with it: approvals and the kernel’s tasks then use its account'
    );
    this.switchButton = button('Switch chain', 'gensyn-switch-chain', () => void this.switchChain());
    this.disconnectButton = button(
      'Disconnect',
      'gensyn-disconnect-browser',
      () => void this.disconnect(),
      'Forget the browser account here and on the server; the keystore’s account signs again'
    );
    this.withdrawButton = button(
      'Withdraw refunds',
      'gensyn-browser-withdraw',
      () => void this.withdraw(),
      'Send the market’s withdraw call from your wallet: the unused escrow of settled tasks comes back to it'
    );
    this.withdrawButton.hidden = true;
    this.connectButton.classList.add('jp-mod-accept');
    const row = (label: string, ...children: (Node | string)[]) =>
      h('div', { className: 'jp-gensyn-row' }, h('span', { className: 'jp-gensyn-label' }, label), ...children);
    this.node = h(
      'div',
      { className: 'jp-gensyn-browser', role: 'group', 'aria-label': 'Browser wallet' },
      h('h4', { className: 'jp-gensyn-subtitle' }, 'Browser wallet'),
      row('Address', this.address),
      row('Chain', this.chain, this.switchButton),
      row('Balance', this.balance),
      this.session,
      h('div', { className: 'jp-gensyn-row' }, this.connectButton, this.withdrawButton, this.disconnectButton)
    );
    this.render();
    void this.account.restore();
  }

  update(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    const wallet = snapshot.wallet?.ok ? (snapshot.wallet.value as WalletWithBrowser) : null;
    if (wallet) {
      this.account.sync(wallet.browser);
    }
    this.render();
  }

  /** The network's chain id, when the panel read it. */
  private expectedChain(): number | null {
    const chain = this.snapshot.chain;
    return chain?.ok && chain.value ? chain.value.chain_id : null;
  }

  render(): void {
    const account = this.account;
    const server = account.server;
    const address = account.address ?? server?.address ?? null;
    const serverHere = server !== null && sameAddress(server.address, address);
    setText(this.address, address ?? 'not connected');

    const expected = this.expectedChain();
    const wrongChain = account.chainId !== null && expected !== null && account.chainId !== expected;
    setText(
      this.chain,
      account.chainId === null ? '—' : `chain ${account.chainId}${wrongChain ? ` · this network is chain ${expected}` : ''}`
    );
    setAttr(this.chain, 'data-wrong-chain', String(wrongChain));
    this.switchButton.hidden = !(account.connected && wrongChain);
    setText(this.switchButton, `Switch to chain ${expected ?? '?'}`);

    const wei = serverHere && server?.balance_wei !== null ? server?.balance_wei : account.balance;
    setText(this.balance, address && wei !== null && wei !== undefined ? formatEth(wei) : '—');

    const wallet = this.snapshot.wallet?.ok ? (this.snapshot.wallet.value as WalletWithBrowser) : null;
    const inUse = wallet?.source === 'browser' && sameAddress(wallet.account, address);
    const signedIn = serverHere && server?.signed_in === true;
    let refunds = false;
    const parts: string[] = [];
    if (!address) {
      parts.push('sign with your own wallet (MetaMask…) instead of the keystore');
    } else if (signedIn) {
      parts.push(`signed in to ${server?.network}`);
      parts.push(inUse ? 'in use for approvals and the kernel' : 'not in use: a keystore key was unlocked after it');
      const credits = formatEth(server?.credits_wei ?? null);
      if (server?.credits_wei !== null && credits !== '0 ETH') {
        parts.push(`refunds to withdraw ${credits}`);
        refunds = true;
      }
    } else {
      parts.push(serverHere ? 'session expired: sign in again' : 'not signed in');
    }
    if (serverHere && server?.error) {
      parts.push(server.error);
    }
    setText(this.session, parts.join(' · '));
    setAttr(this.session, 'data-signed-in', String(signedIn));
    setAttr(this.session, 'data-in-use', String(inUse));

    setText(this.connectButton, account.connected ? 'Sign in with browser wallet' : 'Connect browser wallet');
    this.connectButton.hidden = account.connected && signedIn && inUse && !wrongChain;
    this.disconnectButton.hidden = !address;
    this.withdrawButton.hidden = !refunds;
  }

  /** Connect the wallet and sign in with it (the `gensyn:connect-wallet` command). */
  async connect(): Promise<boolean> {
    const account = this.account;
    return this.ctx.act(this.connectButton, async () => {
      const address = await account.connect();
      const chain = await account.networkChain();
      if (account.chainId === chain.id) {
        await account.readBalance(chain);
      }
      await account.signIn(chain);
      return `signed in as ${address} with your browser wallet: approvals and the kernel's tasks use it now`;
    });
  }

  /** Switch the wallet to the network's chain, then sign in if not yet. */
  async switchChain(): Promise<boolean> {
    const account = this.account;
    return this.ctx.act(this.switchButton, async () => {
      const chain = await account.networkChain();
      await account.switchTo(chain);
      if (account.signedIn) {
        return `your wallet is on chain ${chain.id} now`;
      }
      const state = await account.signIn(chain);
      return `your wallet is on chain ${chain.id} now; signed in as ${state.account}`;
    });
  }

  /** Withdraw the browser account's refunds with the wallet (the market's `withdraw`). */
  async withdraw(): Promise<boolean> {
    return this.ctx.act(this.withdrawButton, () => withdrawWithBrowser(this.account, this.ctx.request));
  }

  async disconnect(): Promise<boolean> {
    const address = this.account.address ?? this.account.server?.address ?? '';
    return this.ctx.act(this.disconnectButton, async () => {
      await this.account.disconnect();
      return `disconnected the browser wallet ${address}: the keystore's account signs again`;
    });
  }
}
