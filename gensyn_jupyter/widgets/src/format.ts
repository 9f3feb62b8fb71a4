/** Numbers and durations as the monitor writes them (matches `_format.py`). */

export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '–';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(s).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtValue(v: number | null | undefined): string {
  if (v === null || v === undefined) {
    return '–';
  }
  if (Number.isNaN(v)) {
    return 'nan';
  }
  if (!isFinite(v)) {
    return v > 0 ? 'inf' : '-inf';
  }
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) {
    return v.toExponential(3);
  }
  return String(Number(v.toPrecision(4)));
}

export function fmtRate(r: number): string {
  return r >= 100 ? fmtInt(r) : r.toPrecision(3);
}

/** What kind of state: in progress, waiting on someone, ended well, ended badly. */
export function stateKind(state: string): 'active' | 'wait' | 'ok' | 'error' {
  switch (state) {
    case 'verified':
    case 'settled':
    case 'done':
      return 'ok';
    case 'failed':
    case 'cancelled':
    case 'disputed':
    case 'slashed':
    case 'expired':
      return 'error';
    case 'submitted':
    case 'awaiting_approval':
    case 'queued':
      return 'wait';
    default:
      return 'active';
  }
}

/** States after which nothing more happens to a task. */
export function isTerminal(state: string): boolean {
  return ['settled', 'cancelled', 'failed', 'slashed', 'expired', 'done'].includes(state);
}
