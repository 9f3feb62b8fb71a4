/**
 * The live chart: one metric at a time, drawn by uPlot, x = optimizer step.
 * Options: EMA smoothing (the raw line stays, faint) and a log-scale y axis.
 * Colours come from the JupyterLab theme and follow it when it changes.
 */
import uPlot from 'uplot';

import type { Series } from './store';

const HEIGHT = 220;
/** Weight of the exponential moving average (TensorBoard's default is 0.6). */
export const EMA_WEIGHT = 0.9;

interface Theme {
  fg: string;
  fg2: string;
  grid: string;
  line: string;
  font: string;
}

function cssVar(el: Element, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

function readTheme(el: HTMLElement): Theme {
  const dark = document.body.dataset.jpThemeLight === 'false';
  const family = getComputedStyle(el).fontFamily || 'sans-serif';
  return {
    fg: cssVar(el, '--jp-ui-font-color1', dark ? '#e6e6e6' : '#1f2328'),
    fg2: cssVar(el, '--jp-ui-font-color2', dark ? '#b0b0b0' : '#59636e'),
    grid: cssVar(el, '--jp-border-color2', dark ? '#444' : '#e0e0e0'),
    line: cssVar(el, '--jp-brand-color1', dark ? '#64b5f6' : '#1976d2'),
    font: `11px ${family}`
  };
}

/** Debiased exponential moving average; non-finite values stay gaps. */
export function ema(ys: ArrayLike<number>, n: number, weight: number): (number | null)[] {
  const out: (number | null)[] = new Array(n);
  let last = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const y = ys[i];
    if (!isFinite(y)) {
      out[i] = null;
      continue;
    }
    last = last * weight + (1 - weight) * y;
    count++;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

export class Chart {
  private plot: uPlot | null = null;
  private plotKey = '';
  private lastX: [number, number] = [0, 0];
  private readonly empty: HTMLElement;
  private drawn: Series | null = null;
  private drawnVersion = -1;

  constructor(private readonly el: HTMLElement) {
    this.empty = document.createElement('div');
    this.empty.className = 'gensyn-chart-empty';
    el.appendChild(this.empty);
  }

  resize(): void {
    const width = this.el.clientWidth;
    if (this.plot && width > 0 && width !== this.plot.width) {
      this.plot.setSize({ width, height: HEIGHT });
    }
  }

  draw(name: string, series: Series | undefined, opts: { smooth: boolean; log: boolean }): void {
    if (!series || series.n === 0) {
      this.destroy();
      this.empty.textContent = name
        ? `no points of ${name} yet`
        : 'waiting for the first metrics (the loss is found automatically; add others with gensyn.log)';
      this.empty.hidden = false;
      return;
    }
    const width = this.el.clientWidth;
    if (width === 0) {
      return; // hidden (collapsed output): drawn when it shows again
    }
    this.empty.hidden = true;
    // The theme is part of the key: JupyterLab loads a new theme's CSS a
    // moment after it flags the change, so colours are read at each draw.
    const theme = readTheme(this.el);
    const key = [name, opts.smooth, opts.log, ...Object.values(theme)].join('\u0000');
    if (this.plot && key === this.plotKey && series === this.drawn && series.version === this.drawnVersion) {
      return; // nothing changed
    }
    this.drawn = series;
    this.drawnVersion = series.version;
    const data = this.data(series, opts);
    const xs = data[0] as Float64Array;
    const extent: [number, number] = [xs[0], xs[xs.length - 1]];
    if (!this.plot || this.plotKey !== key) {
      this.destroy();
      this.plot = new uPlot(this.options(name, width, opts, theme), data, this.el);
      this.plotKey = key;
    } else {
      const sx = this.plot.scales.x;
      const zoomed =
        sx.min !== undefined &&
        sx.max !== undefined &&
        (sx.min > this.lastX[0] || sx.max < this.lastX[1]);
      this.plot.setData(data, !zoomed);
    }
    this.lastX = extent;
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = null;
    this.plotKey = '';
    this.drawn = null;
  }

  private data(series: Series, opts: { smooth: boolean; log: boolean }): uPlot.AlignedData {
    const n = series.n;
    const xs = series.xs.slice(0, n);
    const raw: (number | null)[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const y = series.ys[i];
      raw[i] = isFinite(y) && (!opts.log || y > 0) ? y : null;
    }
    if (!opts.smooth) {
      return [xs, raw];
    }
    const smooth = ema(series.ys, n, EMA_WEIGHT);
    if (opts.log) {
      for (let i = 0; i < n; i++) {
        const v = smooth[i];
        if (v !== null && v <= 0) {
          smooth[i] = null;
        }
      }
    }
    return [xs, raw, smooth];
  }

  private options(
    name: string,
    width: number,
    opts: { smooth: boolean; log: boolean },
    t: Theme
  ): uPlot.Options {
    const axis = {
      stroke: t.fg2,
      font: t.font,
      labelFont: t.font,
      grid: { stroke: t.grid, width: 1 },
      ticks: { stroke: t.grid, width: 1 }
    };
    const series: uPlot.Series[] = [
      { label: 'step', value: (_u, v) => (v === null || v === undefined ? '–' : String(v)) },
      {
        label: opts.smooth ? `${name} (raw)` : name,
        stroke: t.line,
        width: opts.smooth ? 1 : 1.5,
        alpha: opts.smooth ? 0.3 : 1,
        points: { show: false },
        value: (_u, v) => formatLegend(v)
      }
    ];
    if (opts.smooth) {
      series.push({
        label: `${name} (EMA ${EMA_WEIGHT})`,
        stroke: t.line,
        width: 2,
        points: { show: false },
        value: (_u, v) => formatLegend(v)
      });
    }
    return {
      width,
      height: HEIGHT,
      scales: {
        x: { time: false },
        y: opts.log ? { distr: 3 } : {}
      },
      axes: [
        { ...axis },
        { ...axis, size: 56 }
      ],
      series,
      cursor: { drag: { x: true, y: false }, points: { show: false } },
      legend: { show: true, live: true }
    };
  }
}

function formatLegend(v: number | null | undefined): string {
  if (v === null || v === undefined) {
    return '–';
  }
  return String(Number(v.toPrecision(5)));
}
