// The room page: live transcript from the event stream, corrected in place when Whisper
// lands; source switch, search, time filter; summary with citations; players; exports.

import * as api from './api.js';
import { clear, h, parseClock, speakerColour, termsOf } from './dom.js';
import { Players, earliest, renderCompleteness, renderSummary } from './panels.js';
import { statusBadge } from './rooms.js';
import { RoomStream } from './stream.js';
import { Transcript, bySegmentOrder } from './transcript.js';

const VIEWS = [
  ['best', 'Best', 'Whisper where its pass is done, live elsewhere'],
  ['realtime', 'Live', 'What the live captions heard'],
  ['whisper', 'Whisper', 'Only the recordings’ Whisper pass'],
];
const FORMATS = ['srt', 'vtt', 'txt', 'json'];

class RoomView {
  constructor(main, crumbs, detail) {
    this.name = detail.name;
    this.room = detail;
    this.tracks = new Map(detail.tracks.map((t) => [t.track_sid, t]));
    this.live = new Map(); // sid -> Map(id -> live segment), from the event stream
    this.fixed = new Map(); // sid -> {best, whisper}: read again after a correction
    this.view = 'best';
    this.terms = [];
    this.window = [null, null]; // seconds from the meeting's start
    this.grant = null;
    this.pending = false;
    this.layout(main, crumbs);
  }

  // Names and colours ---------------------------------------------------------------------
  nameOf = (identity) => {
    for (const t of this.tracks.values()) {
      if (t.participant_identity === identity && t.participant_name) return t.participant_name;
    }
    return identity;
  };

  origin = () => {
    const times = [...this.tracks.values()].map(earliest);
    return times.length ? Math.min(...times) : Date.parse(this.room.created_at) / 1000;
  };

  // Layout --------------------------------------------------------------------------------
  layout(main, crumbs) {
    clear(crumbs).append(h('a', { href: '#/' }, 'Rooms'), ' / ', h('span', {}, this.name));
    this.header = h('div', { class: 'room-head' });
    this.state = h('span', { id: 'stream-state', class: 'muted small' }, 'connecting');
    const views = h('div', { class: 'views', role: 'radiogroup', 'aria-label': 'Source' });
    for (const [value, label, title] of VIEWS) {
      const input = h('input', { type: 'radio', name: 'view', id: `view-${value}`, value,
        checked: value === this.view });
      input.addEventListener('change', () => this.setView(value));
      views.append(h('label', { title }, input, label));
    }
    const search = h('input', { id: 'search', type: 'search', placeholder: 'Search' });
    search.addEventListener('input', () => {
      this.terms = termsOf(search.value);
      this.transcript.setTerms(this.terms);
      this.render();
    });
    this.search = search;
    const [from, to] = ['from', 'to'].map((which) => {
      const input = h('input', { id: `time-${which}`, class: 'time', placeholder: which === 'from'
        ? 'from 00:00' : 'to mm:ss', inputmode: 'numeric', size: 8 });
      input.addEventListener('change', () => this.setWindow());
      return input;
    });
    this.times = [from, to];
    const exports = h('span', { class: 'exports' }, 'Export ');
    for (const fmt of FORMATS) {
      const button = h('button', { class: 'ghost', type: 'button', dataset: { format: fmt } },
        fmt.toUpperCase());
      button.addEventListener('click', () => api.download(this.name, fmt, this.view)
        .catch((err) => this.flashError(err.message)));
      exports.append(button);
    }
    this.count = h('span', { id: 'match-count', class: 'muted small' });
    this.error = h('p', { class: 'error', role: 'alert' });
    const list = h('div', { id: 'transcript', class: 'transcript', 'aria-live': 'polite' });
    this.players = new Players(h('div', { id: 'players', class: 'players' }), {
      name: this.nameOf, colour: speakerColour,
      url: (sid) => this.audioUrl(sid),
      onTime: (sid, abs, playing) => this.transcript.highlight(sid, abs, playing),
    });
    this.transcript = new Transcript(list, {
      name: this.nameOf, colour: speakerColour, origin: this.origin,
      onPlay: (seg) => this.players.seek(seg.track_sid, seg.abs_start),
    });
    this.summary = h('section', { id: 'summary', class: 'card' });
    this.completeness = h('section', { id: 'completeness', class: 'card' });
    clear(main).append(
      this.header,
      h('div', { class: 'toolbar card' }, views, search, from, to, this.count, exports),
      this.error,
      h('div', { class: 'columns' },
        h('section', { class: 'card transcript-card' }, h('h2', {}, 'Transcript'), list),
        h('aside', {}, h('section', { class: 'card' }, h('h2', {}, 'Recordings'),
          this.players.box), this.summary)),
      this.completeness,
    );
  }

  renderHeader() {
    const people = this.room.participants.map((id) => {
      const chip = h('span', { class: 'chip' }, this.nameOf(id));
      chip.style.setProperty('--speaker', speakerColour(id));
      return chip;
    });
    clear(this.header).append(
      h('h1', {}, this.name), statusBadge(this.room.status), h('span', { class: 'people' }, people),
      this.state);
  }

  renderPanels() {
    const tracks = [...this.tracks.values()];
    this.players.update(tracks);
    renderCompleteness(this.completeness, tracks, this.nameOf, speakerColour);
    renderSummary(this.summary, this.room, this.nameOf, (id) => this.cite(id));
  }

  // What is shown -------------------------------------------------------------------------
  segmentsOf(sid, view) {
    const live = [...(this.live.get(sid)?.values() || [])];
    const fixed = this.fixed.get(sid);
    if (view === 'realtime') return live;
    if (view === 'best') return fixed?.best || live;
    return fixed?.whisper || [];
  }

  visible() {
    const [from, to] = this.window.map((s) => (s === null ? null : this.origin() + s));
    const out = [];
    for (const sid of new Set([...this.tracks.keys(), ...this.live.keys()])) {
      for (const seg of this.segmentsOf(sid, this.view)) {
        if (from !== null && seg.abs_end <= from) continue;
        if (to !== null && seg.abs_start >= to) continue;
        const text = seg.text.toLowerCase();
        if (this.terms.length && !this.terms.every((t) => text.includes(t))) continue;
        out.push(seg);
      }
    }
    return out.sort(bySegmentOrder);
  }

  render() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => this.renderNow());
  }

  renderNow() {
    this.pending = false;
    const segs = this.visible();
    this.transcript.show(segs);
    this.count.textContent = this.terms.length ? `${segs.length} matching` : '';
    if (this.view === 'whisper' && !segs.length) {
      this.transcript.list.firstChild.textContent = 'Whisper has not transcribed a track yet.';
    }
  }

  setView(view) {
    this.view = view;
    if (view === 'whisper') {
      for (const t of this.tracks.values()) if (t.status === 'transcribed') this.refetch(t.track_sid);
    }
    this.render();
  }

  setWindow() {
    this.window = this.times.map((input) => {
      const value = parseClock(input.value);
      input.classList.toggle('invalid', Number.isNaN(value));
      return Number.isNaN(value) ? null : value;
    });
    this.render();
  }

  /** Scroll to a cited segment and play it, switching view or clearing filters as needed. */
  cite(id) {
    const views = [this.view, 'best', 'realtime', 'whisper'];
    for (const view of views) {
      for (const sid of this.tracks.keys()) {
        const seg = this.segmentsOf(sid, view).find((s) => s.id === id);
        if (!seg) continue;
        if (view !== this.view) document.getElementById(`view-${view}`).click();
        this.search.value = '';
        this.terms = [];
        this.transcript.setTerms([]);
        for (const input of this.times) input.value = '';
        this.window = [null, null];
        this.renderNow();
        const el = this.transcript.element(seg);
        el?.scrollIntoView({ block: 'center' });
        el?.classList.remove('flash');
        void el?.offsetWidth; // restart the animation
        el?.classList.add('flash');
        if (!this.players.seek(seg.track_sid, seg.abs_start)) {
          this.flashError(`${this.nameOf(seg.participant_identity)}'s recording is not ready yet.`);
        }
        return;
      }
    }
    this.flashError('That part of the transcript is not loaded.');
  }

  flashError(message) {
    this.error.textContent = message;
    setTimeout(() => { if (this.error.textContent === message) this.error.textContent = ''; }, 6000);
  }

  // Data ----------------------------------------------------------------------------------
  async grantToken() {
    if (!this.grant || this.grant.until - Date.now() < 30_000) {
      const g = await api.streamToken(this.name);
      this.grant = { token: g.token, until: Date.now() + g.expires_in * 1000 };
    }
    return { token: this.grant.token, expires_in: (this.grant.until - Date.now()) / 1000 };
  }

  async audioUrl(sid) {
    const { token } = await this.grantToken();
    return `/v1/rooms/${api.enc(this.name)}/tracks/${api.enc(sid)}/audio?token=${api.enc(token)}`;
  }

  /** Read the track's corrected transcript again (after a correction event). */
  async refetch(sid) {
    const wantWhisper = this.view === 'whisper' || this.fixed.get(sid)?.whisper;
    const [best, whisper] = await Promise.all([
      api.trackTranscript(this.name, sid, 'best'),
      wantWhisper ? api.trackTranscript(this.name, sid, 'whisper') : null,
    ]);
    this.fixed.set(sid, { best, whisper });
    this.render();
  }

  async resync(sid) {
    const segs = await api.trackTranscript(this.name, sid, 'realtime');
    this.live.set(sid, new Map(segs.map((s) => [s.id, s])));
    this.render();
  }

  onEvent(type, data) {
    if (type === 'room') {
      this.room = data;
      this.renderHeader();
      renderSummary(this.summary, this.room, this.nameOf, (id) => this.cite(id));
    } else if (type === 'track') {
      const before = this.tracks.get(data.track_sid);
      this.tracks.set(data.track_sid, data);
      if (before?.participant_name !== data.participant_name) this.transcript.forget();
      this.renderPanels();
      this.renderHeader();
    } else if (type === 'segment') {
      if (!this.live.has(data.track_sid)) this.live.set(data.track_sid, new Map());
      this.live.get(data.track_sid).set(data.id, data);
      // Live words after a Whisper pass (outside what it covered): read best again.
      if (this.fixed.has(data.track_sid)) this.refetch(data.track_sid).catch(() => {});
    } else if (type === 'correction') {
      if (data.whisper) this.refetch(data.track_sid).catch((e) => this.flashError(e.message));
      else this.fixed.delete(data.track_sid);
    } else if (type === 'resync') {
      this.resync(data.track_sid).catch((e) => this.flashError(e.message));
    }
    this.render();
  }

  start() {
    this.renderHeader();
    this.renderPanels();
    this.render();
    this.stream = new RoomStream(this.name, () => this.grantToken(),
      (type, data) => this.onEvent(type, data),
      (state) => { this.state.textContent = state; this.state.dataset.state = state; });
    this.stream.open();
  }

  stop() {
    this.stream?.stop();
    for (const audio of document.querySelectorAll('audio')) audio.pause();
  }
}

export async function showRoom(main, crumbs, name) {
  const detail = await api.room(name); // 403 / 404 end here, with the API's message
  const view = new RoomView(main, crumbs, detail);
  view.start();
  return () => view.stop();
}
