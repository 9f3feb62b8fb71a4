/**
 * `requestAPI`: the panel's one way to the server extension (`/gensyn/api/`),
 * through `ServerConnection.makeRequest`, which adds the base URL's auth
 * (token or cookie) and the XSRF header, like jupyterlab-git's handler.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { GensynApiError } from './errors';

/** The route prefix of the server extension, below the server's base URL. */
export const API_PREFIX = 'gensyn/api';

/**
 * Call `/gensyn/api/<path>` and parse its JSON answer.
 *
 * @param path - the route below `/gensyn/api/`, with its query string if any.
 * @param init - fetch options; a string body is sent as JSON.
 * @param settings - the server connection (the page's own by default).
 * @throws {GensynApiError} on a network failure (status 0) or an answer that
 *   is not 2xx (its `detail` and `field`).
 */
export async function requestAPI<T>(
  path = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PREFIX, path);
  const headers = new Headers(init.headers ?? {});
  if (init.body !== undefined && init.body !== null && !headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json');
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, { ...init, headers }, settings);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new GensynApiError(0, `cannot reach the Jupyter server: ${reason}`);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    throw toApiError(response.status, response.statusText, data);
  }
  return data as T;
}

/** The {@link GensynApiError} of a non-2xx answer. */
export function toApiError(status: number, statusText: string, data: unknown): GensynApiError {
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const body = data as { detail?: unknown; field?: unknown; message?: unknown };
    const detail =
      typeof body.detail === 'string'
        ? body.detail
        : typeof body.message === 'string'
          ? body.message
          : `${status} ${statusText}`;
    const field = typeof body.field === 'string' ? body.field : null;
    return new GensynApiError(status, detail, field);
  }
  const detail =
    typeof data === 'string' && data.length > 0 && data.length < 300 && !data.includes('<')
      ? data
      : `${status} ${statusText}`.trim();
  return new GensynApiError(status, detail);
}
