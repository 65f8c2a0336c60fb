// api.js — the dashboard's only door to cohortd: the signed-in credential
// (kept in sessionStorage, never in a URL) and `api()`, which sends it as
// `Authorization: Bearer` and turns any non-2xx answer into an ApiError
// carrying the API's own `message`.

const SESSION_KEY = 'cohortd.session';

/** The signed-in credential: `{role: 'workspace' | 'admin', token}`, or null. */
export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return s && typeof s.token === 'string' && (s.role === 'workspace' || s.role === 'admin') ? s : null;
  } catch {
    return null;
  }
}

export function setSession(role, token) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ role, token }));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** An answer that was not a 2xx (or no answer): `message` is the API's. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls the API. `body` (if given) is sent as JSON; the answer is parsed
 * as JSON when it is JSON, else returned as text (`/metrics`).
 * `opts.token` overrides the session's credential (sign-in checks one).
 */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const token = opts.token ?? session()?.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cohortd could not be reached (${e.message}).`);
  }
  const text = await res.text();
  let data = text;
  if (text && /json/.test(res.headers.get('Content-Type') || '')) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const message =
      data && typeof data === 'object' && typeof data.message === 'string'
        ? data.message
        : `${res.status} ${res.statusText || 'error'}`;
    throw new ApiError(res.status, message, data);
  }
  return data;
}

/** Walks a paged listing (`next_cursor`) up to `max` items. */
export async function allPages(path, key, max = 1000) {
  const out = [];
  let cursor = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const url = cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path;
    const page = await api('GET', url);
    out.push(...(page[key] || []));
    cursor = page.next_cursor || null;
  } while (cursor && out.length < max);
  return out;
}

/** A path segment, escaped. */
export const seg = (s) => encodeURIComponent(s);
