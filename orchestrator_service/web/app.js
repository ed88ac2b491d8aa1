// The page's entry point: sign-in, the hash routes (#/ and #/rooms/<name>), the top bar.

import * as api from './api.js';
import { clear, h } from './dom.js';
import { showRoom } from './room.js';
import { showRooms } from './rooms.js';

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
let leave = null; // what the current view must stop (its event stream) when the route changes
let generation = 0; // a route whose data arrives after the next route started is dropped

function signIn(message) {
  generation += 1;
  clear(crumbs);
  const input = h('textarea', {
    id: 'token', rows: 4, required: true, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'eyJhbGciOi…',
  });
  const error = h('p', { id: 'signin-error', class: 'error', role: 'alert' }, message || '');
  const form = h(
    'form', { id: 'signin', class: 'card signin' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API token. ', h('code', {}, 'python -m devkit token --admin'),
      ' mints one for every room, ', h('code', {}, 'python -m devkit token --room NAME'),
      ' one for a room.'),
    h('label', { for: 'token' }, 'API token'), input, error,
    h('button', { type: 'submit' }, 'Sign in'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    api.setToken(input.value.trim());
    try {
      await api.rooms();
      route();
    } catch (err) {
      api.setToken(null);
      error.textContent = err.message;
    }
  });
  clear(main).append(form);
  input.focus();
}

function topbar() {
  const who = document.getElementById('who');
  const out = document.getElementById('signout');
  const c = api.claims();
  who.textContent = c ? `${c.sub}${(c.roles || []).includes('admin') ? ' (admin)' : ''}` : '';
  out.hidden = !api.token();
}

async function route() {
  if (leave) leave();
  leave = null;
  const mine = ++generation;
  topbar();
  if (!api.token()) return signIn();
  const path = location.hash.replace(/^#/, '') || '/';
  const match = path.match(/^\/rooms\/(.+)$/);
  const view = h('div', { class: 'view' });
  try {
    const stop = match
      ? await showRoom(view, crumbs, decodeURIComponent(match[1]))
      : await showRooms(view, crumbs);
    if (mine !== generation) return stop?.();
    leave = stop || null;
    clear(main).append(view);
  } catch (err) {
    if (mine !== generation) return;
    if (err instanceof api.ApiError && err.status === 401) {
      api.setToken(null);
      topbar();
      return signIn(err.message);
    }
    clear(main).append(h('p', { id: 'error', class: 'error card', role: 'alert' }, err.message));
  }
}

document.getElementById('signout').addEventListener('click', () => {
  api.setToken(null);
  location.hash = '#/';
  route();
});
// A sign-in link (`#/rooms/NAME?token=...`, as `make demo` prints it): a fragment never reaches
// the server or its logs; the token moves to sessionStorage and leaves the address bar.
function takeLinkToken() {
  const [path, query] = location.hash.split('?');
  const linked = query ? new URLSearchParams(query).get('token') : null;
  if (!linked) return;
  api.setToken(linked);
  history.replaceState(null, '', location.pathname + location.search + (path || '#/'));
}

window.addEventListener('hashchange', () => {
  takeLinkToken();
  route();
});
takeLinkToken();
route();
