/** `BrowserWallet` (viem over an EIP-1193 provider) against a fake wallet. */
import { describe, expect, it } from 'vitest';

import {
  BrowserWallet,
  BrowserWalletError,
  NO_PROVIDER_TEXT,
  REJECTED_TEXT,
  findProvider,
  fromJsonTypedData,
  parseChainId,
  toWalletError
} from '../src/wallet/browser';
import { FakeWallet, MARKET, SIGNATURE, TX_HASH, WALLET_ADDRESS, typedData } from './fake-wallet';

const NETWORK = { id: 31337, rpcUrl: 'http://127.0.0.1:8545' };

async function failure(promise: Promise<unknown>): Promise<BrowserWalletError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BrowserWalletError);
    return error as BrowserWalletError;
  }
  throw new Error('expected a BrowserWalletError');
}

describe('finding the wallet', () => {
  it('says how to get one when the page has none', () => {
    expect(findProvider({})).toBeNull();
    expect(findProvider({ ethereum: { request: 'not a function' } })).toBeNull();
    expect(() => BrowserWallet.detect({})).toThrow(NO_PROVIDER_TEXT);
    const fake = new FakeWallet();
    expect(BrowserWallet.detect({ ethereum: fake }).provider).toBe(fake);
  });

  it('reads chain ids as wallets give them', () => {
    expect(parseChainId('0x7a69')).toBe(31337);
    expect(parseChainId('31337')).toBe(31337);
    expect(parseChainId(1)).toBe(1);
  });
});

describe('connect and chain', () => {
  it('connects with eth_requestAccounts and gives the checksummed address', async () => {
    const fake = new FakeWallet();
    const wallet = new BrowserWallet(fake);
    expect(await wallet.connect()).toBe(WALLET_ADDRESS);
    expect(fake.calls('eth_requestAccounts')).toHaveLength(1);
    expect(await wallet.chainId()).toBe(31337);
  });

  it('refuses to go on from another chain, naming both', async () => {
    const wallet = new BrowserWallet(new FakeWallet(1));
    const error = await failure(wallet.ensureChain(NETWORK));
    expect(error.kind).toBe('wrong-chain');
    expect(error.message).toBe('your wallet is on chain 1, this network is chain 31337: switch your wallet to chain 31337');
    expect(error.chains).toEqual({ actual: 1, expected: 31337 });
  });

  it('switches to a chain the wallet knows', async () => {
    const fake = new FakeWallet(1);
    await new BrowserWallet(fake).switchChain(NETWORK);
    expect(fake.calls('wallet_switchEthereumChain')[0].params).toEqual([{ chainId: '0x7a69' }]);
    expect(fake.calls('wallet_addEthereumChain')).toHaveLength(0);
    expect(fake.chainId).toBe(31337);
  });

  it('adds the network with its RPC URL when the wallet does not know it (4902)', async () => {
    const fake = new FakeWallet(1, [1]);
    await new BrowserWallet(fake).switchChain(NETWORK);
    const [add] = fake.calls('wallet_addEthereumChain');
    expect(add.params).toEqual([
      expect.objectContaining({
        chainId: '0x7a69',
        rpcUrls: ['http://127.0.0.1:8545'],
        nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }
      })
    ]);
    expect(fake.chainId).toBe(31337);
  });

  it('says so when the user refuses the switch', async () => {
    const fake = new FakeWallet(1);
    fake.refuse.set('wallet_switchEthereumChain', { code: 4001, message: 'User rejected the request.' });
    const error = await failure(new BrowserWallet(fake).switchChain(NETWORK));
    expect(error.kind).toBe('rejected');
    expect(fake.chainId).toBe(1);
  });
});

describe('signing and sending', () => {
  it('personal_signs a sign-in message', async () => {
    const fake = new FakeWallet();
    expect(await new BrowserWallet(fake).signMessage(WALLET_ADDRESS, 'sign me in')).toBe(SIGNATURE);
    const [call] = fake.calls('personal_sign');
    expect(call.params).toEqual(['0x7369676e206d6520696e', WALLET_ADDRESS]);
  });

  it('a user who rejects (4001) gets words, not an RPC error', async () => {
    const fake = new FakeWallet();
    fake.refuse.set('personal_sign', { code: 4001, message: 'User denied message signature.' });
    const error = await failure(new BrowserWallet(fake).signMessage(WALLET_ADDRESS, 'sign me in'));
    expect(error.kind).toBe('rejected');
    expect(error.message).toBe(REJECTED_TEXT);
  });

  it('signs the order as eth_signTypedData_v4 with big integers intact', async () => {
    const fake = new FakeWallet();
    const wallet = new BrowserWallet(fake);
    expect(await wallet.signTypedData(WALLET_ADDRESS, typedData())).toBe(SIGNATURE);
    const [call] = fake.calls('eth_signTypedData_v4');
    const [address, json] = call.params as [string, string];
    expect(address).toBe(WALLET_ADDRESS);
    const sent = JSON.parse(json);
    expect(sent.primaryType).toBe('TaskOrder');
    expect(sent.domain).toEqual({
      name: 'GensynTaskMarket',
      version: '1',
      chainId: '31337',
      verifyingContract: MARKET.toLowerCase()
    });
    expect(sent.message.maxPrice).toBe('100000000000000000000');
    expect(sent.message.deadline).toBe('1800000000');
    expect(sent.types.TaskOrder).toHaveLength(8);
  });

  it('turns decimal strings back into bigints only for integer fields', () => {
    const definition = fromJsonTypedData(typedData()) as unknown as { message: Record<string, unknown>; types: object };
    expect(definition.message.maxPrice).toBe(100000000000000000000n);
    expect(definition.message.nonce).toBe(3n);
    expect(definition.message.taskId).toBe(`0x${'93'.repeat(32)}`);
    expect(Object.keys(definition.types)).toEqual(['TaskOrder']);
  });

  it('sends the createTask call with its value and waits for the receipt through the wallet', async () => {
    const fake = new FakeWallet();
    const wallet = new BrowserWallet(fake);
    const call = { to: MARKET, data: '0xdeadbeef', value: '60000000000000', chain_id: 31337 };
    const hash = await wallet.sendTransaction(WALLET_ADDRESS, call, NETWORK);
    expect(hash).toBe(TX_HASH);
    const [sent] = fake.calls('eth_sendTransaction');
    expect(sent.params).toEqual([
      expect.objectContaining({ from: WALLET_ADDRESS, to: MARKET, data: '0xdeadbeef', value: '0x3691d6afc000' })
    ]);
    expect(await wallet.waitForReceipt(hash, NETWORK)).toBe(true);
    fake.receiptStatus = '0x0';
    expect(await wallet.waitForReceipt(hash, NETWORK)).toBe(false);
  });

  it('a wallet that cannot pay says so', async () => {
    const fake = new FakeWallet();
    fake.refuse.set('eth_sendTransaction', { code: -32000, message: 'insufficient funds for gas * price + value' });
    const call = { to: MARKET, data: '0x', value: '1', chain_id: 31337 };
    const error = await failure(new BrowserWallet(fake).sendTransaction(WALLET_ADDRESS, call, NETWORK));
    expect(error.kind).toBe('insufficient-funds');
    expect(error.message).toContain('not enough ETH for the escrow plus gas');
  });

  it('reads the balance through the wallet', async () => {
    const fake = new FakeWallet();
    fake.balance = 123n;
    expect(await new BrowserWallet(fake).balance(WALLET_ADDRESS, NETWORK)).toBe(123n);
  });

  it('maps other failures to one line saying what failed', () => {
    const error = toWalletError(new Error('boom\nstack'), 'sending the transaction failed');
    expect(error.kind).toBe('failed');
    expect(error.message).toBe('sending the transaction failed: boom');
  });
});

describe('events', () => {
  it('reports account and chain changes until stopped', () => {
    const fake = new FakeWallet();
    const seen: unknown[] = [];
    const stop = new BrowserWallet(fake).onChange(change => seen.push(change));
    fake.emit('chainChanged', '0x1');
    fake.emit('accountsChanged', []);
    stop();
    fake.emit('chainChanged', '0x2');
    expect(seen).toEqual([{ chainId: 1 }, { accounts: [] }]);
  });
});
