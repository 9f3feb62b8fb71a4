/**
 * The live training monitor of a `%%gensyn_train` cell (anywidget ESM).
 *
 * Python side: `gensyn_jupyter/widgets/_monitor.py`. Small state comes as
 * traitlets; points come as custom messages into a per-model store shared by
 * all views (see `store.ts`). Drawing is throttled to animation frames.
 *
 * Stable hooks for tests (`data-testid`): gensyn-monitor (root),
 * gensyn-status (with `data-state`), gensyn-timeline, gensyn-stats,
 * gensyn-metric, gensyn-smooth, gensyn-log-scale, gensyn-chart,
 * gensyn-cancel, gensyn-message, gensyn-log.
 */
import type { Initialize, Render } from '@anywidget/types';
import uplotCss from 'uplot/dist/uPlot.min.css';

import { requestCancel } from './cancel';

/** The DOM event (on `window`) that asks the JupyterLab extension to show an approval. */
export const OPEN_APPROVAL_EVENT = 'gensyn:open-approval';
import { Chart } from './chart';
import { fmtDuration, fmtInt, fmtRate, isTerminal, stateKind } from './format';
import monitorCss from './monitor.css';
import { dropStore, type Model, type MonitorModel, type Store, storeFor } from './store';

const STYLE_ID = 'gensyn-monitor-style';

function injectStyles(): void {
  if (document.getElementById(STYLE_ID)) {
    return;
  }
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = `${uplotCss}\n${monitorCss}`;
  document.head.appendChild(style);
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    el.setAttribute(key, value);
  }
  el.append(...children);
  return el;
}

function stat(label: string, testid: string): { root: HTMLElement; value: HTMLElement } {
  const value = h('span', { class: 'gensyn-stat-value' });
  const root = h(
    'span',
    { class: 'gensyn-stat', 'data-testid': testid },
    h('span', { class: 'gensyn-stat-label' }, label),
    value
  );
  return { root, value };
}

class MonitorView {
  private readonly root: HTMLElement;
  private readonly badge: HTMLElement;
  private readonly statusEl: HTMLElement;
  private readonly statusText: HTMLElement;
  private readonly taskEl: HTMLElement;
  private readonly cancelBtn: HTMLButtonElement;
  private readonly approveBtn: HTMLButtonElement;
  private readonly timelineEl: HTMLOListElement;
  private readonly progress: HTMLProgressElement;
  private readonly steps = stat('Steps', 'gensyn-steps');
  private readonly rate = stat('Speed', 'gensyn-rate');
  private readonly elapsed = stat('Elapsed', 'gensyn-elapsed');
  private readonly eta = stat('ETA', 'gensyn-eta');
  private readonly cost = stat('GPU time', 'gensyn-cost');
  private readonly controls: HTMLElement;
  private readonly picker: HTMLSelectElement;
  private readonly pickerLabel: HTMLElement;
  private readonly smoothBox: HTMLInputElement;
  private readonly logBox: HTMLInputElement;
  private readonly chartEl: HTMLElement;
  private readonly chart: Chart;
  private readonly messageEl: HTMLElement;
  private readonly logEl: HTMLDetailsElement;
  private readonly logSummary: HTMLElement;
  private readonly logPre: HTMLPreElement;
  private frame = 0;
  private elapsedAt = performance.now();
  private cancelling = false;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly model: Model,
    el: HTMLElement,
    private readonly store: Store
  ) {
    this.badge = h('span', { class: 'gensyn-badge' });
    this.statusText = h('span', { class: 'gensyn-status-text' });
    this.taskEl = h('span', { class: 'gensyn-task' });
    this.statusEl = h(
      'div',
      { class: 'gensyn-status', 'data-testid': 'gensyn-status', role: 'status' },
      h('span', { class: 'gensyn-title' }, 'gensyn'),
      this.badge,
      this.statusText
    );
    this.cancelBtn = h(
      'button',
      { type: 'button', class: 'gensyn-cancel', 'data-testid': 'gensyn-cancel' },
      'Cancel'
    );
    this.cancelBtn.addEventListener('click', () => void this.cancel());
    this.approveBtn = h(
      'button',
      {
        type: 'button',
        class: 'gensyn-approve-open',
        'data-testid': 'gensyn-open-approval',
        title: 'open this task in the Gensyn panel to approve and fund it'
      },
      'Approve in the Gensyn panel'
    );
    // No kernel round trip: the JupyterLab extension listens for this event.
    this.approveBtn.addEventListener('click', () => {
      window.dispatchEvent(
        new CustomEvent(OPEN_APPROVAL_EVENT, { detail: { taskId: this.model.get('task_id') } })
      );
    });
    this.timelineEl = h('ol', {
      class: 'gensyn-timeline',
      'data-testid': 'gensyn-timeline',
      'aria-label': 'timeline'
    });
    this.progress = h('progress', { class: 'gensyn-progress', 'aria-label': 'steps done' });
    const stats = h(
      'div',
      { class: 'gensyn-row gensyn-stats', 'data-testid': 'gensyn-stats' },
      this.steps.root,
      this.progress,
      this.rate.root,
      this.elapsed.root,
      this.eta.root,
      this.cost.root
    );

    this.picker = h('select', { 'data-testid': 'gensyn-metric' });
    this.picker.addEventListener('change', () => {
      this.store.ui.metric = this.picker.value;
      this.requestDraw();
    });
    this.pickerLabel = h('label', {}, 'Metric ', this.picker);
    this.smoothBox = h('input', { type: 'checkbox', 'data-testid': 'gensyn-smooth' });
    this.smoothBox.checked = store.ui.smooth;
    this.smoothBox.addEventListener('change', () => {
      this.store.ui.smooth = this.smoothBox.checked;
      this.requestDraw();
    });
    this.logBox = h('input', { type: 'checkbox', 'data-testid': 'gensyn-log-scale' });
    this.logBox.checked = store.ui.log;
    this.logBox.addEventListener('change', () => {
      this.store.ui.log = this.logBox.checked;
      this.requestDraw();
    });
    this.controls = h(
      'div',
      { class: 'gensyn-row gensyn-controls' },
      this.pickerLabel,
      h('label', { title: `exponential moving average` }, this.smoothBox, 'Smooth'),
      h('label', { title: 'logarithmic y axis (values ≤ 0 are left out)' }, this.logBox, 'Log scale')
    );

    this.chartEl = h('div', {
      class: 'gensyn-chart',
      'data-testid': 'gensyn-chart',
      role: 'img',
      'aria-label': 'training curve'
    });
    this.chart = new Chart(this.chartEl);
    this.messageEl = h('div', {
      class: 'gensyn-message',
      'data-testid': 'gensyn-message',
      role: 'status',
      'aria-live': 'polite'
    });
    this.logSummary = h('summary', {}, 'Remote output');
    this.logPre = h('pre', { tabindex: '0' });
    this.logEl = h(
      'details',
      { class: 'gensyn-log', 'data-testid': 'gensyn-log' },
      this.logSummary,
      this.logPre
    );
    this.logEl.open = store.ui.logOpen;
    this.logEl.addEventListener('toggle', () => {
      this.store.ui.logOpen = this.logEl.open;
      if (this.logEl.open) {
        this.logPre.scrollTop = this.logPre.scrollHeight;
      }
    });

    this.root = h(
      'div',
      { class: 'gensyn-monitor', 'data-testid': 'gensyn-monitor' },
      h(
        'div',
        { class: 'gensyn-row gensyn-header' },
        this.statusEl,
        this.approveBtn,
        this.cancelBtn
      ),
      this.taskEl,
      this.timelineEl,
      stats,
      this.controls,
      this.chartEl,
      this.messageEl,
      this.logEl
    );
    el.appendChild(this.root);
    this.listen();
    this.renderAll();
  }

  private listen(): void {
    const on = (names: (keyof MonitorModel)[], fn: () => void): void => {
      for (const name of names) {
        this.model.on(`change:${name}`, fn);
      }
    };
    on(['status', 'provider', 'device', 'timeline', 'task_id', 'network'], () =>
      this.renderStatus()
    );
    on(['steps', 'total_steps', 'throughput', 'gpu_seconds', 'done'], () => this.renderStats());
    on(['elapsed'], () => {
      this.elapsedAt = performance.now();
      this.renderStats();
    });
    on(['done'], () => this.renderStatus());
    on(['metrics'], () => this.renderPicker());
    on(['message'], () => this.renderMessage());
    on(['log_tail'], () => this.renderLog());
    this.cleanups.push(this.store.subscribe(() => this.requestDraw()));

    const timer = window.setInterval(() => {
      if (!this.finished()) {
        this.renderStats();
      }
      this.requestDraw(); // a no-op unless the data or the theme changed
    }, 1000);
    this.cleanups.push(() => window.clearInterval(timer));

    const resize = new ResizeObserver(() => {
      this.chart.resize();
      this.requestDraw();
    });
    resize.observe(this.chartEl);
    this.cleanups.push(() => resize.disconnect());

    // JupyterLab flags a theme change on <body>, then loads the theme's CSS:
    // look again a few times until the new colours are in.
    const timeouts: number[] = [];
    const theme = new MutationObserver(() => {
      for (const ms of [0, 100, 300, 700, 1500]) {
        timeouts.push(window.setTimeout(() => this.requestDraw(), ms));
      }
    });
    this.cleanups.push(() => timeouts.forEach(t => window.clearTimeout(t)));
    theme.observe(document.body, {
      attributes: true,
      attributeFilter: ['data-jp-theme-light', 'data-jp-theme-name', 'class']
    });
    this.cleanups.push(() => theme.disconnect());
  }

  dispose(): void {
    this.cleanups.forEach(fn => fn());
    if (this.frame) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    this.chart.destroy();
    this.root.remove();
  }

  private finished(): boolean {
    return this.model.get('done') || isTerminal(this.model.get('status'));
  }

  private renderAll(): void {
    this.renderStatus();
    this.renderStats();
    this.renderPicker();
    this.renderMessage();
    this.renderLog();
    this.requestDraw();
  }

  private renderStatus(): void {
    const m = this.model;
    const state = m.get('status') || 'submitted';
    this.badge.textContent = state.replace(/_/g, ' ');
    this.badge.dataset.kind = stateKind(state);
    this.statusEl.dataset.state = state;
    this.root.dataset.state = state;
    const words: string[] = [];
    const provider = m.get('provider');
    if (provider) {
      const device = m.get('device');
      words.push(`provider ${provider}${device ? ` (${device})` : ''}`);
    }
    const timeline = m.get('timeline') || [];
    const last = timeline[timeline.length - 1];
    if (last?.message && last.message !== state) {
      words.push(last.message);
    }
    this.statusText.textContent = words.join(' · ');
    this.statusText.title = this.statusText.textContent;

    this.taskEl.textContent = '';
    const task = m.get('task_id');
    const network = m.get('network');
    if (task) {
      this.taskEl.append('task ', h('code', {}, task), network ? ` on ${network}` : '');
    }

    this.timelineEl.replaceChildren(
      ...timeline.map((entry, i) => {
        const when =
          i === 0
            ? new Date(entry.ts * 1000).toLocaleTimeString()
            : `+${fmtDuration(entry.ts - timeline[0].ts)}`;
        const li = h(
          'li',
          { 'data-state': entry.state },
          h('span', { class: 'gensyn-step-state' }, entry.state.replace(/_/g, ' ')),
          h('time', { datetime: new Date(entry.ts * 1000).toISOString() }, when)
        );
        li.title = `${entry.message || entry.state} (${new Date(entry.ts * 1000).toLocaleString()})`;
        return li;
      })
    );
    this.renderCancel();
  }

  private renderCancel(): void {
    const finished = this.finished();
    this.approveBtn.hidden = this.model.get('status') !== 'awaiting_approval';
    this.cancelBtn.disabled = finished || this.cancelling;
    this.cancelBtn.title = finished
      ? 'the task has ended'
      : 'cancel the remote task (through the Jupyter server, so it works while the cell runs)';
  }

  private renderStats(): void {
    const m = this.model;
    const steps = m.get('steps') || 0;
    const total = m.get('total_steps') || 0;
    const rate = m.get('throughput') || 0;
    const done = this.finished();
    this.steps.value.textContent = total ? `${fmtInt(steps)} / ${fmtInt(total)}` : fmtInt(steps);
    this.progress.hidden = !total;
    if (total) {
      this.progress.max = total;
      this.progress.value = Math.min(steps, total);
    }
    this.rate.value.textContent = rate > 0 ? `${fmtRate(rate)} steps/s` : '–';
    let elapsed = m.get('elapsed') || 0;
    if (!done) {
      elapsed += (performance.now() - this.elapsedAt) / 1000;
    }
    this.elapsed.value.textContent = fmtDuration(elapsed);
    const showEta = !done && total > 0 && rate > 0 && steps < total;
    this.eta.root.hidden = !showEta;
    this.eta.value.textContent = showEta ? fmtDuration((total - steps) / rate) : '–';
    this.cost.value.textContent = `${(m.get('gpu_seconds') || 0).toFixed(1)} GPU·s`;
    this.cost.root.title = 'GPU-seconds used so far (price per GPU-second comes with the quote)';
  }

  private renderPicker(): void {
    const names = this.model.get('metrics') || [];
    const current = this.currentMetric();
    this.picker.replaceChildren(
      ...names.map(name => {
        const option = h('option', { value: name }, name);
        option.selected = name === current;
        return option;
      })
    );
    this.pickerLabel.hidden = names.length < 2;
    this.controls.hidden = names.length === 0;
    this.requestDraw();
  }

  private currentMetric(): string {
    const names = this.model.get('metrics') || [];
    const chosen = this.store.ui.metric;
    if (chosen && names.includes(chosen)) {
      return chosen;
    }
    return names.includes('loss') ? 'loss' : (names[0] ?? '');
  }

  private renderMessage(): void {
    this.messageEl.textContent = this.model.get('message') || '';
  }

  private renderLog(): void {
    const text = this.model.get('log_tail') || '';
    const pre = this.logPre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = text;
    if (atBottom) {
      pre.scrollTop = pre.scrollHeight;
    }
    const lines = text ? text.split('\n').filter((line, i, all) => line || i < all.length - 1) : [];
    this.logSummary.textContent = lines.length
      ? `Remote output (last ${fmtInt(lines.length)} lines)`
      : 'Remote output (none yet)';
  }

  private requestDraw(): void {
    if (this.frame) {
      return;
    }
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const name = this.currentMetric();
      this.chart.draw(name, this.store.series.get(name), {
        smooth: this.store.ui.smooth,
        log: this.store.ui.log
      });
    });
  }

  private async cancel(): Promise<void> {
    const taskId = this.model.get('task_id');
    if (!taskId || this.cancelling) {
      return;
    }
    this.cancelling = true;
    this.renderCancel();
    this.messageEl.textContent = 'cancelling…';
    const answer = await requestCancel(taskId, this.model.get('network') || '');
    this.cancelling = answer.ok; // a request that got through is not sent twice
    this.model.set('message', answer.text);
    this.model.save_changes();
    this.renderMessage();
    this.renderCancel();
  }
}

const initialize: Initialize<MonitorModel> = ({ model }) => {
  const store = storeFor(model);
  const onMessage = (msg: unknown, buffers: unknown[]): void => store.handle(msg, buffers);
  model.on('msg:custom', onMessage);
  if ((model.get('metrics') || []).length > 0) {
    // Metrics exist but this page has none of their points: a page opened
    // (or reloaded) after the run started. The kernel answers when idle.
    store.requestResync();
  }
  return () => {
    model.off('msg:custom', onMessage);
    dropStore(model);
  };
};

const render: Render<MonitorModel> = ({ model, el }) => {
  injectStyles();
  const view = new MonitorView(model, el, storeFor(model));
  return () => view.dispose();
};

export default { initialize, render };
