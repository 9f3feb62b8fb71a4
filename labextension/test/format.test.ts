import { describe, expect, it } from 'vitest';

import { formatEth, shortHex, toWei } from '../src/format';

describe('formatEth', () => {
  it.each([
    [10000000000000000000, '10 ETH'],
    ['10000000000000000000', '10 ETH'],
    [3600000000000000, '0.0036 ETH'],
    [0, '0 ETH'],
    ['123456789012345678901', '123.456789 ETH'],
    [1, '<0.000001 ETH'],
    [null, '—'],
    ['not wei', '—']
  ])('%s -> %s', (wei, expected) => {
    expect(formatEth(wei as number | string | null)).toBe(expected);
  });

  it('keeps big amounts exact when they arrive as strings or bigints', () => {
    expect(toWei('340282366920938463463374607431768211456')).toBe(2n ** 128n);
    expect(formatEth(10n ** 18n + 5n * 10n ** 17n)).toBe('1.5 ETH');
  });

  it('shortens hex', () => {
    expect(shortHex('0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1')).toBe('0x90F8…c9C1');
    expect(shortHex('0xabc')).toBe('0xabc');
  });
});
