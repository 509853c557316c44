// The live connection: progress written over the WebSocket, queued while offline (in this
// browser's storage, with each write's own event id and client time, so a write sent
// twice counts once), and every other device's progress as it happens.

import * as api from './api.js';

let ws = null;
let deviceId = null;
let stopped = true;
let backoff = 500;
let retry = null;
const listeners = new Set();

function queueKey() { return 'dogear.pending.' + (api.user() ? api.user().id : ''); }

function pending() {
  try { return JSON.parse(localStorage.getItem(queueKey()) || '[]'); } catch { return []; }
}

function save(list) { localStorage.setItem(queueKey(), JSON.stringify(list)); }

export function device() { return deviceId; }
export function online() { return !!ws && ws.readyState === WebSocket.OPEN; }

/// Calls `f(message)` for every progress change and acknowledgement; returns its remover.
export function listen(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

function emit(msg) {
  for (const f of [...listeners]) {
    try { f(msg); } catch (e) { console.warn(e); }
  }
}

export function start(id) {
  deviceId = id;
  stopped = false;
  connect();
}

export function stop() {
  stopped = true;
  clearTimeout(retry);
  if (ws) ws.close(1000);
  ws = null;
}

function connect() {
  if (stopped || !api.token()) return;
  if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${proto}://${location.host}/v1/sync?device_id=${encodeURIComponent(deviceId)}&access_token=${encodeURIComponent(api.token())}`;
  const sock = new WebSocket(url);
  ws = sock;
  sock.onopen = () => {
    backoff = 500;
    flush();
    emit({ type: 'online' });
  };
  sock.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.type === 'ack') {
      save(pending().filter((w) => w.event_id !== msg.event_id));
    }
    emit(msg);
  };
  sock.onclose = () => {
    if (ws === sock) ws = null;
    emit({ type: 'offline' });
    if (stopped) return;
    clearTimeout(retry);
    retry = setTimeout(async () => {
      // The access token may have run out while the socket was down.
      try { await api.refresh(); } catch { /* offline: try again later */ }
      connect();
    }, backoff);
    backoff = Math.min(backoff * 2, 30000);
  };
}

function flush() {
  if (!online()) return;
  for (const w of pending()) ws.send(JSON.stringify({ type: 'progress', ...w }));
}

/// Writes a position: queued first, sent at once when online, again on every reconnect
/// until the server acknowledges it.
export function write(bookId, percent, locator, opts) {
  const w = {
    book_id: bookId,
    event_id: api.uuid(),
    device_id: deviceId,
    percent: Math.max(0, Math.min(100, Math.round(percent * 1000) / 1000)),
    locator,
    client_ts: new Date().toISOString(),
  };
  if (opts && opts.rewind) w.rewind = true;
  // Only the newest unsent position of a book matters.
  const list = pending().filter((p) => p.book_id !== bookId || p.sent);
  list.push(w);
  save(list.slice(-500));
  if (online()) ws.send(JSON.stringify({ type: 'progress', ...w }));
  else connect();
  return w;
}

window.addEventListener('online', () => connect());
