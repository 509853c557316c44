// The API client: the access token lives here in memory only; the refresh token is an
// HttpOnly cookie the page never sees, sent only to the refresh and logout routes.

const SESSION = { 'X-Dogear-Session': 'cookie' };
let access = null;
let me = null;
let refreshing = null;
let timer = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function user() { return me; }
export function token() { return access; }

function schedule(expiresIn) {
  clearTimeout(timer);
  // Renew a minute before the token runs out (at least every 30 s).
  const ms = Math.max(30, (expiresIn || 900) - 60) * 1000;
  timer = setTimeout(() => { refresh().catch(() => {}); }, ms);
}

async function decode(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!res.ok) {
    const e = body && body.error ? body.error : { code: 'http_' + res.status, message: text || res.statusText };
    throw new ApiError(res.status, e.code, e.message);
  }
  return body;
}

async function adopt(session) {
  access = session.access_token;
  // The cookie is out of the page's reach: this says there is one worth presenting.
  localStorage.setItem('dogear.session', '1');
  schedule(session.expires_in);
  me = await call('GET', '/v1/users/me');
  return me;
}

export async function signIn(username, password) {
  const res = await fetch('/v1/auth/login', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', ...SESSION },
    body: JSON.stringify({ username, password }),
  });
  return adopt(await decode(res));
}

export async function register(username, password, email) {
  const body = { username, password };
  if (email) body.email = email;
  const res = await fetch('/v1/auth/register', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', ...SESSION },
    body: JSON.stringify(body),
  });
  return adopt(await decode(res));
}

/// A new access token from the cookie. Tabs take turns (a refresh token is used once),
/// and concurrent callers in one tab share one request.
export function refresh() {
  if (refreshing) return refreshing;
  const run = async () => {
    const res = await fetch('/v1/auth/refresh', {
      method: 'POST', credentials: 'same-origin', headers: SESSION,
    });
    return adopt(await decode(res));
  };
  const locked = navigator.locks ? () => navigator.locks.request('dogear-refresh', run) : run;
  refreshing = locked().finally(() => { refreshing = null; });
  return refreshing;
}

/// The session this browser already has, if any.
export async function restore() {
  if (!localStorage.getItem('dogear.session')) return null;
  try {
    return await refresh();
  } catch (e) {
    if (e instanceof ApiError && e.status < 500) localStorage.removeItem('dogear.session');
    return null;
  }
}

export async function signOut() {
  clearTimeout(timer);
  try {
    await fetch('/v1/auth/logout', { method: 'POST', credentials: 'same-origin', headers: SESSION });
  } finally {
    access = null;
    me = null;
    localStorage.removeItem('dogear.session');
  }
}

async function send(method, path, body, headers) {
  const h = { ...(headers || {}) };
  if (access) h.Authorization = 'Bearer ' + access;
  const init = { method, headers: h, credentials: 'same-origin' };
  if (body !== undefined && body !== null) {
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      init.body = body;
    } else {
      h['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
  }
  let res = await fetch(path, init);
  if (res.status === 401 && access) {
    await refresh();
    h.Authorization = 'Bearer ' + access;
    res = await fetch(path, init);
  }
  return res;
}

/// A JSON call: the decoded body, or an ApiError with the server's code and message.
export async function call(method, path, body, headers) {
  return decode(await send(method, path, body, headers));
}

/// A file from an authenticated route, as a Blob (covers, downloads).
export async function blob(path) {
  const res = await send('GET', path);
  if (!res.ok) await decode(res);
  return res.blob();
}

/// Uploads one file as the raw body.
export async function upload(file, libraryId) {
  const q = libraryId ? '?library_id=' + encodeURIComponent(libraryId) : '';
  const name = encodeURIComponent(file.name);
  return call('POST', '/v1/books/upload' + q, file, {
    'Content-Disposition': `attachment; filename*=UTF-8''${name}`,
  });
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, v);
  }
  const s = p.toString();
  return s ? '?' + s : '';
}

/// A time-ordered UUID (version 7: the time in milliseconds, then random bits), for event
/// ids: one browser's successive writes then sit together in the server's event-id index,
/// where random ids put each write on an index page of its own.
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/// This browser's device for the signed-in user: made once, remembered here.
export async function device() {
  const key = 'dogear.device.' + me.id;
  const known = localStorage.getItem(key);
  const devices = (await call('GET', '/v1/devices')).items;
  if (known && devices.some((d) => d.id === known)) return known;
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? 'Firefox' : /Edg\//.test(ua) ? 'Edge'
    : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS/.test(ua) ? 'macOS'
    : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : '';
  const d = await call('POST', '/v1/devices', { name: `${browser}${os ? ' on ' + os : ''}`, kind: 'web' });
  localStorage.setItem(key, d.id);
  return d.id;
}
