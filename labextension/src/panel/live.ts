/**
 * Live updates of the panel: an `EventSource` on `/gensyn/api/events` (the
 * coordinator's change stream, relayed by the server extension), reopened
 * with backoff when it fails.
 *
 * The panel refreshes whenever an event arrives (it does not apply events
 * itself: the stream only says *that* something changed, the routes say what
 * is true now). While the stream is down the panel polls slowly.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { API_PREFIX } from '../api';

/** The part of the browser's `EventSource` the panel uses (unit tests inject a fake). */
export interface EventSourceLike {
  onopen: ((event: Event) => unknown) | null;
  onerror: ((event: Event) => unknown) | null;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}

/** Opens an event stream on `url`. */
export type EventSourceFactory = (url: string) => EventSourceLike;

/**
 * - `connecting`: opened, not yet answered;
 * - `live`: open, events arrive;
 * - `down`: failed, a retry is scheduled;
 * - `off`: stopped (the panel is hidden).
 */
export type LiveState = 'off' | 'connecting' | 'live' | 'down';

/** The events of `/gensyn/api/events` (docs/server.md). */
export const STREAM_EVENTS = ['ready', 'task', 'providers'] as const;

/** The browser's `EventSource`, or null where there is none (happy-dom, old runtimes). */
export function browserEventSource(): EventSourceFactory | null {
  if (typeof EventSource === 'undefined') {
    return null;
  }
  return url => new EventSource(url);
}

/**
 * The URL of `/gensyn/api/events`, resuming after `after` when given.
 *
 * `EventSource` cannot send headers: on the page's own server the login
 * cookie authenticates it; where `ServerConnection` would append the token
 * to a websocket URL (`appendToken`: another host), it is appended here too.
 */
export function eventsUrl(
  after: string | null,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const query: Record<string, string> = {};
  if (after) {
    query.after = after;
  }
  if (settings.appendToken && settings.token) {
    query.token = settings.token;
  }
  return URLExt.join(settings.baseUrl, API_PREFIX, 'events') + URLExt.objectToQueryString(query);
}

export interface LiveUpdatesOptions {
  /** Opens the stream. */
  factory: EventSourceFactory;
  /** The stream's URL, resuming after an event id (default {@link eventsUrl}). */
  url?: (after: string | null) => string;
  /** Something changed: `open` when the stream (re)opened, else the event's name. */
  onChange: (what: string) => void;
  /** The state moved. */
  onState?: (state: LiveState) => void;
  /** First retry after this many ms (default 1000); doubled on each failure in a row. */
  initialRetryMs?: number;
  /** Retries are at most this many ms apart (default 30000). */
  maxRetryMs?: number;
}

/** One panel's event stream: open while started, reopened with backoff, closed when stopped. */
export class LiveUpdates {
  /** The id of the last event seen (resumed after when the stream is reopened). */
  lastEventId: string | null = null;
  /** How many times in a row the stream failed (0 while live). */
  failures = 0;
  private _state: LiveState = 'off';
  private _source: EventSourceLike | null = null;
  private _retry: ReturnType<typeof setTimeout> | null = null;
  private readonly _url: (after: string | null) => string;
  private readonly _initial: number;
  private readonly _max: number;

  constructor(private readonly options: LiveUpdatesOptions) {
    this._url = options.url ?? (after => eventsUrl(after));
    this._initial = Math.max(10, options.initialRetryMs ?? 1000);
    this._max = Math.max(this._initial, options.maxRetryMs ?? 30000);
  }

  get state(): LiveState {
    return this._state;
  }

  /** Open the stream (no-op while started). */
  start(): void {
    if (this._state === 'off') {
      this.connect();
    }
  }

  /** Close the stream and forget a scheduled retry. */
  stop(): void {
    if (this._retry !== null) {
      clearTimeout(this._retry);
      this._retry = null;
    }
    const source = this._source;
    this._source = null;
    source?.close();
    this.failures = 0;
    this.setState('off');
  }

  /** The delay before retry number `failures` (1, 2, 4 … s, at most the maximum). */
  retryDelay(failures: number): number {
    return Math.min(this._max, this._initial * 2 ** Math.max(0, failures - 1));
  }

  private connect(): void {
    this._retry = null;
    let source: EventSourceLike;
    try {
      source = this.options.factory(this._url(this.lastEventId));
    } catch {
      this.fail(null);
      return;
    }
    this._source = source;
    this.setState('connecting');
    source.onopen = () => {
      if (this._source !== source) {
        return;
      }
      this.failures = 0;
      this.setState('live');
      this.options.onChange('open');
    };
    for (const name of STREAM_EVENTS) {
      source.addEventListener(name, event => {
        if (this._source !== source) {
          return;
        }
        if (event.lastEventId) {
          this.lastEventId = event.lastEventId;
        }
        this.options.onChange(name);
      });
    }
    // The browser would reconnect by itself (every 3 s, forever, without
    // backing off, and not at all after an HTTP error): close it and retry here.
    source.onerror = () => this.fail(source);
  }

  private fail(source: EventSourceLike | null): void {
    if (source !== null && this._source !== source) {
      return;
    }
    source?.close();
    this._source = null;
    this.failures += 1;
    this.setState('down');
    this._retry = setTimeout(() => this.connect(), this.retryDelay(this.failures));
  }

  private setState(state: LiveState): void {
    if (this._state !== state) {
      this._state = state;
      this.options.onState?.(state);
    }
  }
}
