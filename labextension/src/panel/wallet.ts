/**
 * Wallet section: the account in use and its balance, the devnet faucet, a
 * browser wallet (EIP-1193: connect, sign in, switch chain; see
 * ../wallet/view.ts) and the server's keystore (create, import, unlock, lock).
 * A browser account that signed in is the account in use until a keystore
 * key is unlocked again.
 *
 * A passphrase or key is read from its input, the input is cleared at once,
 * and the value lives only in the request being sent: never logged, never
 * kept in the panel.
 */
import type { FaucetAnswer, WalletState } from '../types';
import { errorText } from '../errors';
import { formatEth } from '../format';
import { BrowserWalletView } from '../wallet/view';
import type { WalletWithBrowser } from '../wallet/account';
import { button, h, setText } from './dom';
import { post, type PanelContext, type Snapshot } from './model';

export class WalletSection {
  readonly node: HTMLElement;
  readonly address: HTMLElement;
  readonly balance: HTMLElement;
  readonly detail: HTMLElement;
  readonly select: HTMLSelectElement;
  readonly importKey: HTMLInputElement;
  readonly passphrase: HTMLInputElement;
  readonly createButton: HTMLButtonElement;
  readonly importButton: HTMLButtonElement;
  readonly unlockButton: HTMLButtonElement;
  readonly lockButton: HTMLButtonElement;
  readonly faucetButton: HTMLButtonElement;
  readonly browser: BrowserWalletView;
  private wallet: WalletState | null = null;
  /** The address the user picked, kept across refreshes while it exists. */
  private picked: string | null = null;

  constructor(private readonly ctx: PanelContext) {
    this.address = h('span', { 'data-testid': 'gensyn-wallet-address', className: 'jp-gensyn-mono' });
    this.balance = h('span', { 'data-testid': 'gensyn-wallet-balance' });
    this.detail = h('div', { className: 'jp-gensyn-detail' });
    this.select = h('select', {
      'data-testid': 'gensyn-address-select',
      className: 'jp-gensyn-select jp-mod-styled',
      'aria-label': 'Keystore address'
    });
    this.select.addEventListener('change', () => {
      this.picked = this.select.value || null;
    });
    this.passphrase = h('input', {
      type: 'password',
      'data-testid': 'gensyn-passphrase',
      className: 'jp-gensyn-input jp-mod-styled',
      autocomplete: 'new-password',
      placeholder: 'passphrase (8+ characters)',
      'aria-label': 'Passphrase'
    });
    this.importKey = h('input', {
      type: 'password',
      'data-testid': 'gensyn-import-key',
      className: 'jp-gensyn-input jp-mod-styled',
      autocomplete: 'off',
      placeholder: 'private key to import (0x…)',
      'aria-label': 'Private key to import'
    });
    this.createButton = button('Create', 'gensyn-create', () => void this.create(), 'Create a new key in the keystore, encrypted with the passphrase, and unlock it');
    this.importButton = button('Import', 'gensyn-import', () => void this.importKeyAction(), 'Import the private key, encrypted with the passphrase, and unlock it');
    this.unlockButton = button('Unlock', 'gensyn-unlock', () => void this.unlock(), 'Unlock the selected address with the passphrase');
    this.lockButton = button('Lock', 'gensyn-lock', () => void this.lock(), 'Lock the selected address');
    this.faucetButton = button('Get test funds', 'gensyn-faucet', () => void this.faucet(), 'Ask the devnet faucet for test ETH');
    this.faucetButton.hidden = true;
    this.browser = new BrowserWalletView(ctx);

    const passphraseForm = h(
      'form',
      { className: 'jp-gensyn-row', 'aria-label': 'Unlock' },
      this.select,
      this.passphrase,
      this.unlockButton,
      this.lockButton
    );
    // Enter in the passphrase unlocks.
    passphraseForm.addEventListener('submit', event => {
      event.preventDefault();
      void this.unlock();
    });
    const importForm = h(
      'form',
      { className: 'jp-gensyn-row', 'aria-label': 'Import or create a key' },
      this.importKey,
      this.importButton,
      this.createButton
    );
    // Enter in the key field imports it.
    importForm.addEventListener('submit', event => {
      event.preventDefault();
      void this.importKeyAction();
    });
    this.node = h(
      'section',
      { className: 'jp-gensyn-section', 'aria-label': 'Wallet' },
      h('h3', { className: 'jp-gensyn-section-title' }, 'Wallet'),
      h(
        'div',
        { className: 'jp-gensyn-row' },
        h('span', { className: 'jp-gensyn-label' }, 'Account'),
        this.address
      ),
      h(
        'div',
        { className: 'jp-gensyn-row' },
        h('span', { className: 'jp-gensyn-label' }, 'Balance'),
        this.balance,
        this.faucetButton
      ),
      this.detail,
      this.browser.node,
      h('h4', { className: 'jp-gensyn-subtitle' }, 'Keystore'),
      passphraseForm,
      importForm
    );
  }

  /** The address the actions use: the picked one, else the account in use, else the first. */
  selectedAddress(): string | null {
    return this.select.value || this.wallet?.account || null;
  }

  /** Connect the browser wallet and sign in with it (`gensyn:connect-wallet`). */
  connectBrowser(): Promise<boolean> {
    return this.browser.connect();
  }

  update(snapshot: Snapshot): void {
    this.browser.update(snapshot);
    const wallet = snapshot.wallet;
    if (!wallet) {
      setText(this.address, 'loading…');
      return;
    }
    if (!wallet.ok) {
      setText(this.address, 'no account');
      setText(this.balance, '—');
      setText(this.detail, `wallet: ${errorText(wallet.error)}`);
      return;
    }
    const state: WalletWithBrowser = wallet.value;
    this.wallet = state;
    setText(this.address, state.account ?? 'no account');
    setText(this.balance, state.account ? formatEth(state.balance_wei) : '—');
    const details: string[] = [];
    if (state.account) {
      details.push(state.session ? 'signed in' : 'not signed in');
      if (state.source === 'browser') {
        details.push('browser wallet');
      }
      const credits = formatEth(state.credits_wei);
      if (state.credits_wei !== null && credits !== '0 ETH') {
        details.push(`credits ${credits}`);
      }
    }
    const lockedCount = state.keystore.length - state.unlocked.length;
    details.push(
      state.keystore.length === 0
        ? 'keystore empty: create or import a key'
        : `${state.keystore.length} key(s), ${state.unlocked.length} unlocked${lockedCount > 0 ? `, ${lockedCount} locked` : ''}`
    );
    if (state.error) {
      // Without a network the Network section already says why.
      details.push(state.network === null ? 'no network' : state.error);
    }
    setText(this.detail, details.join(' · '));
    this.syncSelect(state);
    const chain = snapshot.chain;
    this.faucetButton.hidden = !(chain?.ok && chain.value?.faucet === true);
  }

  private syncSelect(state: WalletState): void {
    const unlocked = new Set(state.unlocked.map(a => a.toLowerCase()));
    const wanted = state.keystore.map(a => ({
      value: a,
      label: `${a}${unlocked.has(a.toLowerCase()) ? ' (unlocked)' : ''}`
    }));
    const current = Array.from(this.select.options).map(o => `${o.value}|${o.text}`);
    if (current.join('\n') !== wanted.map(w => `${w.value}|${w.label}`).join('\n')) {
      this.select.replaceChildren(
        ...wanted.map(w => {
          const option = h('option', { value: w.value });
          option.textContent = w.label;
          return option;
        })
      );
    }
    const inKeystore = (address: string | null) =>
      !!address && state.keystore.some(a => a.toLowerCase() === address.toLowerCase());
    // the account in use may be the browser's, which is not in the keystore
    const keep = inKeystore(this.picked)
      ? this.picked
      : inKeystore(state.account)
        ? state.account
        : (state.keystore[0] ?? '');
    if (keep && this.select.value !== keep) {
      this.select.value = keep;
    }
    this.select.disabled = state.keystore.length === 0;
  }

  /** Read and clear the passphrase input. */
  private takePassphrase(): string {
    const value = this.passphrase.value;
    this.passphrase.value = '';
    return value;
  }

  async create(): Promise<void> {
    const passphrase = this.takePassphrase();
    await this.ctx.act(this.createButton, async () => {
      if (!passphrase) {
        throw new Error('enter a passphrase (8+ characters) for the new key');
      }
      const { address } = await this.ctx.request<{ address: string }>('wallet/create', post({ passphrase }));
      this.picked = address;
      await this.ctx.request<WalletState>('wallet/unlock', post({ address, passphrase }));
      return `created and unlocked ${address}`;
    });
  }

  async importKeyAction(): Promise<void> {
    const privateKey = this.importKey.value.trim();
    this.importKey.value = '';
    const passphrase = this.takePassphrase();
    await this.ctx.act(this.importButton, async () => {
      if (!privateKey) {
        throw new Error('paste the private key to import');
      }
      if (!passphrase) {
        throw new Error('enter a passphrase (8+ characters) to encrypt the key with');
      }
      const { address } = await this.ctx.request<{ address: string }>(
        'wallet/import',
        post({ private_key: privateKey, passphrase })
      );
      this.picked = address;
      await this.ctx.request<WalletState>('wallet/unlock', post({ address, passphrase }));
      return `imported and unlocked ${address}`;
    });
  }

  async unlock(): Promise<void> {
    const passphrase = this.takePassphrase();
    const address = this.selectedAddress();
    await this.ctx.act(this.unlockButton, async () => {
      if (!address) {
        throw new Error('no key in the keystore: create or import one');
      }
      if (!passphrase) {
        throw new Error(`enter the passphrase of ${address}`);
      }
      const state = await this.ctx.request<WalletState>('wallet/unlock', post({ address, passphrase }));
      this.picked = address;
      return `unlocked ${address}${state.error ? ` (${state.error})` : ''}`;
    });
  }

  async lock(): Promise<void> {
    const address = this.selectedAddress();
    await this.ctx.act(this.lockButton, async () => {
      await this.ctx.request<WalletState>('wallet/lock', post(address ? { address } : {}));
      return address ? `locked ${address}` : 'locked all keys';
    });
  }

  async faucet(): Promise<void> {
    const address = this.wallet?.account ?? this.selectedAddress();
    await this.ctx.act(this.faucetButton, async () => {
      const answer = await this.ctx.request<FaucetAnswer>('faucet', post(address ? { address } : {}));
      return `faucet sent ${formatEth(answer.wei)} to ${answer.address}`;
    });
  }
}
