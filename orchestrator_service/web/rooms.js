// The rooms list: the rooms this token may read, newest first, with status and participants.

import * as api from './api.js';
import { clear, h, speakerColour } from './dom.js';

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, status.replace('_', ' '));
}

function roomRow(room) {
  const people = h('span', { class: 'people' });
  for (const who of room.participants) {
    const chip = h('span', { class: 'chip' }, who);
    chip.style.setProperty('--speaker', speakerColour(who));
    people.append(chip);
  }
  return h(
    'li', { class: 'room-row' },
    h('a', { class: 'room-link', href: `#/rooms/${api.enc(room.name)}` }, room.name),
    statusBadge(room.status),
    people,
    h('time', { class: 'muted', datetime: room.created_at },
      new Date(room.created_at).toLocaleString()),
  );
}

export async function showRooms(main, crumbs) {
  clear(crumbs).append(h('span', {}, 'Rooms'));
  const list = h('ul', { id: 'rooms', class: 'rooms' });
  const more = h('button', { class: 'ghost', type: 'button', hidden: true }, 'More rooms');
  let cursor = null;
  async function load() {
    const page = await api.rooms(cursor);
    for (const room of page.rooms) list.append(roomRow(room));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (!list.children.length) {
      list.append(h('li', { class: 'muted' }, 'No room this token may read yet.'));
    }
  }
  more.addEventListener('click', load);
  await load();
  clear(main).append(h('section', { class: 'card' }, h('h1', {}, 'Rooms'), list, more));
}
