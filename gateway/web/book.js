// A book's page: its metadata, files to download, where each device is in it, the
// reader's own record (status, rating, favourite) and shelves.

import * as api from './api.js';
import { h, field, main, toast, percent, size, when, rerender } from './ui.js';

const STATUS = [['', 'No status'], ['want_to_read', 'Want to read'], ['reading', 'Reading'], ['finished', 'Finished'], ['abandoned', 'Abandoned']];

async function download(b, f) {
  try {
    const blob = await api.blob(`/v1/books/${b.id}/file?format=${f.format}`);
    const a = h('a', { href: URL.createObjectURL(blob), download: `${b.title}.${f.format === 'kepub' ? 'kepub.epub' : f.format}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (e) { toast(e.message); }
}

/// The metadata form for owners and editors of the book's library: only what changed is
/// sent, stamped with this browser's device and time so shared edits merge field by field.
function editor(b, onSaved) {
  const text = (name, value, attrs) => h('input', { name, value: value ?? '', ...(attrs || {}) });
  const f = {
    title: text('title', b.title, { required: true, maxlength: 1024 }),
    authors: text('authors', (b.authors || []).join(', ')),
    series: text('series', b.series),
    series_index: text('series_index', b.series_index, { type: 'number', step: 'any', min: 0 }),
    publisher: text('publisher', b.publisher),
    published: text('published', b.published, { placeholder: 'YYYY or YYYY-MM-DD' }),
    language: text('language', b.language, { placeholder: 'en' }),
    tags: text('tags', (b.tags || []).join(', ')),
    description: h('textarea', { name: 'description', rows: 6 }, b.description || ''),
  };
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', hidden: true, onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const next = {
      title: f.title.value.trim(), authors: list(f.authors.value), series: f.series.value.trim() || null,
      series_index: f.series_index.value === '' ? null : Number(f.series_index.value),
      publisher: f.publisher.value.trim() || null, published: f.published.value.trim() || null,
      language: f.language.value.trim() || null, tags: list(f.tags.value),
      description: f.description.value.trim() || null,
    };
    const was = { ...b, series: b.series ?? null, series_index: b.series_index ?? null, publisher: b.publisher ?? null,
      published: b.published ?? null, language: b.language ?? null, description: b.description ?? null };
    const body = {};
    for (const [k, v] of Object.entries(next)) {
      if (JSON.stringify(v) !== JSON.stringify(was[k])) body[k] = v;
    }
    if (Object.keys(body).length === 0) { form.hidden = true; return; }
    body.client_ts = new Date().toISOString();
    try {
      await api.call('PATCH', `/v1/books/${b.id}`, body);
      toast('Saved');
      onSaved();
    } catch (e) { error.textContent = e.message; }
  } },
  h('h2', {}, 'Edit details'),
  field('Title', f.title), field('Authors (comma between names)', f.authors),
  h('div', { class: 'row2' }, field('Series', f.series), field('Number in series', f.series_index)),
  h('div', { class: 'row2' }, field('Publisher', f.publisher), field('Published', f.published), field('Language', f.language)),
  field('Tags (comma between tags)', f.tags), field('Description', f.description), error,
  h('button', { type: 'submit', class: 'primary' }, 'Save details'), ' ',
  h('button', { type: 'button', onclick: () => { form.hidden = true; } }, 'Cancel'));
  return form;
}

export async function show(id) {
  const [b, progress, devices, shelves, mine, libraries] = await Promise.all([
    api.call('GET', `/v1/books/${id}`),
    api.call('GET', `/v1/books/${id}/progress`),
    api.call('GET', '/v1/devices').then((r) => r.items),
    api.call('GET', '/v1/shelves').then((r) => r.items),
    api.call('GET', `/v1/books/${id}/mine`).catch(() => null),
    api.call('GET', '/v1/libraries').then((r) => r.items),
  ]);
  const role = (libraries.find((l) => l.id === b.library_id) || {}).role;
  const form = ['owner', 'editor'].includes(role) ? editor(b, () => rerender()) : null;
  const names = new Map(devices.map((d) => [d.id, d.name]));
  const m = main();
  document.title = `${b.title} · Dogear`;
  const cover = h('div', { class: 'bigcover' });
  if (b.has_cover) {
    api.blob(`/v1/books/${b.id}/cover?size=full`).then((bl) => {
      cover.append(h('img', { src: URL.createObjectURL(bl), alt: `Cover of ${b.title}` }));
    }).catch(() => {});
  } else {
    cover.append(h('span', { class: 'nocover' }, b.title.slice(0, 1)));
  }
  const readable = b.formats.some((f) => ['epub', 'kepub', 'pdf', 'cbz'].includes(f.format));
  const facts = h('dl', { class: 'facts' });
  const fact = (k, v) => { if (v) facts.append(h('dt', {}, k), h('dd', {}, v)); };
  fact('Authors', b.authors.map((a) => h('a', { href: '/library?author=' + encodeURIComponent(a) }, a)).flatMap((x, i) => (i ? [', ', x] : [x])));
  if (b.series) fact('Series', [h('a', { href: '/library?series=' + encodeURIComponent(b.series) }, b.series), b.series_index != null ? ` #${b.series_index}` : '']);
  fact('Publisher', b.publisher);
  fact('Published', b.published);
  fact('Language', (b.languages && b.languages.length ? b.languages : [b.language]).filter(Boolean).join(', '));
  if (b.tags && b.tags.length) fact('Tags', b.tags.map((t) => h('a', { href: '/library?tag=' + encodeURIComponent(t), class: 'tag' }, t)));
  fact('Identifiers', Object.entries(b.identifiers || {}).map(([k, v]) => `${k}: ${v}`).join(' · '));
  fact('Added', when(b.added_at));

  const files = h('ul', { class: 'files' }, b.formats.map((f) => h('li', {},
    h('button', { type: 'button', onclick: () => download(b, f) }, `Download ${f.format.toUpperCase()}`), ` ${size(f.size)}`)));

  // Where each device is.
  const state = progress.state;
  const places = h('table', { class: 'places' }, h('caption', {}, 'Progress by device'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Device'), h('th', { scope: 'col' }, 'Position'), h('th', { scope: 'col' }, 'When'))),
    h('tbody', {}, progress.devices.length === 0
      ? h('tr', {}, h('td', { colspan: 3 }, 'Not started on any device.'))
      : progress.devices.map((d) => h('tr', {},
        h('td', {}, names.get(d.device_id) || 'Removed device', state && state.device_id === d.device_id ? ' (furthest)' : ''),
        h('td', {}, percent(d.percent)), h('td', {}, when(d.client_ts))))));

  // The reader's own record.
  const status = h('select', { name: 'status' }, STATUS.map(([v, t]) => h('option', { value: v, selected: mine && (mine.status || '') === v }, t)));
  const rating = h('select', { name: 'rating' }, h('option', { value: '' }, 'Not rated'),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => h('option', { value: n / 2, selected: mine && mine.rating === n / 2 }, `${n / 2} ★`)));
  const fav = h('input', { type: 'checkbox', name: 'favourite', checked: mine && mine.favourite });
  const patch = async (body) => {
    try { await api.call('PATCH', `/v1/books/${id}/mine`, body); toast('Saved'); } catch (e) { toast(e.message); }
  };
  status.addEventListener('change', () => patch({ status: status.value || null }));
  rating.addEventListener('change', () => patch({ rating: rating.value ? Number(rating.value) : null }));
  fav.addEventListener('change', () => patch({ favourite: fav.checked }));

  const shelfBoxes = h('fieldset', { class: 'shelfboxes' }, h('legend', {}, 'Shelves'),
    shelves.length === 0 ? h('p', { class: 'hint' }, 'No shelves yet: make one in the library.') : null,
    shelves.map((s) => {
      const box = h('input', { type: 'checkbox', checked: s.book_ids.includes(id) });
      box.addEventListener('change', async () => {
        try {
          await api.call(box.checked ? 'PUT' : 'DELETE', `/v1/shelves/${s.id}/books/${id}`);
          toast(box.checked ? `On “${s.name}”` : `Off “${s.name}”`);
        } catch (e) { box.checked = !box.checked; toast(e.message); }
      });
      return h('label', { class: 'check' }, box, ' ', s.name);
    }));

  m.append(h('article', { class: 'bookpage' },
    cover,
    h('div', { class: 'about' },
      h('h1', {}, b.title), b.subtitle ? h('p', { class: 'subtitle' }, b.subtitle) : null,
      h('p', { class: 'actions' },
        readable ? h('a', { class: 'button primary', href: `/reader/${b.id}` }, state ? `Continue reading (${percent(state.percent)})` : 'Read') : null,
        form ? ' ' : null,
        form ? h('button', { type: 'button', onclick: () => { form.hidden = false; form.querySelector('input').focus(); } }, 'Edit details') : null),
      form,
      facts,
      b.description ? h('div', { class: 'description' }, h('h2', {}, 'Description'), h('p', {}, textOf(b.description))) : null,
      h('h2', {}, 'Files'), files,
      places,
      h('h2', {}, 'Yours'),
      h('div', { class: 'mine' }, field('Status', status), field('Rating', rating), h('label', { class: 'check' }, fav, ' Favourite')),
      shelfBoxes)));
}

/// A description as text: Calibre stores HTML, shown here without any of its markup.
function textOf(html) {
  const doc = new DOMParser().parseFromString(html, 'text/html');
  return doc.body.textContent || '';
}
