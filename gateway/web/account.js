// Account settings: profile, password (which ends every other session), sign-out.

import * as api from './api.js';
import { h, field, main, toast } from './ui.js';

export async function show() {
  const m = main();
  document.title = 'Account · Dogear';
  const me = await api.call('GET', '/v1/users/me');
  const username = h('input', { name: 'username', value: me.username, required: true, autocomplete: 'username' });
  const display = h('input', { name: 'display_name', value: me.display_name || '', maxlength: 100 });
  const email = h('input', { name: 'email', type: 'email', value: me.email || '', autocomplete: 'email' });
  const visibility = h('select', { name: 'visibility' }, [['private', 'Only me'], ['followers', 'My followers'], ['public', 'Everyone']]
    .map(([v, t]) => h('option', { value: v, selected: (me.visibility || 'private') === v }, t)));
  const current = h('input', { type: 'password', name: 'current', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', name: 'new', autocomplete: 'new-password', required: true, minlength: 8 });
  const pwError = h('p', { class: 'error', role: 'alert' });
  m.append(h('h1', {}, 'Account'),
    h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api.call('PATCH', '/v1/users/me', { username: username.value.trim(), display_name: display.value.trim() || null,
          email: email.value.trim() || null, visibility: visibility.value });
        toast('Saved');
      } catch (e) { toast(e.message); }
    } }, h('h2', {}, 'Profile'), field('Username', username), field('Display name', display), field('Email', email),
    field('Who sees my profile', visibility), h('button', { type: 'submit', class: 'primary' }, 'Save profile')),
    h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      pwError.textContent = '';
      try {
        await api.call('POST', '/v1/users/me/password', { current_password: current.value, new_password: next.value });
        current.value = '';
        next.value = '';
        toast('Password changed: every other session is signed out');
      } catch (e) { pwError.textContent = e.message; }
    } }, h('h2', {}, 'Password'), field('Current password', current), field('New password', next), pwError,
    h('button', { type: 'submit' }, 'Change password')),
    h('section', { class: 'card' }, h('h2', {}, 'Your data'),
      h('p', {}, 'Everything Dogear keeps about you (progress, notes, highlights, shelves) as a zip of JSON.'),
      h('button', { type: 'button', onclick: async () => {
        try {
          const b = await api.blob('/v1/users/me/export');
          const a = h('a', { href: URL.createObjectURL(b), download: `dogear-${me.username}.zip` });
          document.body.append(a); a.click(); a.remove();
        } catch (e) { toast(e.message); }
      } }, 'Download my data')));
}
