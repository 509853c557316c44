// The library: a grid of covers with search as you type, filters, sort orders and paging
// by cursor (fast however many books there are); uploads by drag and drop; shelves.

import * as api from './api.js';
import { h, field, main, toast, debounce, rerender } from './ui.js';

const PAGE = 60;
const STATUS = [['', 'Any status'], ['want_to_read', 'Want to read'], ['reading', 'Reading'], ['finished', 'Finished'], ['abandoned', 'Abandoned']];
const SORTS = [['added', 'Recently added'], ['title', 'Title'], ['author', 'Author'], ['series', 'Series']];
const FORMATS = [['', 'Any format'], ['epub', 'EPUB'], ['kepub', 'KEPUB'], ['pdf', 'PDF'], ['cbz', 'CBZ']];

/// Covers are fetched with the token, when their card comes near the screen.
const covers = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    covers.unobserve(e.target);
    const img = e.target;
    api.blob(img.dataset.src).then((b) => {
      img.src = URL.createObjectURL(b);
      img.onload = () => { URL.revokeObjectURL(img.src); img.classList.add('loaded'); };
    }).catch(() => {});
  }
}, { rootMargin: '400px' });

export function card(b, label) {
  const cover = b.has_cover
    ? h('img', { alt: '', dataset: { src: `/v1/books/${b.id}/cover?size=thumb` }, width: 200, height: 300 })
    : h('span', { class: 'nocover', 'aria-hidden': 'true' }, (b.title || '?').slice(0, 1));
  const a = h('a', { href: `/books/${b.id}`, class: 'book', 'aria-label': label || b.title },
    h('span', { class: 'cover' }, cover),
    h('span', { class: 'title' }, b.title),
    h('span', { class: 'authors' }, (b.authors || []).join(', ')));
  if (cover.tagName === 'IMG') covers.observe(cover);
  return h('li', {}, a);
}

function select(label, options, value) {
  const s = h('select', { name: label.toLowerCase() }, options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)));
  return [s, field(label, s)];
}

async function facetOptions(kind, any) {
  try {
    const list = (await api.call('GET', `/v1/facets/${kind}`)).items;
    return [['', any], ...list.slice(0, 2000).map((f) => [f.value, `${f.value} (${f.count})`])];
  } catch {
    return [['', any]];
  }
}

export async function show(opts) {
  const params = new URLSearchParams(location.search);
  const state = {
    q: params.get('q') || '',
    sort: params.get('sort') || 'added',
    order: params.get('order') || (params.get('sort') ? 'asc' : 'desc'),
    author: params.get('author') || '',
    series: params.get('series') || '',
    tag: params.get('tag') || '',
    format: params.get('format') || '',
    status: params.get('status') || '',
    library_id: params.get('library_id') || '',
    shelf: opts && opts.shelf,
  };
  const m = main();
  const [libraries, shelves, authors, series, tags] = await Promise.all([
    api.call('GET', '/v1/libraries').then((r) => r.items),
    api.call('GET', '/v1/shelves').then((r) => r.items),
    facetOptions('authors', 'Any author'),
    facetOptions('series', 'Any series'),
    facetOptions('tags', 'Any tag'),
  ]);
  const shelf = state.shelf ? shelves.find((s) => s.id === state.shelf) : null;

  const search = h('input', { type: 'search', name: 'q', value: state.q, placeholder: 'Title, author, series, tag…', autocomplete: 'off' });
  const [sortSel, sortField] = select('Sort', SORTS, state.sort);
  const [orderSel, orderField] = select('Order', [['asc', 'A to Z, oldest first'], ['desc', 'Z to A, newest first']], state.order);
  const [authorSel, authorField] = select('Author', authors, state.author);
  const [seriesSel, seriesField] = select('Series', series, state.series);
  const [tagSel, tagField] = select('Tag', tags, state.tag);
  const [formatSel, formatField] = select('Format', FORMATS, state.format);
  const [statusSel, statusField] = select('Status', STATUS, state.status);
  const [libSel, libField] = select('Library', [['', 'All libraries'], ...libraries.map((l) => [l.id, l.name])], state.library_id);

  const grid = h('ul', { class: 'grid', 'aria-label': 'Books' });
  const more = h('button', { type: 'button', class: 'more', hidden: true }, 'More books');
  const count = h('p', { class: 'hint', 'aria-live': 'polite' });
  const uploads = h('ul', { class: 'uploads', 'aria-label': 'Uploads' });
  const fileInput = h('input', { type: 'file', multiple: true, accept: '.epub,.kepub,.pdf,.cbz', class: 'visually-hidden', id: 'upload-input' });

  let cursor = null;
  let generation = 0;
  let shown = 0;

  async function load(reset) {
    const gen = reset ? ++generation : generation;
    if (reset) { cursor = null; shown = 0; grid.replaceChildren(); }
    more.hidden = true;
    let res;
    try {
      if (shelf) {
        res = await api.call('GET', `/v1/shelves/${shelf.id}/books` + api.qs({ limit: PAGE, cursor }));
      } else {
        res = await api.call('GET', '/v1/books' + api.qs({
          q: state.q, sort: state.sort, order: state.order, author: state.author, series: state.series,
          tag: state.tag, format: state.format, status: state.status, library_id: state.library_id,
          limit: PAGE, cursor,
        }));
      }
    } catch (e) {
      if (gen === generation) count.textContent = e.message;
      return;
    }
    if (gen !== generation || !alive) return;
    // Which query the grid shows (for tests and benchmarks that wait for a result).
    grid.dataset.query = location.search;
    for (const b of res.items) grid.append(card(b));
    shown += res.items.length;
    cursor = res.next_cursor;
    more.hidden = !cursor;
    count.textContent = shown === 0 ? 'No books here yet. Drop EPUB, PDF or CBZ files on this page to add some.'
      : `${shown}${cursor ? '+' : ''} book${shown === 1 ? '' : 's'}`;
  }

  // Set false when the page is left: a search typed just before must not touch the next one.
  let alive = true;
  function apply() {
    if (!alive) return;
    Object.assign(state, {
      q: search.value.trim(), sort: sortSel.value, order: orderSel.value, author: authorSel.value,
      series: seriesSel.value, tag: tagSel.value, format: formatSel.value, status: statusSel.value,
      library_id: libSel.value,
    });
    const q = api.qs({ q: state.q, sort: state.sort !== 'added' ? state.sort : '', order: state.order !== (state.sort === 'added' ? 'desc' : 'asc') ? state.order : '',
      author: state.author, series: state.series, tag: state.tag, format: state.format, status: state.status, library_id: state.library_id });
    history.replaceState(null, '', location.pathname + q);
    load(true);
  }
  search.addEventListener('input', debounce(apply, 200));
  for (const s of [sortSel, orderSel, authorSel, seriesSel, tagSel, formatSel, statusSel, libSel]) {
    s.addEventListener('change', () => {
      if (s === sortSel) orderSel.value = sortSel.value === 'added' ? 'desc' : 'asc';
      apply();
    });
  }
  more.addEventListener('click', () => load(false));
  const sentinel = h('div', { class: 'sentinel' });
  const scroller = new IntersectionObserver((e) => { if (e[0].isIntersecting && cursor && !more.hidden) load(false); }, { rootMargin: '600px' });
  scroller.observe(sentinel);

  // Uploads: drop anywhere on the page, or choose files.
  const personal = libraries.find((l) => l.kind === 'personal');
  async function send(files) {
    for (const f of files) {
      const row = h('li', {}, h('span', { class: 'name' }, f.name), ' ', h('span', { class: 'state' }, 'uploading'));
      uploads.append(row);
      const stateEl = row.querySelector('.state');
      try {
        const { job_id } = await api.upload(f, state.library_id || (personal && personal.id));
        stateEl.textContent = 'queued';
        for (;;) {
          await new Promise((r) => setTimeout(r, 700));
          const j = await api.call('GET', `/v1/imports/${job_id}`);
          stateEl.textContent = j.state;
          if (j.state === 'done') {
            if (j.duplicate_of) {
              stateEl.textContent = 'already in the library';
              row.append(' ', h('a', { href: `/books/${j.duplicate_of}` }, 'open'));
            } else {
              stateEl.textContent = 'added';
              row.append(' ', h('a', { href: `/books/${j.book_id}` }, 'open'));
            }
            break;
          }
          if (j.state === 'failed') {
            stateEl.textContent = 'failed: ' + (j.error ? j.error.message : 'unknown error');
            row.classList.add('error');
            break;
          }
        }
      } catch (e) {
        stateEl.textContent = 'failed: ' + e.message;
        row.classList.add('error');
      }
    }
    load(true);
  }
  fileInput.addEventListener('change', () => { send([...fileInput.files]); fileInput.value = ''; });
  const drop = h('div', { class: 'dropzone', hidden: true }, 'Drop books to upload');
  const onDragOver = (ev) => {
    if (![...(ev.dataTransfer?.types || [])].includes('Files')) return;
    ev.preventDefault();
    drop.hidden = false;
  };
  const onDragLeave = (ev) => { if (!ev.relatedTarget) drop.hidden = true; };
  const onDrop = (ev) => {
    if (!ev.dataTransfer?.files?.length) return;
    ev.preventDefault();
    drop.hidden = true;
    send([...ev.dataTransfer.files]);
  };
  document.addEventListener('dragover', onDragOver);
  document.addEventListener('dragleave', onDragLeave);
  document.addEventListener('drop', onDrop);

  // Shelves.
  const shelfList = h('ul', { class: 'shelves' },
    h('li', {}, h('a', { href: '/library', 'aria-current': shelf ? null : 'page' }, 'All books')),
    shelves.map((s) => h('li', {}, h('a', { href: `/shelves/${s.id}`, 'aria-current': shelf && shelf.id === s.id ? 'page' : null }, `${s.name} (${s.book_ids.length})`))));
  const newShelf = h('input', { name: 'shelf', maxlength: 200, required: true });
  const shelfForm = h('form', { class: 'inline', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const s = await api.call('POST', '/v1/shelves', { name: newShelf.value.trim() });
      toast(`Shelf “${s.name}” made`);
      rerender();
    } catch (e) { toast(e.message); }
  } }, field('New shelf', newShelf), h('button', { type: 'submit' }, 'Add shelf'));

  let shelfTools = null;
  if (shelf) {
    const name = h('input', { name: 'name', value: shelf.name, required: true, maxlength: 200 });
    shelfTools = h('form', { class: 'inline', onsubmit: async (ev) => {
      ev.preventDefault();
      try { await api.call('PATCH', `/v1/shelves/${shelf.id}`, { name: name.value.trim() }); rerender(); } catch (e) { toast(e.message); }
    } }, field('Shelf name', name), h('button', { type: 'submit' }, 'Rename'),
    h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!confirm(`Delete the shelf “${shelf.name}”? Its books stay in the library.`)) return;
      try { await api.call('DELETE', `/v1/shelves/${shelf.id}`); history.pushState(null, '', '/library'); rerender(); } catch (e) { toast(e.message); }
    } }, 'Delete shelf'));
  }

  // On a phone the sort and filters fold away until asked for.
  const filters = shelf ? h('div', { class: 'filters' }, shelfTools)
    : h('details', { class: 'filterbox', open: window.matchMedia('(min-width: 701px)').matches },
      h('summary', {}, 'Sort and filter'),
      h('div', { class: 'filters' }, sortField, orderField, authorField, seriesField, tagField, formatField, statusField, libraries.length > 1 ? libField : null));
  m.append(
    h('div', { class: 'library' },
      h('aside', { class: 'side', 'aria-label': 'Shelves' }, h('h2', {}, 'Shelves'), shelfList, shelfForm),
      h('section', { class: 'books' },
        h('div', { class: 'bar' },
          h('h1', {}, shelf ? shelf.name : 'Library'),
          shelf ? null : h('div', { class: 'search' }, field('Search', search)),
          fileInput, h('label', { for: 'upload-input', class: 'button' }, 'Upload books')),
        filters, uploads, count, grid, more, sentinel)),
    drop);
  // What the reader is in the middle of, above everything else (the plain library only).
  const plain = !shelf && !state.q && !state.author && !state.series && !state.tag && !state.format && !state.status;
  if (plain) {
    api.call('GET', '/v1/books' + api.qs({ status: 'reading', limit: 12, library_id: state.library_id })).then((r) => {
      if (!alive || r.items.length === 0) return;
      const row = h('section', { class: 'ondeck', 'aria-labelledby': 'ondeck-h' },
        h('h2', { id: 'ondeck-h' }, 'Continue reading'),
        h('ul', { class: 'grid row' }, r.items.map((b) => {
          const li = card(b, `Continue ${b.title}`);
          li.querySelector('a').href = `/reader/${b.id}`;
          return li;
        })));
      filters.before(row);
    }).catch(() => {});
  }
  await load(true);
  return () => {
    alive = false;
    scroller.disconnect();
    document.removeEventListener('dragover', onDragOver);
    document.removeEventListener('dragleave', onDragLeave);
    document.removeEventListener('drop', onDrop);
  };
}
