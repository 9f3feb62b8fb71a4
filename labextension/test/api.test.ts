import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, it, vi } from 'vitest';

import { requestAPI } from '../src/api';
import { GensynApiError } from '../src/errors';

function settingsWith(fetch: (input: RequestInfo, init?: RequestInit) => Promise<Response>) {
  return ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/lab-base/',
    appUrl: '/lab',
    token: '',
    fetch: fetch as typeof globalThis.fetch,
    Request: globalThis.Request,
    Headers: globalThis.Headers
  });
}

describe('requestAPI', () => {
  it('calls <baseUrl>gensyn/api/<path> with a JSON body and parses the answer', async () => {
    const fetch = vi.fn(async (_input: RequestInfo, _init?: RequestInit) =>
      new Response(JSON.stringify({ address: '0xabc' }), { status: 201, headers: { 'Content-Type': 'application/json' } })
    );
    const answer = await requestAPI<{ address: string }>(
      'wallet/create',
      { method: 'POST', body: JSON.stringify({ passphrase: 'x'.repeat(8) }) },
      settingsWith(fetch)
    );
    expect(answer).toEqual({ address: '0xabc' });
    expect(fetch).toHaveBeenCalledTimes(1);
    const request = fetch.mock.calls[0][0] as Request;
    // makeRequest adds a cache-busting timestamp to the query.
    expect(request.url).toMatch(/^http:\/\/localhost:8888\/lab-base\/gensyn\/api\/wallet\/create(\?\d+)?$/);
    expect(request.method).toBe('POST');
    expect(request.headers.get('Content-Type')).toBe('application/json');
  });

  it('keeps the query string', async () => {
    const fetch = vi.fn(async () => new Response('[]', { status: 200 }));
    await requestAPI('tasks?limit=20', {}, settingsWith(fetch));
    const request = (fetch.mock.calls[0] as unknown[])[0] as Request;
    expect(request.url).toMatch(/^http:\/\/localhost:8888\/lab-base\/gensyn\/api\/tasks\?limit=20(&\d+)?$/);
  });

  it('sends the XSRF token of the page (through ServerConnection.makeRequest)', async () => {
    document.cookie = '_xsrf=token-from-cookie';
    const fetch = vi.fn(async (_input: RequestInfo, _init?: RequestInit) => new Response('{}', { status: 200 }));
    await requestAPI('wallet/lock', { method: 'POST', body: '{}' }, settingsWith(fetch));
    const request = fetch.mock.calls[0][0] as Request;
    expect(request.headers.get('X-XSRFToken')).toBe('token-from-cookie');
  });

  it('turns an error answer into a GensynApiError with status, detail and field', async () => {
    const fetch = vi.fn(
      async () =>
        new Response(JSON.stringify({ detail: 'wrong passphrase for 0xabc', field: 'passphrase' }), { status: 403 })
    );
    const error = await requestAPI('wallet/unlock', { method: 'POST', body: '{}' }, settingsWith(fetch)).catch(
      (e: unknown) => e
    );
    expect(error).toBeInstanceOf(GensynApiError);
    expect(error).toMatchObject({ status: 403, detail: 'wrong passphrase for 0xabc', field: 'passphrase' });
    expect((error as Error).message).toBe('wrong passphrase for 0xabc');
  });

  it('an answer that is not JSON becomes its status', async () => {
    const fetch = vi.fn(async () => new Response('<html>oops</html>', { status: 500, statusText: 'Internal Server Error' }));
    const error = await requestAPI('health', {}, settingsWith(fetch)).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 500, detail: '500 Internal Server Error', field: null });
  });

  it('a network failure is a GensynApiError with status 0', async () => {
    const fetch = vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    });
    const error = await requestAPI('health', {}, settingsWith(fetch)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GensynApiError);
    expect(error).toMatchObject({ status: 0 });
    expect((error as GensynApiError).detail).toContain('cannot reach the Jupyter server');
  });
});
