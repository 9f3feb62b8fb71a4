/** Formatting helpers of the panel: amounts, addresses. */

const WEI_PER_ETH = 10n ** 18n;

/** The digits of an amount of wei as a bigint, or null when it is not one. */
export function toWei(value: number | string | bigint | null | undefined): bigint | null {
  if (value === null || value === undefined) {
    return null;
  }
  try {
    if (typeof value === 'bigint') {
      return value;
    }
    if (typeof value === 'number') {
      return Number.isFinite(value) ? BigInt(Math.round(value)) : null;
    }
    return /^-?\d+$/.test(value.trim()) ? BigInt(value.trim()) : null;
  } catch {
    return null;
  }
}

/**
 * An amount of wei as ETH: `10 ETH`, `0.0036 ETH`, at most `decimals`
 * decimals (cut, not rounded; a positive amount below that shows as
 * `<0.000001 ETH`), trailing zeros dropped.
 */
export function formatEth(
  value: number | string | bigint | null | undefined,
  decimals = 6
): string {
  const wei = toWei(value);
  if (wei === null) {
    return '—';
  }
  const negative = wei < 0n;
  const abs = negative ? -wei : wei;
  const whole = abs / WEI_PER_ETH;
  const fraction = (abs % WEI_PER_ETH).toString().padStart(18, '0').slice(0, decimals);
  const trimmed = fraction.replace(/0+$/, '');
  if (whole === 0n && trimmed === '' && abs > 0n) {
    return `${negative ? '>-' : '<'}0.${'0'.repeat(Math.max(decimals - 1, 0))}1 ETH`;
  }
  const sign = negative ? '-' : '';
  return `${sign}${whole.toString()}${trimmed ? `.${trimmed}` : ''} ETH`;
}

/** `0x1234…abcd` for a long hex string; anything else as is. */
export function shortHex(value: string, head = 6, tail = 4): string {
  return value.length > head + tail + 1 ? `${value.slice(0, head)}…${value.slice(-tail)}` : value;
}
