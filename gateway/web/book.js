// A book's page: its metadata, files to download, where each device is in it, the
// reader's own record (status, rating, favourite) and shelves.

import * as api from './api.js';
import { h, field, main, toast, percent, size, when } from './ui.js';

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

export async function show(id) {
  const [b, progress, devices, shelves, mine] = await Promise.all([
    api.call('GET', `/v1/books/${id}`),
    api.call('GET', `/v1/books/${id}/progress`),
    api.call('GET', '/v1/devices').then((r) => r.items),
    api.call('GET', '/v1/shelves').then((r) => r.items),
    api.call('GET', `/v1/books/${id}/mine`).catch(() => null),
  ]);
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
        readable ? h('a', { class: 'button primary', href: `/reader/${b.id}` }, state ? `Continue reading (${percent(state.percent)})` : 'Read') : null),
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
