// Devices and apps: every device that reads with this account, revocable; connecting a
// Kobo, KOReader and OPDS catalog apps.

import * as api from './api.js';
import { h, main, toast, when, rerender } from './ui.js';
import * as sync from './sync.js';

const KINDS = { web: 'Web browser', mobile: 'Phone or tablet', desktop: 'Desktop app', kobo: 'Kobo', koreader: 'KOReader', other: 'Other', opds: 'Catalog app' };

function copyable(label, text) {
  const input = h('input', { readonly: true, value: text, 'aria-label': label, class: 'copy' });
  return h('div', { class: 'copyrow' }, input,
    h('button', { type: 'button', onclick: async () => {
      try { await navigator.clipboard.writeText(text); toast('Copied'); } catch { input.select(); }
    } }, `Copy ${label.toLowerCase()}`));
}

export async function show() {
  const m = main();
  document.title = 'Devices and apps · Dogear';
  const devices = (await api.call('GET', '/v1/devices')).items;
  const list = h('ul', { class: 'devices' }, devices.map((d) => h('li', {},
    h('span', { class: 'name' }, d.name), ' ',
    h('span', { class: 'kind' }, KINDS[d.kind] || d.kind),
    d.id === sync.device() ? h('span', { class: 'this' }, ' (this browser)') : null,
    h('span', { class: 'hint' }, ` added ${when(d.created_at)}`), ' ',
    h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${d.name}`, onclick: async () => {
      if (!confirm(`Remove “${d.name}”? It stops syncing until it is connected again.`)) return;
      try {
        await api.call('DELETE', `/v1/devices/${d.id}`);
        toast(`Removed ${d.name}`);
        if (d.id === sync.device()) {
          // This browser goes on reading as a new device.
          sync.stop();
          sync.start(await api.device());
        }
        rerender();
      } catch (e) { toast(e.message); }
    } }, 'Remove'))));

  const kobo = h('div', { class: 'result' });
  const koreader = h('div', { class: 'result' });
  const opds = h('div', { class: 'result' });
  m.append(h('h1', {}, 'Devices and apps'),
    h('section', {}, h('h2', {}, 'Your devices'), devices.length ? list : h('p', {}, 'No devices yet.')),
    h('section', { class: 'connect' }, h('h2', {}, 'Connect a Kobo'),
      h('p', {}, 'Dogear syncs your library, reading positions, shelves and highlights with a Kobo e-reader. Make a token, then on the Kobo (connected to a computer) open ',
        h('code', {}, '.kobo/Kobo/Kobo eReader.conf'), ' and replace the ', h('code', {}, 'api_endpoint'), ' line in the ', h('code', {}, '[OneStoreServices]'), ' section with the line below.'),
      h('button', { type: 'button', onclick: async () => {
        try {
          const t = await api.call('POST', '/v1/kobo/tokens', { device_name: 'Kobo' });
          kobo.replaceChildren(h('p', {}, `Token for ${t.device_name} made. The line to paste:`), copyable('Kobo line', `api_endpoint=${t.api_endpoint}`));
        } catch (e) { toast(e.message); }
      } }, 'Make a Kobo token'), kobo),
    h('section', { class: 'connect' }, h('h2', {}, 'Connect KOReader'),
      h('p', {}, 'In KOReader: Tools → Progress sync → Custom sync server, then Login with these.'),
      h('button', { type: 'button', onclick: async () => {
        try {
          const c = await api.call('POST', '/v1/koreader/credentials', { device_name: 'KOReader' });
          koreader.replaceChildren(copyable('Server', c.sync_url), copyable('Username', c.username), copyable('Password', c.password),
            h('p', { class: 'hint' }, 'The password is shown only now.'));
        } catch (e) { toast(e.message); }
      } }, 'Make a KOReader login'), koreader),
    h('section', { class: 'connect' }, h('h2', {}, 'Catalog apps (OPDS)'),
      h('p', {}, 'Reading apps that browse OPDS catalogs (KOReader, Thorium, Panels, Moon+ Reader…) can use this link; it holds its own key, so no password is needed.'),
      h('button', { type: 'button', onclick: async () => {
        try {
          const t = await api.call('POST', '/v1/opds/tokens', { device_name: 'Catalog app' });
          opds.replaceChildren(copyable('OPDS 1.2 link', t.catalog_v1), copyable('OPDS 2 link', t.catalog_v2));
        } catch (e) { toast(e.message); }
      } }, 'Make a catalog link'), opds));
}
