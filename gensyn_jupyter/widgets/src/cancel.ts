/**
 * Cancel without the kernel: a busy kernel reads no widget message until the
 * cell ends, so the button talks to the gensyn Jupyter server extension.
 */

export const CANCEL_REQUESTED = 'cancel requested';
export const NO_SERVER_EXTENSION =
  'no gensyn server extension here: interrupt the kernel to cancel';

/** The Jupyter server's base URL, from the page's `#jupyter-config-data`. */
export function baseUrl(): string {
  let url = '/';
  const el = document.getElementById('jupyter-config-data');
  if (el?.textContent) {
    try {
      const config = JSON.parse(el.textContent) as { baseUrl?: unknown };
      if (typeof config.baseUrl === 'string' && config.baseUrl) {
        url = config.baseUrl;
      }
    } catch {
      // not JSON: keep the default
    }
  }
  return url.endsWith('/') ? url : `${url}/`;
}

function xsrfToken(): string {
  const match = document.cookie.match('\\b_xsrf=([^;]*)\\b');
  return match ? match[1] : '';
}

/**
 * POST the cancel request for `taskId` on the coordinator at `network` (the
 * server extension's default when empty); resolves to what to tell the user.
 */
export async function requestCancel(
  taskId: string,
  network: string
): Promise<{ ok: boolean; text: string }> {
  const url = `${baseUrl()}gensyn/api/tasks/${encodeURIComponent(taskId)}/cancel`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-XSRFToken': xsrfToken(), 'Content-Type': 'application/json' },
      body: JSON.stringify(network ? { network } : {})
    });
  } catch {
    return { ok: false, text: NO_SERVER_EXTENSION };
  }
  if (response.ok) {
    return { ok: true, text: CANCEL_REQUESTED };
  }
  const reason = await errorMessage(response);
  if (response.status === 404 && (!reason || /^not found$/i.test(reason))) {
    return { ok: false, text: NO_SERVER_EXTENSION };
  }
  return { ok: false, text: `cancel failed: ${reason || `HTTP ${response.status}`}` };
}

/** The message of a JSON error answer (`{"detail": ...}`, `{"message": ...}` ...), or ''. */
async function errorMessage(response: Response): Promise<string> {
  if (!(response.headers.get('Content-Type') || '').includes('json')) {
    return '';
  }
  try {
    const body = (await response.json()) as Record<string, unknown>;
    for (const key of ['detail', 'message', 'error', 'reason']) {
      const value = body[key];
      if (typeof value === 'string' && value) {
        return value;
      }
      if (typeof value === 'object' && value && typeof (value as { message?: unknown }).message === 'string') {
        return (value as { message: string }).message;
      }
    }
  } catch {
    // not JSON after all
  }
  return '';
}
