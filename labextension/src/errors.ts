/**
 * The typed error of the `/gensyn/api/...` routes.
 *
 * Every error of the server extension is `{"detail": "...", "field": ...}`
 * with its HTTP status (docs/server.md); `status` is 0 when the Jupyter
 * server itself could not be reached.
 */
export class GensynApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly field: string | null = null
  ) {
    super(detail);
    this.name = 'GensynApiError';
  }
}

/** A one-line text for any error thrown by a request or a handler. */
export function errorText(error: unknown): string {
  if (error instanceof GensynApiError) {
    return error.detail;
  }
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/**
 * The text of a failed read inside a section: a missing network (503) is
 * said once, in the Network section, so the others only point there.
 */
export function sectionErrorText(error: unknown): string {
  if (error instanceof GensynApiError && error.status === 503) {
    return 'no network (see Network above)';
  }
  return errorText(error);
}

/**
 * How the panel calls the server extension: a path under `/gensyn/api/`
 * (e.g. `wallet/unlock`, `tasks?limit=20`) and fetch options. Resolves to the
 * parsed JSON answer, rejects with a {@link GensynApiError}.
 */
export type RequestAPI = <T>(path: string, init?: RequestInit) => Promise<T>;
