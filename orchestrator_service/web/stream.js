// The room's server-sent events. EventSource cannot send the API token, so each connection
// carries a short-lived stream token in its URL; before it expires the stream is reopened
// from the last event id, and the server resumes right after it (nothing lost or repeated).

const TYPES = ['room', 'track', 'segment', 'correction', 'resync'];
// Reopen this long before the token expires (the server ends the stream at expiry).
const RENEW_EARLY_S = 20;

export class RoomStream {
  /**
   * @param {string} room
   * @param {() => Promise<{token: string, expires_in: number}>} mint a fresh stream token
   * @param {(type: string, data: object) => void} onEvent
   * @param {(state: string) => void} onState 'connecting' | 'live' | 'reconnecting'
   */
  constructor(room, mint, onEvent, onState) {
    Object.assign(this, { room, mint, onEvent, onState });
    this.lastId = null;
    this.source = null;
    this.timer = null;
    this.stopped = false;
    this.failures = 0;
  }

  async open() {
    if (this.stopped) return;
    this.onState(this.lastId ? 'reconnecting' : 'connecting');
    let grant;
    try {
      grant = await this.mint();
    } catch (err) {
      if (err.status === 401 || err.status === 403) return this.onState(`closed: ${err.message}`);
      return this.retry();
    }
    const url = new URL(`/v1/rooms/${encodeURIComponent(this.room)}/events`, location.origin);
    url.searchParams.set('token', grant.token);
    // A new EventSource sends no Last-Event-ID header; its own reconnects will (and win).
    if (this.lastId) url.searchParams.set('last_event_id', this.lastId);
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener('open', () => {
      this.failures = 0;
      this.onState('live');
    });
    for (const type of TYPES) {
      source.addEventListener(type, (event) => {
        this.lastId = event.lastEventId || this.lastId;
        this.onEvent(type, JSON.parse(event.data));
      });
    }
    source.addEventListener('error', () => {
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (e.g. the token
      // expired under it): start over with a new token.
      if (source.readyState === EventSource.CLOSED && this.source === source) this.retry();
      else this.onState('reconnecting');
    });
    clearTimeout(this.timer);
    const renewIn = Math.max(5, grant.expires_in - RENEW_EARLY_S);
    this.timer = setTimeout(() => this.reopen(), renewIn * 1000);
  }

  retry() {
    this.close();
    this.failures += 1;
    this.onState('reconnecting');
    const wait = Math.min(30, 2 ** this.failures) * 1000;
    this.timer = setTimeout(() => this.open(), wait);
  }

  reopen() {
    this.close();
    this.open();
  }

  close() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }

  stop() {
    this.stopped = true;
    this.close();
  }
}
