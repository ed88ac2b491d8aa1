// Small DOM helpers. Every piece of data reaches the page as text (textContent or a text
// node), never as markup: names and transcripts come from meetings, not from us.

/**
 * Build an element: h('a', {class: 'x', href: '#'}, 'text', child).
 * Attributes named on* are refused: handlers are attached with addEventListener.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) throw new Error(`no inline handlers (${name})`);
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Remove every child of ``el``. */
export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/**
 * Append ``text`` to ``parent``, wrapping each case-insensitive occurrence of a term in <mark>.
 * Returns how many occurrences were marked.
 */
export function appendMarked(parent, text, terms) {
  if (!terms.length) {
    parent.append(document.createTextNode(text));
    return 0;
  }
  const lower = text.toLowerCase();
  let at = 0;
  let marked = 0;
  while (at < text.length) {
    let best = -1;
    let len = 0;
    for (const term of terms) {
      const i = lower.indexOf(term, at);
      if (i !== -1 && (best === -1 || i < best)) [best, len] = [i, term.length];
    }
    if (best === -1) break;
    if (best > at) parent.append(document.createTextNode(text.slice(at, best)));
    parent.append(h('mark', {}, text.slice(best, best + len)));
    marked += 1;
    at = best + len;
  }
  if (at < text.length) parent.append(document.createTextNode(text.slice(at)));
  return marked;
}

/** Search terms of a query: lower-cased words. */
export function termsOf(query) {
  return query.toLowerCase().split(/\s+/).filter(Boolean);
}

/** Epoch seconds of an ISO time from the API (null stays null). */
export function epoch(iso) {
  return iso ? Date.parse(iso) / 1000 : null;
}

/** 75.4 -> "01:15", 3725 -> "1:02:05". */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** "01:15" or "1:02:05" or "75" -> seconds; '' -> null; anything else -> NaN. */
export function parseClock(text) {
  const t = text.trim();
  if (!t) return null;
  if (!/^\d+(:\d{1,2}){0,2}$/.test(t)) return NaN;
  return t.split(':').reduce((acc, part) => acc * 60 + Number(part), 0);
}

/** 12.34 -> "12.3 s", null -> "—". */
export function seconds(value) {
  return value === null || value === undefined ? '—' : `${value.toFixed(1)} s`;
}

/** A stable colour per speaker: the golden angle spreads neighbouring hashes apart. */
export function speakerColour(identity) {
  let hash = 0;
  for (const ch of identity) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${Math.round((hash * 137.508) % 360)} 62% 40%)`;
}

/** Where ``el`` sits among ``items`` sorted by ``key``: binary search for the first >= k. */
export function lowerBound(items, k, key) {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(items[mid]) < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
