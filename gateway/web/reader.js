// The reader. EPUB: each spine document, made safe by the server, in a sandboxed frame
// (no script runs in it), laid out in columns one screen wide; the place is kept to the
// element at the top of the page, and as a percentage by bytes of the spine (how the Kobo
// and KOReader sides place a percentage too). PDF and CBZ: one page image at a time, the
// page number as the place. Positions go out over the live socket; another device moving
// ahead raises an offer to continue from there.

import * as api from './api.js';
import * as sync from './sync.js';
import { h, main, percent as pct, debounce } from './ui.js';

const THEMES = {
  light: { bg: '#fdfdfb', fg: '#1d1d1b', link: '#1f5f8b' },
  sepia: { bg: '#f4ecd8', fg: '#3b2f20', link: '#7a4b12' },
  dark: { bg: '#121212', fg: '#d8d6d0', link: '#8ab4f8' },
};

function setting(key, fallback) {
  const v = localStorage.getItem('dogear.' + key);
  return v === null ? fallback : v;
}

function parseLocator(s) {
  if (!s) return null;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' && v.web ? v.web : null;
  } catch { return null; }
}

export async function show(id) {
  const [info, progress, devices] = await Promise.all([
    api.call('GET', `/v1/books/${id}/reader`),
    api.call('GET', `/v1/books/${id}/progress`),
    api.call('GET', '/v1/devices').then((r) => r.items),
  ]);
  const names = new Map(devices.map((d) => [d.id, d.name]));
  const myDevice = sync.device();
  document.title = `${info.title} · Dogear`;
  document.body.classList.add('reading');
  const m = main();

  const where = h('span', { class: 'where', 'aria-live': 'polite' });
  const tocButton = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': 'toc' }, 'Table of contents');
  const setButton = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': 'settings' }, 'Reading settings');
  const prevZone = h('button', { type: 'button', class: 'zone prev', 'aria-label': 'Previous page' }, h('span', { 'aria-hidden': 'true' }, '‹'));
  const nextZone = h('button', { type: 'button', class: 'zone next', 'aria-label': 'Next page' }, h('span', { 'aria-hidden': 'true' }, '›'));
  const stage = h('div', { class: 'stage' });
  const offerText = h('p', {});
  const offerYes = h('button', { type: 'button', class: 'primary' }, 'Continue');
  const offerNo = h('button', { type: 'button' }, 'Stay here');
  const offer = h('div', { class: 'offer', role: 'alertdialog', 'aria-label': 'Another device is further on', hidden: true }, offerText, offerYes, ' ', offerNo);
  const toc = h('nav', { id: 'toc', class: 'panel', 'aria-label': 'Contents', hidden: true });
  const settings = h('div', { id: 'settings', class: 'panel', hidden: true });
  const view = h('div', { class: 'reader' },
    h('div', { class: 'rbar' },
      h('a', { href: `/books/${id}`, class: 'back' }, '← ', h('span', { class: 'visually-hidden' }, 'Back to '), info.title),
      where, tocButton, setButton),
    h('div', { class: 'viewport' }, stage, prevZone, nextZone),
    offer, toc, settings);
  m.append(view);

  // Settings: theme, text size, line spacing; kept in this browser.
  let theme = setting('theme', 'light');
  let fontSize = Number(setting('fontSize', '100'));
  let lineHeight = setting('lineHeight', '1.5');
  const themeRadios = Object.keys(THEMES).map((t) => {
    const r = h('input', { type: 'radio', name: 'theme', value: t, checked: t === theme });
    r.addEventListener('change', () => { theme = t; localStorage.setItem('dogear.theme', t); applySettings(); });
    return h('label', { class: 'check' }, r, ' ', t[0].toUpperCase() + t.slice(1));
  });
  const sizeLabel = h('span', { 'aria-live': 'polite' }, `${fontSize} %`);
  const lineSel = h('select', { id: 'line-height' }, ['1.2', '1.35', '1.5', '1.7', '2'].map((v) => h('option', { value: v, selected: v === lineHeight }, v)));
  lineSel.addEventListener('change', () => { lineHeight = lineSel.value; localStorage.setItem('dogear.lineHeight', lineHeight); applySettings(); });
  const changeSize = (d) => {
    fontSize = Math.max(60, Math.min(250, fontSize + d));
    localStorage.setItem('dogear.fontSize', String(fontSize));
    sizeLabel.textContent = `${fontSize} %`;
    applySettings();
  };
  settings.append(
    h('fieldset', {}, h('legend', {}, 'Theme'), themeRadios),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => changeSize(-10) }, 'Smaller text'), sizeLabel,
      h('button', { type: 'button', onclick: () => changeSize(10) }, 'Larger text')),
    h('div', { class: 'field' }, h('label', { for: 'line-height' }, 'Line spacing'), lineSel));
  const toggle = (button, panel) => {
    const open = panel.hidden;
    for (const [b, p] of [[tocButton, toc], [setButton, settings]]) { p.hidden = true; b.setAttribute('aria-expanded', 'false'); }
    panel.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) { const f = panel.querySelector('button, input, select, a'); if (f) f.focus(); }
  };
  tocButton.addEventListener('click', () => toggle(tocButton, toc));
  setButton.addEventListener('click', () => toggle(setButton, settings));

  const engine = info.format === 'pdf' || info.format === 'cbz' ? pages(info, stage) : epub(info, stage);
  // A new token for the book's parts when the one in hand is refused.
  engine.renew = async () => {
    const fresh = await api.call('GET', `/v1/books/${id}/reader`);
    info.base = fresh.base;
    info.token = fresh.token;
  };
  engine.onmove = () => {
    where.textContent = engine.label();
    save();
  };
  let lastWritten = null;
  const save = debounce(() => {
    const p = engine.percent();
    const loc = engine.locator();
    if (lastWritten && lastWritten.loc === loc) return;
    const rewind = lastWritten && engine.jumped && p < lastWritten.p;
    lastWritten = { p, loc };
    engine.jumped = false;
    sync.write(id, p, loc, { rewind });
  }, 800);

  // The table of contents.
  if (engine.toc().length === 0) {
    toc.append(h('p', { class: 'hint' }, 'This book has no table of contents.'));
  } else {
    toc.append(h('ol', {}, engine.toc().map((t) => h('li', { style: null, class: 'depth' + Math.min(t.depth, 4) },
      h('button', { type: 'button', class: 'link', onclick: () => { toggle(tocButton, toc); engine.jumped = true; engine.goHref(t.href); } }, t.title)))));
  }

  function applySettings() {
    document.documentElement.dataset.theme = theme;
    view.dataset.theme = theme;
    engine.style({ theme: THEMES[theme], fontSize, lineHeight });
  }

  const offerFor = (state) => {
    if (!state || state.book_id !== id || state.device_id === myDevice) return;
    if (state.percent <= engine.percent() + 0.5) return;
    const name = names.get(state.device_id) || 'another device';
    offerText.textContent = `Continue from ${pct(state.percent)} (${name})?`;
    offer.hidden = false;
    offerYes.onclick = async () => {
      offer.hidden = true;
      await engine.goState(state);
      // The reader is now at that place: it is written as such (the page's own start
      // may be a little before it), so this device holds the place from here on.
      const loc = engine.locator();
      const p = Math.max(engine.percent(), state.percent);
      lastWritten = { p, loc };
      engine.jumped = false;
      sync.write(id, p, loc);
    };
    offerNo.onclick = () => { offer.hidden = true; };
    offerYes.focus({ preventScroll: true });
  };
  const unlisten = sync.listen(async (msg) => {
    if (msg.type !== 'progress' || !msg.state || msg.state.book_id !== id) return;
    if (!names.has(msg.state.device_id)) {
      try { for (const d of (await api.call('GET', '/v1/devices')).items) names.set(d.id, d.name); } catch { /* keep going */ }
    }
    offerFor(msg.state);
  });

  const onKey = (ev) => {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) return;
    if (['ArrowRight', 'PageDown', ' '].includes(ev.key) && !(t && t.tagName === 'BUTTON' && ev.key === ' ')) { ev.preventDefault(); engine.next(); }
    else if (['ArrowLeft', 'PageUp'].includes(ev.key)) { ev.preventDefault(); engine.prev(); }
    else if (ev.key === 'Escape') { for (const [b, p] of [[tocButton, toc], [setButton, settings]]) { p.hidden = true; b.setAttribute('aria-expanded', 'false'); } offer.hidden = true; }
  };
  document.addEventListener('keydown', onKey);
  engine.onkey = onKey;
  prevZone.addEventListener('click', () => engine.prev());
  nextZone.addEventListener('click', () => engine.next());
  let touch = null;
  const onTouchStart = (ev) => { touch = ev.touches[0] ? { x: ev.touches[0].clientX, y: ev.touches[0].clientY } : null; };
  const onTouchEnd = (ev) => {
    const t = ev.changedTouches[0];
    if (!touch || !t) return;
    const dx = t.clientX - touch.x;
    if (Math.abs(dx) > 40 && Math.abs(dx) > Math.abs(t.clientY - touch.y)) { if (dx < 0) engine.next(); else engine.prev(); }
    touch = null;
  };
  stage.addEventListener('touchstart', onTouchStart, { passive: true });
  stage.addEventListener('touchend', onTouchEnd);
  engine.ontouch = [onTouchStart, onTouchEnd];
  const onResize = debounce(() => engine.relayout(), 150);
  window.addEventListener('resize', onResize);

  // Where to open: this browser's own place; another device further on is offered.
  const mine = progress.devices.find((d) => d.device_id === myDevice);
  const canonical = progress.state;
  let start = null;
  if (canonical && canonical.device_id === myDevice) start = canonical;
  else if (mine) start = { ...mine, book_id: id };
  else if (canonical) start = canonical;
  applySettings();
  await engine.open(start);
  lastWritten = { p: engine.percent(), loc: engine.locator() };
  where.textContent = engine.label();
  if (canonical && mine && canonical.device_id !== myDevice) offerFor({ ...canonical, book_id: id });

  return () => {
    unlisten();
    document.removeEventListener('keydown', onKey);
    window.removeEventListener('resize', onResize);
    document.documentElement.dataset.theme = theme;
  };
}

/// EPUB: one spine document at a time in a sandboxed frame, paginated in columns.
function epub(info, stage) {
  const frame = h('iframe', { title: 'Book text', sandbox: 'allow-same-origin', class: 'page' });
  stage.append(frame);
  const spine = info.spine.map((d, i) => ({ ...d, i })).filter((d) => d.size > 0);
  const total = spine.reduce((s, d) => s + d.size, 0) || 1;
  const before = [];
  spine.reduce((s, d) => { before.push(s); return s + d.size; }, 0);
  let at = 0; // index into `spine`
  let page = 0;
  let count = 1;
  let look = null;
  let expected = null;
  let margin = 24;
  const self = { jumped: false };

  const doc = () => frame.contentDocument;
  // The frame holds one of the book's documents (not the blank page it starts with).
  const loaded = () => !!(doc() && doc().body && doc().location.pathname.startsWith(new URL(info.base, location.href).pathname));
  const width = () => frame.clientWidth || 1;
  const scroller = () => doc() && (doc().scrollingElement || doc().documentElement);
  const url = (href) => info.base + 'epub/' + href.split('/').map(encodeURIComponent).join('/');

  function inject() {
    const d = doc();
    if (!loaded() || !d.head || !look) return;
    const W = width();
    const H = frame.clientHeight || 1;
    // Two columns to a screen on a wide one, like an open book.
    const cols = W >= 1000 && W > H ? 2 : 1;
    const gap = Math.round(Math.min(64, Math.max(16, W * (cols === 2 ? 0.035 : 0.06))));
    const colWidth = Math.floor((W - 2 * gap * cols) / cols);
    margin = gap;
    const css = `
      html { margin: 0 !important; padding: 0 !important; height: ${H}px !important; overflow: hidden !important;
        background: ${look.theme.bg} !important; font-size: ${look.fontSize}% !important; }
      body { margin: 0 !important; padding: 24px ${gap}px !important; box-sizing: border-box !important;
        height: ${H}px !important; width: ${W}px !important; max-width: none !important;
        column-width: ${colWidth}px !important; column-count: ${cols} !important; column-gap: ${2 * gap}px !important; column-fill: auto !important;
        background: ${look.theme.bg} !important; color: ${look.theme.fg} !important;
        line-height: ${look.lineHeight} !important; overflow-wrap: break-word; }
      body * { color: inherit; background-color: transparent !important; }
      p, li, blockquote, dd, td { line-height: ${look.lineHeight} !important; }
      a, a * { color: ${look.theme.link} !important; }
      img, svg, video, table { max-width: 100% !important; }
      img, svg, video { max-height: ${H - 48}px !important; object-fit: contain; break-inside: avoid; }
      pre { white-space: pre-wrap; }`;
    let s = d.getElementById('dogear-look');
    if (!s) {
      s = d.createElement('style');
      s.id = 'dogear-look';
      d.head.append(s);
    }
    s.textContent = css;
  }

  function measure() {
    const sc = scroller();
    if (!sc) return;
    count = Math.max(1, Math.ceil((sc.scrollWidth - 2) / width()));
    page = Math.min(page, count - 1);
  }

  function scrollTo() {
    const sc = scroller();
    if (sc) sc.scrollLeft = page * width();
  }

  /// The place at the top of the page: the path of child indexes from <body> to the
  /// element holding it, and where in that element's text (node and offset) it is.
  function placeHere() {
    const d = doc();
    if (!d || !d.body) return null;
    let node = null;
    let offset = 0;
    if (d.caretRangeFromPoint) {
      const r = d.caretRangeFromPoint(margin + 2, 26);
      if (r && r.startContainer.nodeType === 3 && r.startContainer.textContent.trim()) {
        node = r.startContainer;
        offset = r.startOffset;
      }
    }
    let el = node ? node.parentElement : null;
    if (!el || el === d.body) {
      node = null;
      el = null;
      for (const e of d.body.querySelectorAll('p, h1, h2, h3, h4, h5, h6, li, div, img, blockquote, pre, table')) {
        const rect = e.getBoundingClientRect();
        if (rect.right > 0 && rect.left < width() && rect.height > 0) { el = e; break; }
      }
    }
    if (!el || !d.body.contains(el) || el === d.body) return null;
    const place = { path: '', node: node ? [...el.childNodes].indexOf(node) : null, offset: node ? offset : null };
    const path = [];
    while (el && el !== d.body) {
      path.unshift([...el.parentElement.children].indexOf(el));
      el = el.parentElement;
    }
    place.path = path.join('/');
    return place;
  }

  /// The page a place is on: the page of the exact character when the text is known.
  function pageOfPlace(place) {
    const el = find(place.path);
    if (!el) return null;
    const node = place.node != null ? el.childNodes[place.node] : null;
    if (node && node.nodeType === 3) {
      const r = doc().createRange();
      r.setStart(node, Math.min(place.offset || 0, node.length));
      r.collapse(true);
      const rect = r.getClientRects()[0] || r.getBoundingClientRect();
      if (rect && (rect.width || rect.height || rect.left)) {
        const sc = scroller();
        return Math.max(0, Math.min(count - 1, Math.floor((rect.left + sc.scrollLeft + 1) / width())));
      }
    }
    return pageOf(el);
  }

  function pageOf(el) {
    const sc = scroller();
    const rect = el.getBoundingClientRect();
    return Math.max(0, Math.min(count - 1, Math.floor((rect.left + sc.scrollLeft + 1) / width())));
  }

  function find(path) {
    const d = doc();
    if (!d || !d.body || path == null) return null;
    let el = d.body;
    for (const i of String(path).split('/').filter((x) => x !== '').map(Number)) {
      if (!el.children[i]) return el === d.body ? null : el;
      el = el.children[i];
    }
    return el === d.body ? null : el;
  }

  /// Loads spine entry `i` and places the page by `target`: {page}, {fraction}, {path},
  /// {fragment} or {end}.
  function load(i, target, retried) {
    return new Promise((resolve) => {
      at = Math.max(0, Math.min(spine.length - 1, i));
      expected = spine[at].href;
      const done = async () => {
        frame.removeEventListener('load', done);
        // The reader's token ran out (after hours of reading): a new one, then again.
        // (A refused part shows as a JSON error, or as no document at all.)
        if (!retried && (!doc() || doc().contentType !== 'text/html') && self.renew) {
          try {
            await self.renew();
            resolve(load(i, target, true));
            return;
          } catch { /* show what came */ }
        }
        settle(target);
        resolve();
      };
      frame.addEventListener('load', done);
      frame.src = url(spine[at].href);
    });
  }

  function settle(target) {
    inject();
    measure();
    const d = doc();
    if (d) {
      // Links inside the book move the reader; keys and swipes in the frame work as outside.
      d.addEventListener('click', (ev) => {
        const a = ev.target.closest && ev.target.closest('a[href]');
        if (!a) return;
        ev.preventDefault();
        const href = a.getAttribute('href');
        if (!href || /^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('//')) return;
        const abs = new URL(href, d.location.href);
        const prefix = new URL(info.base + 'epub/', location.href).pathname;
        if (!abs.pathname.startsWith(prefix)) return;
        self.jumped = true;
        self.goHref(decodeURIComponent(abs.pathname.slice(prefix.length)) + (abs.hash || ''));
      });
      if (self.onkey) d.addEventListener('keydown', self.onkey);
      if (self.ontouch) {
        d.addEventListener('touchstart', self.ontouch[0], { passive: true });
        d.addEventListener('touchend', self.ontouch[1]);
      }
    }
    if (target && target.end) page = count - 1;
    else if (target && target.page != null) page = Math.max(0, Math.min(count - 1, target.page));
    else if (target && target.place) { const p = pageOfPlace(target.place); page = p == null ? Math.floor((target.fraction || 0) * count) : p; }
    else if (target && target.fraction != null) page = Math.max(0, Math.min(count - 1, Math.floor(target.fraction * count)));
    else if (target && target.fragment) {
      const el = d && (d.getElementById(target.fragment) || d.getElementsByName(target.fragment)[0]);
      page = el ? pageOf(el) : 0;
    } else page = 0;
    scrollTo();
    self.onmove && self.onmove();
  }

  // A link followed inside the frame (where the click could not be caught) still moves
  // the reader: the new document is adopted.
  frame.addEventListener('load', () => {
    const d = doc();
    if (!d) return;
    const prefix = new URL(info.base + 'epub/', location.href).pathname;
    const path = decodeURIComponent(d.location.pathname.startsWith(prefix) ? d.location.pathname.slice(prefix.length) : '');
    if (expected !== null && path !== expected) {
      const j = spine.findIndex((s) => s.href === path);
      if (j >= 0) {
        at = j;
        expected = path;
        settle({ fragment: d.location.hash.slice(1) });
      }
    }
  });

  Object.assign(self, {
    toc: () => info.toc || [],
    async open(state) {
      const loc = state && parseLocator(state.locator);
      if (loc && loc.href) {
        const j = spine.findIndex((s) => s.href === loc.href);
        if (j >= 0) return load(j, { place: loc.path != null ? loc : null, fraction: (loc.page || 0) / Math.max(1, loc.pages || 1) });
      }
      if (state && state.percent > 0) return self.goPercent(state.percent);
      return load(0, { page: 0 });
    },
    goPercent(p) {
      const target = (p / 100) * total;
      let j = spine.length - 1;
      for (let k = 0; k < spine.length; k++) {
        if (before[k] + spine[k].size > target) { j = k; break; }
      }
      const fraction = Math.max(0, Math.min(1, (target - before[j]) / spine[j].size));
      return load(j, { fraction: p >= 100 ? 0.9999 : fraction });
    },
    goState(state) {
      self.jumped = true;
      const loc = parseLocator(state.locator);
      if (loc && loc.href) {
        const j = spine.findIndex((s) => s.href === loc.href);
        if (j >= 0) return load(j, { place: loc.path != null ? loc : null, fraction: (loc.page || 0) / Math.max(1, loc.pages || 1) });
      }
      return self.goPercent(state.percent);
    },
    goHref(href) {
      const [path, fragment] = href.split('#');
      const j = spine.findIndex((s) => s.href === path);
      if (j < 0) return Promise.resolve();
      if (j === at && doc()) { settle({ fragment }); return Promise.resolve(); }
      return load(j, { fragment });
    },
    next() {
      if (page < count - 1) { page++; scrollTo(); self.onmove(); }
      else if (at < spine.length - 1) load(at + 1, { page: 0 });
    },
    prev() {
      if (page > 0) { page--; scrollTo(); self.onmove(); }
      else if (at > 0) load(at - 1, { end: true });
    },
    percent() {
      if (at === spine.length - 1 && page === count - 1) return 100;
      return ((before[at] + spine[at].size * (page / count)) / total) * 100;
    },
    locator() {
      const place = placeHere() || {};
      return JSON.stringify({ web: { href: spine[at].href, spine: spine[at].i, path: place.path ?? null, node: place.node ?? null, offset: place.offset ?? null, page, pages: count } });
    },
    label() {
      return `${pct(self.percent())} · page ${page + 1} of ${count} in this part`;
    },
    style(l) {
      look = l;
      if (!loaded()) return;
      const place = placeHere();
      inject();
      measure();
      const p = place ? pageOfPlace(place) : null;
      page = p == null ? Math.min(page, count - 1) : p;
      scrollTo();
    },
    relayout() { self.style(look); self.onmove && self.onmove(); },
  });
  return self;
}

/// PDF and CBZ: page images from the server.
function pages(info, stage) {
  const img = h('img', { class: 'pageimg', alt: '' });
  stage.append(img);
  const total = info.pages;
  let n = 1;
  const self = { jumped: false };
  const src = (k) => {
    const w = Math.max(100, Math.min(4000, Math.round((stage.clientWidth || 800) * (window.devicePixelRatio || 1))));
    return info.base + 'page/' + k + (info.format === 'pdf' ? '?width=' + w : '');
  };
  let renewed = false;
  img.addEventListener('error', async () => {
    if (renewed || !self.renew) return;
    renewed = true;
    try { await self.renew(); img.src = src(n); } catch { /* leave it */ }
  });
  img.addEventListener('load', () => { renewed = false; });
  function showPage(k) {
    n = Math.max(1, Math.min(total, k));
    img.src = src(n);
    img.alt = `Page ${n} of ${total}`;
    if (n < total) new Image().src = src(n + 1);
    self.onmove && self.onmove();
  }
  Object.assign(self, {
    toc: () => [],
    open(state) {
      const loc = state && parseLocator(state.locator);
      if (loc && loc.page) showPage(loc.page);
      else if (state && state.percent > 0) showPage(Math.ceil((state.percent / 100) * total));
      else showPage(1);
      return new Promise((r) => { if (img.complete) r(); else { img.onload = () => r(); img.onerror = () => r(); } });
    },
    goState(state) {
      self.jumped = true;
      const loc = parseLocator(state.locator);
      showPage(loc && loc.page ? loc.page : Math.ceil((state.percent / 100) * total));
    },
    goHref() {},
    next() { if (n < total) showPage(n + 1); },
    prev() { if (n > 1) showPage(n - 1); },
    percent() { return (n / total) * 100; },
    locator() { return JSON.stringify({ web: { page: n, pages: total } }); },
    label() { return `${pct(self.percent())} · page ${n} of ${total}`; },
    style() {},
    relayout() {},
  });
  return self;
}
