// The REST API as the page uses it. The API token lives in sessionStorage: it is gone when
// the tab closes, and other sites cannot read it.

const KEY = 'roomscribe.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** The token's claims, read without verifying (the server does that); null if unreadable. */
export function claims() {
  const t = token();
  if (!t) return null;
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch {
    return null;
  }
}

export const enc = encodeURIComponent;

/** Fetch with the API token; raises ApiError with the API's own error code and message. */
export async function request(path, { method = 'GET', params, raw = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token() || ''}`, Accept: 'application/json' },
  });
  if (!res.ok) {
    let code = 'http_error';
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      code = body.error.code;
      message = body.error.message;
    } catch {
      // not the API's JSON error: keep the status line
    }
    throw new ApiError(res.status, code, message);
  }
  return raw ? res : res.json();
}

export const rooms = (cursor) => request('/v1/rooms', { params: { limit: 50, cursor } });
export const room = (name) => request(`/v1/rooms/${enc(name)}`);
export const streamToken = (name) =>
  request(`/v1/rooms/${enc(name)}/stream-token`, { method: 'POST' });

/** Every segment of one track's transcript in ``source`` (all pages). */
export async function trackTranscript(name, sid, source) {
  const out = [];
  let cursor;
  do {
    const page = await request(`/v1/rooms/${enc(name)}/tracks/${enc(sid)}/transcript`, {
      params: { source, limit: 1000, cursor },
    });
    out.push(...page.segments);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

/** Download an export through the API (a plain link could not carry the token). */
export async function download(name, fmt, source) {
  const res = await request(`/v1/rooms/${enc(name)}/transcript.${fmt}`, {
    params: { source },
    raw: true,
  });
  const blob = await res.blob();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = `${name}.${source}.${fmt}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
