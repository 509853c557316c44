// The app's shell: the session, the router, the sign-in and registration pages.

import * as api from './api.js';
import { h, field, main, toast } from './ui.js';
import * as library from './library.js';
import * as book from './book.js';
import * as reader from './reader.js';
import * as devices from './devices.js';
import * as account from './account.js';
import * as sync from './sync.js';

const pages = [
  [/^\/(library)?\/?$/, () => library.show()],
  [/^\/shelves\/([^/]+)\/?$/, (m) => library.show({ shelf: m[1] })],
  [/^\/books\/([^/]+)\/?$/, (m) => book.show(m[1])],
  [/^\/reader\/([^/]+)\/?$/, (m) => reader.show(m[1])],
  [/^\/devices\/?$/, () => devices.show()],
  [/^\/account\/?$/, () => account.show()],
];

let leaving = null;
let shown = 0;

/// Shows the page of the current URL.
export async function render() {
  if (leaving) { leaving(); leaving = null; }
  const mine = ++shown;
  const path = location.pathname;
  document.body.classList.remove('reading');
  if (path === '/login' || path === '/register') {
    if (api.user()) return go('/library', true);
    document.getElementById('top').hidden = true;
    return path === '/login' ? signInPage() : registerPage();
  }
  if (!api.user()) {
    const next = path + location.search;
    return go('/login' + (next !== '/' ? '?next=' + encodeURIComponent(next) : ''), true);
  }
  document.getElementById('top').hidden = false;
  for (const a of document.querySelectorAll('.top nav a')) {
    if (path.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [re, show] of pages) {
    const m = path.match(re);
    if (m) {
      try {
        const cleanup = (await show(m)) || null;
        // Left again before it finished drawing: its cleanup is due now.
        if (mine !== shown) { if (cleanup) cleanup(); } else leaving = cleanup;
      } catch (e) {
        if (mine === shown) showError(e);
      }
      return;
    }
  }
  main().append(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/library' }, 'Back to the library')));
}

function showError(e) {
  const m = main();
  m.append(h('h1', {}, e.status === 404 ? 'Not found' : 'Something went wrong'),
    h('p', { class: 'error' }, e.message || String(e)),
    h('p', {}, h('a', { href: '/library' }, 'Back to the library')));
}

export async function go(path, replace) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  await render();
  // A new page: reading starts at its top, for screen readers and keyboards alike.
  if (!replace && !document.activeElement?.closest('#main')) document.getElementById('main').focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function signInPage() {
  const m = main();
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card narrow', onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      await api.signIn(username.value.trim(), password.value);
      await started();
      const next = new URLSearchParams(location.search).get('next');
      go(next && next.startsWith('/') && !next.startsWith('//') ? next : '/library', true);
    } catch (e) {
      error.textContent = e.message;
      password.select();
    }
  } },
  h('h1', {}, 'Sign in to Dogear'),
  field('Username', username), field('Password', password), error,
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
  h('p', {}, 'No account yet? ', h('a', { href: '/register' }, 'Create one')));
  m.append(form);
  username.focus();
}

function registerPage() {
  const m = main();
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, minlength: 3, maxlength: 32, pattern: '[a-z0-9_.\\-]+', autocapitalize: 'none' });
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'email' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const error = h('p', { class: 'error', role: 'alert' });
  m.append(h('form', { class: 'card narrow', onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      await api.register(username.value.trim(), password.value, email.value.trim());
      await started();
      go('/library', true);
    } catch (e) {
      error.textContent = e.code === 'registration_closed'
        ? 'This server does not take new accounts: ask its administrator for one.'
        : e.message;
    }
  } },
  h('h1', {}, 'Create an account'),
  field('Username', username),
  h('p', { class: 'hint' }, '3 to 32 of a-z, 0-9, _ . -'),
  field('Email (optional)', email), field('Password', password),
  h('p', { class: 'hint' }, 'At least 8 characters.'),
  error, h('button', { type: 'submit', class: 'primary' }, 'Create account'),
  h('p', {}, 'Have an account? ', h('a', { href: '/login' }, 'Sign in'))));
  username.focus();
}

/// After signing in (or a reload with a session): this browser's device, the live socket.
async function started() {
  const id = await api.device();
  sync.start(id);
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a[href]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/') || url.pathname.startsWith('/opds')) return;
  ev.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) go(url.pathname + url.search);
});
window.addEventListener('popstate', render);

document.getElementById('sign-out').addEventListener('click', async () => {
  sync.stop();
  await api.signOut();
  toast('Signed out');
  go('/login', true);
});

(async () => {
  document.documentElement.dataset.theme = localStorage.getItem('dogear.theme') || 'light';
  if (await api.restore()) {
    try { await started(); } catch (e) { console.warn(e); }
  }
  render();
})();
