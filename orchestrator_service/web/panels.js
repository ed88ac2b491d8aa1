// The room page's side panels: recordings, summary with citations, completeness per track.

import { clear, epoch, h, seconds } from './dom.js';
import { statusBadge } from './rooms.js';

/** Epoch seconds of a track recording's first sample (as Track.recording_origin_s). */
export function recordingOrigin(track) {
  return epoch(track.egress?.started_at) ?? epoch(track.live_origin) ?? epoch(track.published_at);
}

/** The earliest any source of the track can place a segment (as Track.earliest_s). */
export function earliest(track) {
  const times = [track.published_at, track.live_origin, track.egress?.started_at].map(epoch);
  return Math.min(...times.filter((t) => t !== null));
}

function recordedSeconds(track) {
  const from = epoch(track.egress?.started_at);
  const to = epoch(track.egress?.ended_at);
  if (from !== null && to !== null) return Math.max(0, to - from);
  return track.whisper ? track.whisper.audio_s : null;
}

/** One <audio> per recorded track; seeks to absolute times, reports its playing time. */
export class Players {
  /**
   * @param {HTMLElement} box
   * @param {{name: (id: string) => string, colour: (id: string) => string,
   *          url: (sid: string) => Promise<string>, onTime: (sid, abs, playing) => void}} ctx
   */
  constructor(box, ctx) {
    Object.assign(this, { box, ctx });
    this.players = new Map(); // sid -> {audio, track, row}
    this.frame = null;
  }

  update(tracks) {
    for (const track of tracks) {
      let p = this.players.get(track.track_sid);
      if (!p) {
        const audio = h('audio', { controls: true, preload: 'metadata',
          dataset: { track: track.track_sid } });
        const note = h('span', { class: 'muted note' });
        const label = h('span', { class: 'who' });
        const row = h('figure', { class: 'player' }, h('figcaption', {}, label, note), audio);
        p = { audio, track, row, note, label };
        this.players.set(track.track_sid, p);
        this.box.append(row);
        this.wire(p);
      }
      p.track = track;
      p.label.textContent = this.ctx.name(track.participant_identity);
      p.row.style.setProperty('--speaker', this.ctx.colour(track.participant_identity));
      const ready = track.egress?.object_key && track.status !== 'recording';
      p.note.textContent = ready ? '' : ' recording…';
      p.audio.hidden = !ready;
      if (ready && !p.loading && !p.audio.getAttribute('src')) this.load(p);
    }
  }

  async load(p, resumeAt = null, play = false) {
    p.loading = true;
    try {
      p.audio.src = await this.ctx.url(p.track.track_sid);
    } finally {
      p.loading = false;
    }
    if (resumeAt !== null) p.audio.currentTime = resumeAt;
    if (play) p.audio.play().catch(() => {});
  }

  wire(p) {
    const { audio } = p;
    const report = () => {
      const abs = recordingOrigin(p.track) + audio.currentTime;
      this.ctx.onTime(p.track.track_sid, abs, !audio.paused);
    };
    audio.addEventListener('timeupdate', report);
    audio.addEventListener('seeked', report);
    audio.addEventListener('play', () => {
      const tick = () => {
        report();
        if (!audio.paused) this.frame = requestAnimationFrame(tick);
      };
      tick();
    });
    audio.addEventListener('error', () => {
      // The URL's stream token expired (or the store moved): a new URL, same place.
      if (p.retried) return;
      p.retried = true;
      this.load(p, audio.currentTime, !audio.paused).finally(() => {
        setTimeout(() => { p.retried = false; }, 5000);
      });
    });
  }

  /** Play the track from absolute time ``abs``; false when it has no recording yet. */
  seek(sid, abs) {
    const p = this.players.get(sid);
    if (!p || p.audio.hidden) return false;
    p.audio.currentTime = Math.max(0, abs - recordingOrigin(p.track));
    p.audio.play().catch(() => {});
    return true;
  }
}

/** The summary and action items; each citation calls ``onCite(segment id)``. */
export function renderSummary(box, room, name, onCite) {
  clear(box);
  box.append(h('h2', {}, 'Summary'));
  const summary = room.summary;
  if (!summary) {
    const when = room.status === 'summarizing' ? 'being written now' : 'written when the meeting ends';
    box.append(h('p', { class: 'muted' }, `The summary is ${when}.`));
    return;
  }
  for (const para of summary.text.split(/\n{2,}/)) {
    if (para.trim()) box.append(h('p', { class: 'summary-text' }, para.trim()));
  }
  if (summary.action_items.length) box.append(h('h3', {}, 'Action items'));
  for (const group of summary.action_items) {
    if (!group.actions.length) continue;
    const list = h('ul', { class: 'actions' });
    for (const action of group.actions) {
      const cites = action.evidence.map((id, i) => {
        const link = h('button', { class: 'cite', type: 'button', dataset: { evidence: id },
          title: 'Show and play this part of the meeting' }, `[${i + 1}]`);
        link.addEventListener('click', () => onCite(id));
        return link;
      });
      list.append(h('li', {}, action.text, ' ', cites));
    }
    box.append(h('h4', { class: 'who' }, name(group.participant_identity)), list);
  }
  box.append(h('p', { class: 'muted small' },
    `${summary.model} · ${new Date(summary.generated_at).toLocaleString()}`));
}

/** Per track: audio heard live and dropped, recorded, and covered by Whisper; and progress. */
export function renderCompleteness(box, tracks, name, colour) {
  clear(box);
  const done = tracks.filter((t) => t.status === 'transcribed' || t.status === 'failed').length;
  box.append(
    h('h2', {}, 'Completeness'),
    h('p', { class: 'progress-line' }, `Whisper: ${done} of ${tracks.length} tracks done`,
      h('progress', { id: 'whisper-progress', max: tracks.length || 1, value: done })),
  );
  const body = h('tbody');
  for (const t of tracks) {
    const live = t.live || {};
    const heard = live.audio_received_s || 0;
    const dropped = live.audio_dropped_s || 0;
    const recorded = recordedSeconds(t);
    const w = t.whisper;
    const covered = w && w.covered_from !== null && w.covered_to !== null
      ? w.covered_to - w.covered_from : w ? w.audio_s : null;
    const share = (part, whole) => (part !== null && whole ? ` (${Math.round((100 * part) / whole)}%)` : '');
    const who = h('td', { class: 'who' }, name(t.participant_identity));
    who.style.setProperty('--speaker', colour(t.participant_identity));
    let job = '';
    if (t.status === 'transcribing') job = ` · attempt ${t.job?.attempts || 1}`;
    if (t.status === 'failed' && (t.status_reason || t.job?.last_error)) {
      job = ` · ${t.status_reason || t.job.last_error}`;
    }
    body.append(h('tr', { dataset: { track: t.track_sid } },
      who,
      h('td', {}, statusBadge(t.status), h('span', { class: 'muted small' }, job)),
      h('td', { class: 'num' }, seconds(heard)),
      h('td', { class: 'num' }, seconds(dropped), share(dropped, heard + dropped)),
      h('td', { class: 'num' }, seconds(recorded)),
      h('td', { class: 'num' }, seconds(live.committed_s ?? null)),
      h('td', { class: 'num' }, seconds(covered), share(covered, recorded)),
      h('td', { class: 'small' }, w ? `${w.model} · ${w.segments} seg · RTF ${w.real_time_factor.toFixed(2)}` : '—'),
    ));
  }
  box.append(h('div', { class: 'scroll-x' }, h('table', { class: 'completeness' },
    h('thead', {}, h('tr', {}, ['Speaker', 'Status', 'Heard live', 'Dropped', 'Recorded',
      'Live final up to', 'Whisper covered', 'Whisper pass'].map((c) => h('th', {}, c)))),
    body)));
}
