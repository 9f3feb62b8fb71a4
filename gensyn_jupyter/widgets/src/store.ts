/**
 * The points of one monitor model, shared by all its views.
 *
 * The kernel sends custom messages (see `_series.py`):
 *   {type: 'append' | 'reset', seq, series: [{name, n, head}], full?}
 * with two little-endian float64 buffers (steps, values) per series. An
 * append adds points at the end; a reset replaces a metric's points (its
 * first `head` points are an LTTB-downsampled history, the rest the recent
 * tail at full resolution). `seq` counts messages; a gap (a page reloaded
 * mid-run) makes the store ask the kernel for a full resync.
 */
import type { AnyModel } from '@anywidget/types';

export interface TimelineEntry {
  state: string;
  message: string;
  ts: number;
}

export interface MonitorModel {
  task_id: string;
  network: string;
  status: string;
  provider: string;
  device: string;
  timeline: TimelineEntry[];
  steps: number;
  total_steps: number;
  elapsed: number;
  gpu_seconds: number;
  throughput: number;
  log_tail: string;
  metrics: string[];
  message: string;
  done: boolean;
  _store_key: string;
}

export type Model = AnyModel<MonitorModel>;

interface SeriesMeta {
  name: string;
  n: number;
  head: number;
}

interface PointsMessage {
  type: 'append' | 'reset';
  seq: number;
  series: SeriesMeta[];
  full?: boolean;
}

/** One metric's points, in growable float64 arrays. */
export class Series {
  xs = new Float64Array(1024);
  ys = new Float64Array(1024);
  n = 0;
  /** How many of the first points are downsampled (after a reset). */
  head = 0;
  /** Bumped on every change, so a chart can tell whether to redraw. */
  version = 0;

  append(xs: Float64Array, ys: Float64Array): void {
    const need = this.n + xs.length;
    if (need > this.xs.length) {
      const cap = Math.max(need, this.xs.length * 2);
      const nx = new Float64Array(cap);
      const ny = new Float64Array(cap);
      nx.set(this.xs.subarray(0, this.n));
      ny.set(this.ys.subarray(0, this.n));
      this.xs = nx;
      this.ys = ny;
    }
    this.xs.set(xs, this.n);
    this.ys.set(ys, this.n);
    this.n = need;
    this.version++;
  }

  replace(xs: Float64Array, ys: Float64Array, head: number): void {
    this.n = 0;
    this.head = head;
    if (xs.length > this.xs.length) {
      this.xs = new Float64Array(xs.length * 2);
      this.ys = new Float64Array(xs.length * 2);
    }
    this.append(xs, ys);
  }
}

/** Per-view choices kept with the model, so they survive a re-render. */
export interface ViewState {
  metric: string;
  smooth: boolean;
  log: boolean;
  logOpen: boolean;
}

export class Store {
  readonly series = new Map<string, Series>();
  readonly ui: ViewState = { metric: '', smooth: false, log: false, logOpen: false };
  private seq = -1;
  private resyncAsked = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly model: Model) {}

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ask the kernel for every metric again (answered once the kernel is idle). */
  requestResync(): void {
    if (this.resyncAsked) {
      return;
    }
    this.resyncAsked = true;
    this.model.send({ type: 'resync' });
  }

  handle(msg: unknown, buffers: unknown[] | undefined): void {
    if (!isPointsMessage(msg)) {
      return;
    }
    if (msg.full) {
      this.resyncAsked = false;
    } else if (msg.seq !== this.seq + 1) {
      this.requestResync();
    }
    this.seq = msg.seq;
    msg.series.forEach((meta, i) => {
      const xs = toFloat64(buffers?.[2 * i]);
      const ys = toFloat64(buffers?.[2 * i + 1]);
      if (!xs || !ys || xs.length !== ys.length) {
        return;
      }
      let series = this.series.get(meta.name);
      if (!series) {
        series = new Series();
        this.series.set(meta.name, series);
      }
      if (msg.type === 'reset') {
        series.replace(xs, ys, meta.head);
      } else {
        series.append(xs, ys);
      }
    });
    this.listeners.forEach(listener => listener());
  }
}

function isPointsMessage(msg: unknown): msg is PointsMessage {
  if (typeof msg !== 'object' || msg === null) {
    return false;
  }
  const m = msg as Partial<PointsMessage>;
  return (
    (m.type === 'append' || m.type === 'reset') &&
    typeof m.seq === 'number' &&
    Array.isArray(m.series)
  );
}

function toFloat64(buffer: unknown): Float64Array | null {
  if (buffer instanceof ArrayBuffer) {
    return new Float64Array(buffer, 0, buffer.byteLength >> 3);
  }
  if (ArrayBuffer.isView(buffer)) {
    const { byteOffset, byteLength } = buffer;
    if (byteOffset % 8 === 0) {
      return new Float64Array(buffer.buffer, byteOffset, byteLength >> 3);
    }
    return new Float64Array(buffer.buffer.slice(byteOffset, byteOffset + byteLength));
  }
  return null;
}

const stores = new Map<string, Store>();

/** The store of a model, created on first use. */
export function storeFor(model: Model): Store {
  const key = model.get('_store_key') || '';
  let store = stores.get(key);
  if (!store) {
    store = new Store(model);
    stores.set(key, store);
  }
  return store;
}

export function dropStore(model: Model): void {
  stores.delete(model.get('_store_key') || '');
}
