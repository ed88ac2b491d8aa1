// The transcript list: one element per segment, kept in (abs_start, id) order. Elements are
// reused by key, so a segment that stays stays put while others arrive around it, and a
// Whisper correction swaps only the corrected track's elements, in place.

import { appendMarked, clear, clock, h, lowerBound } from './dom.js';

export const keyOf = (seg) => `${seg.source}:${seg.id}`;

export function bySegmentOrder(a, b) {
  return a.abs_start - b.abs_start || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export class Transcript {
  /**
   * @param {HTMLElement} list the scrolling container
   * @param {{name: (id: string) => string, colour: (id: string) => string,
   *          origin: () => number, onPlay: (seg: object) => void}} ctx
   */
  constructor(list, ctx) {
    this.list = list;
    this.ctx = ctx;
    this.els = new Map(); // key -> element
    this.segs = new Map(); // key -> segment shown
    this.byTrack = new Map(); // track sid -> its shown segments, sorted
    this.playing = new Map(); // track sid -> [segment element, word element]
    this.terms = [];
    list.addEventListener('click', (event) => {
      const button = event.target.closest('button.at');
      if (!button) return;
      const seg = this.segs.get(button.closest('.seg').dataset.key);
      if (seg) ctx.onPlay(seg);
    });
  }

  /** Highlight ``terms`` from now on (every element is rebuilt). */
  setTerms(terms) {
    this.terms = terms;
    this.forget();
  }

  /** Drop the element cache (names, times or highlights changed). */
  forget() {
    clear(this.list);
    this.els.clear();
    this.playing.clear();
  }

  element(seg) {
    return this.els.get(keyOf(seg)) || null;
  }

  /** Show exactly ``segments`` (sorted), reusing the elements of those already shown. */
  show(segments) {
    const follow = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const keep = new Set();
    this.segs.clear();
    this.byTrack.clear();
    let previous = null;
    for (const seg of segments) {
      const key = keyOf(seg);
      keep.add(key);
      this.segs.set(key, seg);
      if (!this.byTrack.has(seg.track_sid)) this.byTrack.set(seg.track_sid, []);
      this.byTrack.get(seg.track_sid).push(seg);
      let el = this.els.get(key);
      if (!el || el.dataset.text !== seg.text) {
        el = this.build(seg, key);
        this.els.get(key)?.replaceWith(el);
        this.els.set(key, el);
      }
      const expected = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== el) this.list.insertBefore(el, expected);
      previous = el;
    }
    for (const [key, el] of this.els) {
      if (!keep.has(key)) {
        el.remove();
        this.els.delete(key);
      }
    }
    for (const child of [...this.list.children]) {
      if (this.els.get(child.dataset.key) !== child) child.remove();
    }
    if (!segments.length) this.list.append(h('p', { class: 'muted empty', dataset: { key: '' } },
      'Nothing to show yet.'));
    if (follow) this.list.scrollTop = this.list.scrollHeight;
  }

  build(seg, key) {
    const who = seg.participant_identity;
    const text = h('p', { class: 'text' });
    const words = (seg.words || []).filter((w) => w.word.trim());
    if (words.length) {
      // Word times count from the segment's own source origin, like its start and end.
      const origin = seg.abs_start - seg.start;
      words.forEach((w, i) => {
        if (i) text.append(' ');
        const span = h('span', {
          class: 'w', dataset: { s: origin + w.start, e: origin + w.end },
        });
        appendMarked(span, w.word.trim(), this.terms);
        text.append(span);
      });
    } else {
      appendMarked(text, seg.text, this.terms);
    }
    const el = h(
      'article',
      { class: `seg src-${seg.source}`, dataset: { key, id: seg.id, track: seg.track_sid } },
      h('header', {},
        h('span', { class: 'who' }, this.ctx.name(who)),
        h('button', { class: 'at', type: 'button', title: 'Play from here' },
          clock(seg.abs_start - this.ctx.origin())),
        seg.source === 'whisper' ? h('span', { class: 'src' }, 'Whisper') : null),
      text,
    );
    el.dataset.text = seg.text;
    el.style.setProperty('--speaker', this.ctx.colour(who));
    return el;
  }

  /** Mark the segment and word of ``sid`` playing at absolute time ``abs`` (null: none). */
  highlight(sid, abs, scroll) {
    const [oldSeg, oldWord] = this.playing.get(sid) || [];
    const segs = this.byTrack.get(sid) || [];
    let seg = null;
    if (abs !== null) {
      const i = lowerBound(segs, abs, (s) => s.abs_end);
      if (i < segs.length && segs[i].abs_start <= abs) seg = segs[i];
    }
    const el = seg ? this.els.get(keyOf(seg)) : null;
    let word = null;
    if (el) {
      for (const w of el.querySelectorAll('.w')) {
        if (Number(w.dataset.s) <= abs && abs < Number(w.dataset.e)) word = w;
      }
    }
    if (oldSeg !== el) {
      oldSeg?.classList.remove('playing');
      el?.classList.add('playing');
      if (el && scroll) el.scrollIntoView({ block: 'nearest' });
    }
    if (oldWord !== word) {
      oldWord?.classList.remove('current');
      word?.classList.add('current');
    }
    this.playing.set(sid, [el, word]);
  }
}
