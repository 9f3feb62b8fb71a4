/**
 * Live updates: the panel's EventSource on /gensyn/api/events (a fake here:
 * happy-dom has none), debounced refreshes, reconnection with backoff, slow
 * polling while the stream is down, and closing when hidden or disposed.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { eventsUrl, LiveUpdates, type EventSourceLike } from '../src/panel/live';
import { GensynPanel } from '../src/panel/panel';
import { devnetApi, health, type StubApi } from './helpers';

/** A stand-in for the browser's EventSource: the test opens, fails and feeds it. */
class FakeSource implements EventSourceLike {
  onopen: ((event: Event) => unknown) | null = null;
  onerror: ((event: Event) => unknown) | null = null;
  closed = false;
  private readonly listeners = new Map<string, ((event: MessageEvent) => void)[]>();

  constructor(readonly url: string) {}

  addEventListener(type: string, listener: (event: MessageEvent) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  close(): void {
    this.closed = true;
  }

  open(): void {
    this.onopen?.(new Event('open'));
  }

  fail(): void {
    this.onerror?.(new Event('error'));
  }

  emit(type: string, data: unknown, lastEventId = ''): void {
    const event = new MessageEvent(type, { data: JSON.stringify(data), lastEventId });
    for (const listener of this.listeners.get(type) ?? []) {
      listener(event);
    }
  }
}

class Sources {
  readonly all: FakeSource[] = [];
  readonly factory = (url: string): FakeSource => {
    const source = new FakeSource(url);
    this.all.push(source);
    return source;
  };

  get last(): FakeSource {
    const source = this.all[this.all.length - 1];
    if (!source) {
      throw new Error('no EventSource was opened');
    }
    return source;
  }

  get open(): FakeSource[] {
    return this.all.filter(s => !s.closed);
  }
}

let panels: GensynPanel[] = [];
let sources: Sources;

function healthCalls(api: StubApi): number {
  return api.calls.filter(c => c.path === 'health').length;
}

/** A visible panel on a stub whose stream is `sources` (fake timers already on). */
async function mount(api: StubApi, options: Partial<ConstructorParameters<typeof GensynPanel>[0]> = {}) {
  const panel = new GensynPanel({
    request: api.request,
    refreshSeconds: 1,
    eventSource: sources.factory,
    eventsUrl: after => `/gensyn/api/events${after ? `?after=${after}` : ''}`,
    debounceMs: 100,
    ...options
  });
  panels.push(panel);
  Widget.attach(panel, document.body);
  await vi.advanceTimersByTimeAsync(0);
  return panel;
}

function liveLine(panel: GensynPanel): HTMLElement {
  const el = panel.node.querySelector<HTMLElement>('[data-testid="gensyn-live"]');
  if (!el) {
    throw new Error('no gensyn-live');
  }
  return el;
}

beforeEach(() => {
  document.body.innerHTML = '';
  sources = new Sources();
  vi.useFakeTimers();
});

afterEach(() => {
  for (const panel of panels) {
    if (panel.isAttached) {
      Widget.detach(panel);
    }
    panel.dispose();
  }
  panels = [];
  vi.useRealTimers();
});

describe('the live stream', () => {
  it('opens while visible, refreshes once per burst of events, and polls slowly meanwhile', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    expect(sources.all).toHaveLength(1);
    expect(sources.last.url).toBe('/gensyn/api/events');
    expect(panel.refreshMode).toBe('connecting');
    expect(healthCalls(api)).toBe(1); // the first read does not wait for the stream

    sources.last.open();
    expect(panel.refreshMode).toBe('live');
    expect(liveLine(panel).getAttribute('data-mode')).toBe('live');
    expect(liveLine(panel).textContent).toBe('live updates');
    await vi.advanceTimersByTimeAsync(100);
    expect(healthCalls(api)).toBe(2); // (re)opened: read what may have been missed

    sources.last.emit('ready', { account: null, last_event_id: 7 }, '7');
    sources.last.emit('task', { id: 8, task_id: 't-1', kind: 'state', data: { state: 'queued' } }, '8');
    sources.last.emit('task', { id: 9, task_id: 't-1', kind: 'state', data: { state: 'running' } }, '9');
    sources.last.emit('providers', [{ id: 'p-1', state: 'busy', tasks_done: 0 }]);
    await vi.advanceTimersByTimeAsync(100);
    expect(healthCalls(api)).toBe(3); // four events, one refresh
    expect(panel.live?.lastEventId).toBe('9');

    // No 1 s polling while live: only the 30 s safety net.
    await vi.advanceTimersByTimeAsync(29000);
    expect(healthCalls(api)).toBe(3);
    await vi.advanceTimersByTimeAsync(1500);
    expect(healthCalls(api)).toBe(4);
  });

  it('reconnects with backoff, resuming after the last event, and polls every 10 s while down', async () => {
    const api = devnetApi();
    const panel = await mount(api, { initialRetryMs: 1000, maxRetryMs: 4000 });
    sources.last.open();
    sources.last.emit('task', { id: 41 }, '41');
    await vi.advanceTimersByTimeAsync(100);
    const first = sources.last;

    first.fail();
    expect(first.closed).toBe(true); // closed: the browser's own retry would not back off
    expect(panel.refreshMode).toBe('down');
    expect(liveLine(panel).textContent).toContain('refreshing every 10 s');
    await vi.advanceTimersByTimeAsync(999);
    expect(sources.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sources.all).toHaveLength(2);
    expect(sources.last.url).toBe('/gensyn/api/events?after=41');

    // Failures in a row: 1 s, 2 s, 4 s, then at most 4 s apart.
    const opened: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = sources.all.length;
      sources.last.fail();
      let waited = 0;
      while (sources.all.length === before) {
        await vi.advanceTimersByTimeAsync(500);
        waited += 500;
      }
      opened.push(waited);
    }
    expect(opened).toEqual([2000, 4000, 4000, 4000]);
    expect(sources.open).toHaveLength(1);

    // Down, every retry failing at once: a poll every 10 s (fallbackSeconds),
    // neither every refreshSeconds nor pushed back by each retry.
    const polls: number[] = [];
    api.on('GET health', () => {
      polls.push(Date.now());
      return health();
    });
    for (let t = 0; t < 40000; t += 250) {
      if (!sources.last.closed) {
        sources.last.fail();
      }
      await vi.advanceTimersByTimeAsync(250);
    }
    const gaps = polls.slice(1).map((at, i) => at - polls[i]);
    expect(gaps.length).toBeGreaterThanOrEqual(3);
    expect(gaps.every(gap => gap === 10000)).toBe(true);

    // Open again: back to live, the backoff starts over.
    sources.last.open();
    expect(panel.refreshMode).toBe('live');
    expect(panel.live?.failures).toBe(0);
    sources.last.fail();
    await vi.advanceTimersByTimeAsync(1000);
    expect(sources.last.closed).toBe(false);
  });

  it('closes when hidden or disposed, and opens again when shown', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    const first = sources.last;
    first.open();
    panel.hide();
    expect(first.closed).toBe(true);
    expect(panel.refreshMode).toBe('off');
    const calls = healthCalls(api);
    first.emit('task', { id: 1 }, '1'); // late events of a closed stream change nothing
    await vi.advanceTimersByTimeAsync(60000);
    expect(healthCalls(api)).toBe(calls);
    expect(sources.all).toHaveLength(1);

    panel.show();
    expect(sources.all).toHaveLength(2);
    expect(sources.last.closed).toBe(false);
    panel.dispose();
    expect(sources.last.closed).toBe(true);
    await vi.advanceTimersByTimeAsync(60000);
    expect(sources.all).toHaveLength(2);
  });

  it('a failure while hidden schedules nothing', async () => {
    const panel = await mount(devnetApi());
    const source = sources.last;
    panel.hide();
    source.fail();
    await vi.advanceTimersByTimeAsync(60000);
    expect(sources.all).toHaveLength(1);
  });

  it('polls every refreshSeconds with the liveUpdates setting off, and without EventSource', async () => {
    const api = devnetApi();
    const panel = await mount(api);
    sources.last.open();
    await vi.advanceTimersByTimeAsync(100); // the refresh the opening asked for
    panel.liveUpdates = false;
    expect(sources.last.closed).toBe(true);
    expect(panel.refreshMode).toBe('polling');
    expect(liveLine(panel).textContent).toBe('refreshing every 1 s');
    await vi.advanceTimersByTimeAsync(900); // 1 s after the first poll
    const before = healthCalls(api);
    await vi.advanceTimersByTimeAsync(3000);
    expect(healthCalls(api)).toBe(before + 3);
    panel.liveUpdates = true;
    expect(sources.all).toHaveLength(2);

    const plain = await mount(devnetApi(), { eventSource: null });
    expect(plain.live).toBeNull();
    expect(plain.refreshMode).toBe('polling');
  });

  it('a factory that throws counts as a failure and is retried', async () => {
    let calls = 0;
    const factory = (url: string) => {
      calls += 1;
      if (calls === 1) {
        throw new Error('blocked');
      }
      return sources.factory(url);
    };
    const panel = await mount(devnetApi(), { eventSource: factory, initialRetryMs: 500 });
    expect(panel.refreshMode).toBe('down');
    await vi.advanceTimersByTimeAsync(500);
    expect(panel.refreshMode).toBe('connecting');
  });
});

describe('LiveUpdates', () => {
  it('doubles the retry delay up to the maximum', () => {
    const live = new LiveUpdates({ factory: sources.factory, onChange: () => undefined, maxRetryMs: 30000 });
    expect([1, 2, 3, 4, 5, 6, 7].map(n => live.retryDelay(n))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000
    ]);
  });
});

describe('eventsUrl', () => {
  const settings = (over: Partial<ServerConnection.ISettings>): ServerConnection.ISettings =>
    ServerConnection.makeSettings({ baseUrl: 'http://lab.example/user/ada/', ...over });

  it('is under the base URL, with the resume point', () => {
    const s = settings({ appendToken: false, token: 'secret' });
    expect(eventsUrl(null, s)).toBe('http://lab.example/user/ada/gensyn/api/events');
    expect(eventsUrl('42', s)).toBe('http://lab.example/user/ada/gensyn/api/events?after=42');
  });

  it('carries the token only where ServerConnection would append it (no cookie there)', () => {
    expect(eventsUrl(null, settings({ appendToken: true, token: 'secret' }))).toBe(
      'http://lab.example/user/ada/gensyn/api/events?token=secret'
    );
    expect(eventsUrl('3', settings({ appendToken: true, token: '' }))).toBe(
      'http://lab.example/user/ada/gensyn/api/events?after=3'
    );
  });
});
