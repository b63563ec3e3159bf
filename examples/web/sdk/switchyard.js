// Switchyard browser SDK: the event channel (docs/events.md) plus JsSIP calls into the
// conference node Switchyard chose. Plain ES module, no dependencies of its own: JsSIP is passed
// in (`connect({ JsSIP })`) or found on `globalThis.JsSIP`. Types: switchyard.d.ts. Guide:
// docs/sdk.md.

/** SDK version, sent nowhere; for bug reports. */
export const VERSION = '0.1.0';

/** Close codes of the event channel (docs/events.md). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  BAD_HELLO: 4000,
  TOKEN_INVALID: 4001,
  TOKEN_EXPIRED: 4002,
  USER_DISABLED: 4003,
  HEARTBEAT_TIMEOUT: 4008,
  TOO_MANY_CONNECTIONS: 4009,
  TOO_SLOW: 4010,
  RATE_LIMITED: 4029,
});

const CLOSE_NAMES = {
  1000: 'normal',
  1001: 'going_away',
  1006: 'connection_lost',
  1009: 'too_big',
  1011: 'internal_error',
  4000: 'bad_hello',
  4001: 'token_invalid',
  4002: 'token_expired',
  4003: 'user_disabled',
  4008: 'heartbeat_timeout',
  4009: 'too_many_connections',
  4010: 'too_slow',
  4029: 'rate_limited',
};

/** Close codes after which reconnecting cannot help (without a new token). */
const FATAL_CLOSES = new Set([1009, 4003, 4009, 4029]);
const TOKEN_CLOSES = new Set([4001, 4002]);

/** An error with a stable `code` (see docs/sdk.md, "Errors"). */
export class SwitchyardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'SwitchyardError';
    this.code = code;
    Object.assign(this, extra);
  }
}

/** Minimal event emitter: `on` returns an unsubscribe function; a throwing listener is isolated. */
class Emitter {
  #listeners = new Map();

  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError(`listener for "${event}" must be a function`);
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(event, fn) {
    if (fn === undefined) this.#listeners.delete(event);
    else this.#listeners.get(event)?.delete(fn);
    return this;
  }

  emit(event, payload) {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        // A bug in one listener must not break the channel or other listeners.
        setTimeout(() => {
          throw err;
        });
      }
    }
    return true;
  }

  removeAll() {
    this.#listeners.clear();
  }
}

/** Number of Unicode scalar values (what the server counts), not UTF-16 code units. */
export function countChars(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** True when the string has no lone surrogate (it would not survive UTF-8). */
function isWellFormed(text) {
  if (typeof text.isWellFormed === 'function') return text.isWellFormed();
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

function resolveElement(el) {
  if (el == null) return null;
  if (typeof el === 'string') {
    const found = globalThis.document?.querySelector(el);
    if (!found) throw new SwitchyardError('bad_argument', `no element matches ${el}`);
    return found;
  }
  return el;
}

function attach(el, stream, { muted = false } = {}) {
  if (!el) return;
  el.srcObject = stream;
  el.autoplay = true;
  if ('playsInline' in el) el.playsInline = true;
  if (muted) el.muted = true;
  const playing = el.play?.();
  // Autoplay may be refused until the user interacts; the element still has the stream.
  playing?.catch?.(() => {});
}

function detach(el) {
  if (el && el.srcObject) el.srcObject = null;
}

/**
 * Adds `b=AS` (kbit/s) and `b=TIAS` (bit/s) lines to every video m-section of an SDP, replacing
 * existing ones. Applied to the *remote* description, it caps what this browser sends (SDP
 * bandwidth lines say what their author is willing to receive).
 * @param {string} sdp
 * @param {number} bitsPerSecond
 * @returns {string}
 */
export function limitVideoBandwidth(sdp, bitsPerSecond) {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(eol);
  const out = [];
  let inVideo = false;
  let added = false;
  const kbps = Math.max(1, Math.floor(bitsPerSecond / 1000));
  const insert = () => {
    out.push(`b=AS:${kbps}`, `b=TIAS:${Math.floor(bitsPerSecond)}`);
    added = true;
  };
  for (const line of lines) {
    if (line.startsWith('m=')) {
      if (inVideo && !added) insert();
      inVideo = line.startsWith('m=video') && !/^m=video 0 /.test(line);
      added = false;
      out.push(line);
      continue;
    }
    if (inVideo) {
      if (line.startsWith('b=AS:') || line.startsWith('b=TIAS:')) continue;
      // RFC 4566 order: i=, c=, b=, … ; put ours right after c= (or before the first a=).
      if (!added && (line.startsWith('a=') || line === '')) insert();
      out.push(line);
      if (!added && line.startsWith('c=')) insert();
      continue;
    }
    out.push(line);
  }
  if (inVideo && !added) {
    const tail = out.length && out[out.length - 1] === '' ? out.pop() : null;
    insert();
    if (tail !== null) out.push(tail);
  }
  return out.join(eol);
}

const DEFAULTS = {
  reconnect: true,
  backoffMinMs: 500,
  backoffMaxMs: 30000,
  busyWhenInCall: false,
  heartbeatSecs: 25,
  iceServers: [],
  debug: false,
};

let nextRequestId = 1;
const requestId = (prefix) => `${prefix}-${Date.now().toString(36)}-${(nextRequestId++).toString(36)}`;

/**
 * Opens the event channel. Resolves once Switchyard said `welcome`; rejects with a
 * SwitchyardError (`token_expired`, `token_invalid`, `user_disabled`, `connect_failed`, …) when
 * the first connection is refused.
 * @param {import('./switchyard').ConnectOptions} options
 * @returns {Promise<import('./switchyard').Client>}
 */
export async function connect(options) {
  const client = new Client(options);
  await client.ready;
  return client;
}

/**
 * The connection to Switchyard for one browser tab. Create with {@link connect}, or construct
 * and `await client.ready` if you want to subscribe before the first event arrives.
 */
export class Client extends Emitter {
  /** @type {Promise<Client>} resolves after the first `welcome` */
  ready;
  /** user id from `welcome` */
  userId = null;
  /** session id from `welcome` */
  session = null;
  /** `connecting` | `open` | `reconnecting` | `closed` */
  state = 'connecting';
  /** longest text message accepted by the server, in Unicode scalar values */
  maxMessageChars = 2000;
  /** newest event sequence number processed */
  lastSeq = null;

  #opts;
  #token;
  #ws = null;
  #closedByUser = false;
  #attempt = 0;
  #reconnectTimer = null;
  #pingTimer = null;
  #deadTimer = null;
  #heartbeatSecs;
  #connectedOnce = false;
  #readySettled = false;
  #resolveReady;
  #rejectReady;
  /** the window's `online`/`offline` listeners, while they are installed */
  #networkListeners = null;
  /** @type {Map<string, Call>} invitations and calls, by conference */
  #calls = new Map();
  /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
  #pending = new Map();

  constructor(options) {
    super();
    if (!options || typeof options !== 'object') throw new TypeError('connect(options) needs an object');
    const { url, token, getToken } = options;
    if (typeof url !== 'string' || !/^wss?:\/\//.test(url)) {
      throw new TypeError('options.url must be the ws:// or wss:// URL of /v1/events');
    }
    if (!token && typeof getToken !== 'function') {
      throw new TypeError('options.token or options.getToken is required');
    }
    this.#opts = { ...DEFAULTS, ...options };
    this.#token = token ?? null;
    this.#heartbeatSecs = this.#opts.heartbeatSecs;
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    // Unhandled if nobody awaits it: the same failure is also an `error` event.
    this.ready.catch(() => {});
    this.#watchNetwork();
    queueMicrotask(() => this.#open());
  }

  /** Answer `busy` automatically to invitations that arrive during a call (option of the same name). */
  get busyWhenInCall() {
    return Boolean(this.#opts.busyWhenInCall);
  }

  set busyWhenInCall(on) {
    this.#opts.busyWhenInCall = Boolean(on);
  }

  /** The call that is being answered or is in progress, if any. */
  get activeCall() {
    for (const call of this.#calls.values()) {
      if (call.state === 'accepting' || call.state === 'connecting' || call.state === 'active') return call;
    }
    return null;
  }

  /** Invitations still ringing. */
  get ringing() {
    return [...this.#calls.values()].filter((c) => c.state === 'ringing');
  }

  /** A call (ringing, answered or active) by conference name. */
  getCall(conference) {
    return this.#calls.get(conference) ?? null;
  }

  /** Hangs up the active call (no-op without one). */
  hangup() {
    this.activeCall?.hangup();
  }

  /** Mutes (default) or unmutes the microphone of the active call. */
  mute(muted = true) {
    const call = this.activeCall;
    if (!call) throw new SwitchyardError('no_call', 'there is no active call to mute');
    call.mute(muted);
  }

  /**
   * Sends a text message to a conference (the active call's when `conference` is omitted).
   * Resolves with the message as delivered (the server echoes it to the sender too).
   * @param {string} text
   * @param {{conference?: string, timeoutMs?: number}} [opts]
   */
  sendMessage(text, opts = {}) {
    const conference = opts.conference ?? this.activeCall?.conference;
    if (!conference) {
      return Promise.reject(new SwitchyardError('no_call', 'no conference given and no active call'));
    }
    if (typeof text !== 'string') {
      return Promise.reject(new SwitchyardError('bad_argument', 'text must be a string'));
    }
    if (countChars(text) === 0 || text.trim() === '') {
      return Promise.reject(new SwitchyardError('message_empty', 'the message is empty'));
    }
    if (!isWellFormed(text)) {
      return Promise.reject(new SwitchyardError('bad_argument', 'the message has a lone UTF-16 surrogate'));
    }
    const chars = countChars(text);
    if (chars > this.maxMessageChars) {
      return Promise.reject(
        new SwitchyardError('message_too_long', `the message has ${chars} characters; the limit is ${this.maxMessageChars}`, {
          chars,
          max: this.maxMessageChars,
        }),
      );
    }
    const id = requestId('m');
    return this.#request({ type: 'message', conference, text, id }, id, opts.timeoutMs ?? 10000);
  }

  /** Closes the channel for good and hangs up any call. Idempotent. */
  close() {
    if (this.state === 'closed') return;
    this.#closedByUser = true;
    for (const call of this.#calls.values()) call._shutdown('closed');
    this.#calls.clear();
    this.#shutdownSocket(1000, 'client closed');
    this.#setState('closed');
    this.#failPending(new SwitchyardError('closed', 'the client was closed'));
    if (!this.#readySettled) {
      this.#readySettled = true;
      this.#rejectReady(new SwitchyardError('closed', 'closed before connecting'));
    }
    this.emit('disconnected', { code: 1000, reason: 'normal', willReconnect: false });
    this.removeAll();
  }

  // ---- internals shared with Call (underscore = not public API) ----

  get _options() {
    return this.#opts;
  }

  _send(frame) {
    if (!this.#ws || this.#ws.readyState !== 1 || this.state !== 'open') return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  _log(...args) {
    if (this.#opts.debug) console.debug('[switchyard]', ...args);
  }

  _forget(call) {
    if (this.#calls.get(call.conference) === call) this.#calls.delete(call.conference);
  }

  // ---- the WebSocket ----

  async #open() {
    if (this.#closedByUser) return;
    if (!this.#token && this.#opts.getToken) {
      let token;
      try {
        token = await this.#opts.getToken();
        if (typeof token !== 'string' || token === '') throw new TypeError(`it returned ${token === '' ? 'an empty string' : typeof token}, not a token`);
      } catch (err) {
        this.#fail(new SwitchyardError('token_unavailable', `getToken failed: ${err?.message ?? err}`, { cause: err }), true);
        return;
      }
      if (this.#closedByUser) return;
      this.#token = token;
    }
    const Ws = this.#opts.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      ws = new Ws(this.#opts.url);
    } catch (err) {
      this.#fail(new SwitchyardError('connect_failed', `cannot open ${this.#opts.url}: ${err?.message ?? err}`), false);
      return;
    }
    this.#ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      const hello = { type: 'hello', token: this.#token };
      if (this.lastSeq !== null) hello.resume = { seq: this.lastSeq };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.#ws) return;
      this.#armDeadTimer();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        this._log('ignored a non-JSON frame');
        return;
      }
      if (frame.type === 'welcome') {
        welcomed = true;
        this.#onWelcome(frame);
      } else {
        this.#onFrame(frame);
      }
    };
    ws.onerror = () => {
      // Always followed by onclose, which decides what to do.
    };
    ws.onclose = (ev) => {
      if (ws !== this.#ws) return;
      this.#ws = null;
      this.#stopTimers();
      this.#onClose(ev.code, ev.reason, welcomed);
    };
  }

  #onWelcome(frame) {
    const first = !this.#connectedOnce;
    const previousUser = this.userId;
    this.userId = frame.user_id;
    this.session = frame.session;
    if (Number.isInteger(frame.max_message_chars)) this.maxMessageChars = frame.max_message_chars;
    if (Number.isFinite(frame.heartbeat_secs) && frame.heartbeat_secs > 0) this.#heartbeatSecs = frame.heartbeat_secs;
    const resumed = Boolean(frame.resumed);
    if (!resumed || this.lastSeq === null || previousUser !== frame.user_id) this.lastSeq = frame.seq ?? 0;
    this.#attempt = 0;
    this.#connectedOnce = true;
    this.#setState('open');
    this.#startHeartbeat();
    const info = { userId: this.userId, session: this.session, resumed, reconnected: !first };
    this.emit('connected', info);
    if (!first && !resumed) {
      // Events were lost while away: the page must re-read its state from its backend.
      this.emit('resync', { userId: this.userId });
    }
    if (!this.#readySettled) {
      this.#readySettled = true;
      this.#resolveReady(this);
    }
  }

  #onClose(code, reason, welcomed) {
    const name = CLOSE_NAMES[code] ?? (reason || 'closed');
    if (this.#closedByUser) return;
    this._log('channel closed', code, reason);
    let willReconnect = Boolean(this.#opts.reconnect) && !FATAL_CLOSES.has(code);
    let error = null;
    if (TOKEN_CLOSES.has(code)) {
      // The token is spent: without getToken there is nothing to reconnect with.
      this.#token = null;
      willReconnect = willReconnect && typeof this.#opts.getToken === 'function';
      error = new SwitchyardError(name, code === 4002 ? 'the token has expired' : 'the token was refused', { closeCode: code });
    } else if (FATAL_CLOSES.has(code)) {
      error = new SwitchyardError(name, `Switchyard closed the channel: ${name}`, { closeCode: code });
    } else if (!welcomed && !this.#connectedOnce && !willReconnect) {
      error = new SwitchyardError('connect_failed', `cannot connect to ${this.#opts.url} (close ${code})`, { closeCode: code });
    }
    this.#failPending(new SwitchyardError('disconnected', 'the channel closed before the answer came'));
    if (!willReconnect) {
      this.#setState('closed');
      this.emit('disconnected', { code, reason: name, willReconnect: false });
      if (error) this.emit('error', error);
      if (!this.#readySettled) {
        this.#readySettled = true;
        this.#rejectReady(error ?? new SwitchyardError('connect_failed', `closed: ${name}`, { closeCode: code }));
      }
      for (const call of this.#calls.values()) if (call.state === 'ringing') call._shutdown('disconnected');
      return;
    }
    this.#setState('reconnecting');
    const delay = this.#backoff();
    this.emit('disconnected', { code, reason: name, willReconnect: true, retryInMs: delay });
    if (error && !this.#connectedOnce) this.emit('error', error);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#open();
    }, delay);
  }

  /** Exponential backoff with full jitter. */
  #backoff() {
    const { backoffMinMs, backoffMaxMs } = this.#opts;
    const ceiling = Math.min(backoffMaxMs, backoffMinMs * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    return Math.round(backoffMinMs / 2 + Math.random() * (ceiling - backoffMinMs / 2));
  }

  #fail(error, tokenProblem) {
    this._log('connect failed', error);
    if (this.#opts.reconnect && this.#connectedOnce) {
      // Once connected, keep trying: a getToken that failed during a network outage (or a
      // backend hiccup) must not end the client for good.
      if (tokenProblem) this.emit('error', error);
      this.#onClose(1006, '', false);
      return;
    }
    this.#setState('closed');
    this.emit('error', error);
    if (!this.#readySettled) {
      this.#readySettled = true;
      this.#rejectReady(error);
    }
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    if (state === 'closed') this.#unwatchNetwork();
    this.emit('state', { state });
  }

  /**
   * A socket whose network went away is not closed by the browser: it just stops, and only the
   * heartbeat would notice, a minute later. So when the browser says it is offline the channel
   * is treated as lost at once (events of the outage are replayed on resume), and when it is
   * online again the pending reconnect happens now instead of after its backoff.
   */
  #watchNetwork() {
    const target = globalThis;
    if (!this.#opts.reconnect || typeof target.addEventListener !== 'function') return;
    const offline = () => {
      if (this.state !== 'open' || !this.#ws) return;
      this._log('the browser went offline; reconnecting when it is back');
      this.#abandonSocket(1006, 'offline');
    };
    const online = () => {
      if (this.state !== 'reconnecting') return;
      if (this.#reconnectTimer !== null) {
        clearTimeout(this.#reconnectTimer);
        this.#reconnectTimer = null;
      } else if (this.#ws && this.#ws.readyState === 0) {
        // An attempt begun while offline: it will fail; start a fresh one instead.
        const stale = this.#ws;
        this.#ws = null;
        try {
          stale.close();
        } catch {
          /* ignore */
        }
      } else {
        return; // getToken or the hello is under way
      }
      this._log('the browser is online again; reconnecting now');
      this.#attempt = 0;
      this.#open();
    };
    target.addEventListener('offline', offline);
    target.addEventListener('online', online);
    this.#networkListeners = { target, offline, online };
  }

  #unwatchNetwork() {
    const l = this.#networkListeners;
    if (!l) return;
    this.#networkListeners = null;
    l.target.removeEventListener('offline', l.offline);
    l.target.removeEventListener('online', l.online);
  }

  /** Gives up on the current socket without waiting for its close handshake, then reconnects. */
  #abandonSocket(code, reason) {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    this.#stopTimers();
    try {
      // A browser may send 1000 or 3000…4999, not 1006; the server does not act on the code.
      ws.close(code >= 3000 ? code : 1000, reason);
    } catch {
      /* already closing */
    }
    this.#onClose(code, reason, true);
  }

  #startHeartbeat() {
    this.#stopTimers();
    const periodMs = this.#heartbeatSecs * 1000;
    this.#pingTimer = setInterval(() => this._send({ type: 'ping', id: requestId('p') }), periodMs);
    this.#armDeadTimer();
  }

  /** A server that sent nothing (not even a pong) for heartbeat + 10 s is gone: reconnect. */
  #armDeadTimer() {
    clearTimeout(this.#deadTimer);
    if (this.state !== 'open') return;
    this.#deadTimer = setTimeout(() => {
      this._log('no frame from Switchyard; reconnecting');
      this.#abandonSocket(4008, 'heartbeat_timeout');
    }, (this.#heartbeatSecs * 2 + 10) * 1000);
  }

  #stopTimers() {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#deadTimer);
    this.#pingTimer = null;
    this.#deadTimer = null;
  }

  #shutdownSocket(code, reason) {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#stopTimers();
    const ws = this.#ws;
    this.#ws = null;
    if (ws && ws.readyState <= 1) {
      try {
        ws.close(code, reason);
      } catch {
        /* ignore */
      }
    }
  }

  #request(frame, id, timeoutMs) {
    return new Promise((resolve, reject) => {
      if (!this._send(frame)) {
        reject(new SwitchyardError('not_connected', 'the event channel is not open'));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new SwitchyardError('timeout', `no answer to ${frame.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
  }

  #settle(id, error, value) {
    const p = id != null ? this.#pending.get(id) : null;
    if (!p) return false;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(value);
    return true;
  }

  #failPending(error) {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(error);
      this.#pending.delete(id);
    }
  }

  // ---- server frames ----

  #onFrame(frame) {
    if (frame.type === 'pong') return;
    if (frame.type === 'error') {
      const err = new SwitchyardError(frame.code ?? 'error', frame.detail ?? frame.code ?? 'error', {
        detail: frame.detail,
        requestId: frame.id,
      });
      if (!this.#settle(frame.id, err)) this.emit('error', err);
      return;
    }
    if (typeof frame.seq === 'number') {
      if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // already seen (resume overlap)
      this.lastSeq = frame.seq;
    }
    this.emit('event', frame);
    const handler = EVENT_HANDLERS[frame.type];
    if (handler) handler.call(this, frame);
    else this._log('unknown event type', frame.type);
  }

  _onInvited(frame) {
    const existing = this.#calls.get(frame.conference);
    if (existing && existing.state !== 'ringing' && existing.state !== 'ended') {
      // Already answering/in this conference (e.g. a replay after resume): keep the call.
      existing._refresh(frame);
      return;
    }
    if (existing && existing.state === 'ringing') {
      existing._refresh(frame);
      return;
    }
    const call = new Call(this, frame);
    this.#calls.set(call.conference, call);
    const active = this.activeCall;
    if (this.#opts.busyWhenInCall && active && active.conference !== call.conference) {
      call.busy();
      this.emit('missedCall', { call, reason: 'busy' });
      return;
    }
    this.emit('call', call);
  }

  _onInvitationCancelled(frame) {
    const call = this.#calls.get(frame.conference);
    if (!call) return;
    if (call.state !== 'ringing') return; // this tab is the one answering: ignore `answered`
    call._cancelled(frame.reason ?? 'cancelled');
  }

  _onConferenceEvent(frame) {
    const call = this.#calls.get(frame.conference);
    const mine = frame.member?.user_id === this.userId || frame.user_id === this.userId;
    switch (frame.type) {
      case 'member_joined': {
        call?._memberJoined(frame.member);
        this.emit('in', { conference: frame.conference, member: frame.member, userId: frame.member?.user_id, self: mine, call, at: frame.at });
        break;
      }
      case 'member_updated': {
        call?._memberUpdated(frame.member);
        this.emit('memberUpdated', { conference: frame.conference, member: frame.member, self: mine, call, at: frame.at });
        break;
      }
      case 'member_left': {
        call?._memberLeft(frame.member, frame.reason);
        this.emit('out', { conference: frame.conference, member: frame.member, userId: frame.member?.user_id, reason: frame.reason, self: mine, call, at: frame.at });
        break;
      }
      case 'talking': {
        call?._talking(frame.member_id, frame.talking);
        this.emit('talking', { conference: frame.conference, memberId: frame.member_id, userId: frame.user_id, talking: Boolean(frame.talking), self: mine, call, at: frame.at });
        break;
      }
      case 'declined':
      case 'busy': {
        this.emit(frame.type, { conference: frame.conference, userId: frame.user_id, call, at: frame.at });
        break;
      }
      case 'ended': {
        call?._conferenceEnded(frame.reason ?? 'ended');
        this.emit('conferenceEnded', { conference: frame.conference, reason: frame.reason ?? 'ended', call, at: frame.at });
        break;
      }
      case 'message': {
        const message = {
          conference: frame.conference,
          from: frame.from,
          text: frame.text,
          id: frame.id ?? null,
          messageId: frame.message_id,
          at: frame.at,
          self: frame.from === this.userId,
          call,
        };
        if (message.self) this.#settle(frame.id, null, message);
        this.emit('message', message);
        break;
      }
      default:
        break;
    }
  }
}

const EVENT_HANDLERS = {
  invited: Client.prototype._onInvited,
  invitation_cancelled: Client.prototype._onInvitationCancelled,
  member_joined: Client.prototype._onConferenceEvent,
  member_updated: Client.prototype._onConferenceEvent,
  member_left: Client.prototype._onConferenceEvent,
  talking: Client.prototype._onConferenceEvent,
  declined: Client.prototype._onConferenceEvent,
  busy: Client.prototype._onConferenceEvent,
  ended: Client.prototype._onConferenceEvent,
  message: Client.prototype._onConferenceEvent,
};

/** How long to wait for the SIP leg to end after the server said the member is gone. */
const SERVER_END_GRACE_MS = 2000;

/**
 * One invitation and, once accepted, the call into the conference. Emits `accept`, `start`,
 * `end`, `cancelled`, `members` (the member list changed), `error`.
 */
export class Call extends Emitter {
  /** conference name */
  conference;
  /** who invited (caller_id) */
  callerId;
  /** invitation text */
  message;
  /** `audio` or `video` (the conference profile) */
  profile;
  /** node id */
  node;
  /** `ringing` | `accepting` | `connecting` | `active` | `ended` */
  state = 'ringing';
  /** local microphone muted by `mute()` */
  muted = false;
  /** Date.now() when the call was answered by the node (callStart), else null */
  startedAt = null;
  /** how the call ended (see callEnd), once ended */
  endReason = null;
  /** true once the node accepted this call's SIP REGISTER */
  registered = false;
  /** the SIP call's RTCPeerConnection, once dialing */
  peerConnection = null;
  /** the local camera/microphone stream, once accepted */
  localStream = null;
  /** the stream received from the node, once it arrives */
  remoteStream = null;

  #client;
  #invite;
  /** @type {Map<string|number, object>} members by member_id */
  #members = new Map();
  #ua = null;
  #session = null;
  #elements = {};
  #serverReason = null;
  #serverEndTimer = null;
  #maxVideoBitrate = null;
  #hungUp = false;
  #acceptPromise = null;

  constructor(client, frame) {
    super();
    this.#client = client;
    this._refresh(frame);
  }

  /** Current members of the conference, as the server reported them. */
  get members() {
    return [...this.#members.values()];
  }

  /** Seconds since the call started (0 before). */
  get duration() {
    return this.startedAt ? Math.round((Date.now() - this.startedAt) / 1000) : 0;
  }

  /** The invitation frame as received (SIP credentials included). */
  get invitation() {
    return this.#invite;
  }

  /**
   * Answers: tells Switchyard (the user's other tabs stop ringing), gets the camera/microphone,
   * registers with the node and dials the conference. Resolves when the node answered
   * (`callStart`); rejects with a SwitchyardError (`media_denied`, `sip_registration_failed`,
   * `sip_call_failed`, `jssip_missing`, …), also reported as `callEnd`.
   * @param {import('./switchyard').AcceptOptions} [opts]
   */
  accept(opts = {}) {
    if (this.#acceptPromise) return this.#acceptPromise;
    if (this.state !== 'ringing') {
      return Promise.reject(new SwitchyardError('bad_state', `cannot accept a call that is ${this.state}`));
    }
    this.#acceptPromise = this.#accept(opts);
    return this.#acceptPromise;
  }

  /** Declines the invitation: the inviter's page gets `declined`. */
  decline() {
    this.#refuse('decline');
  }

  /** Answers "busy": the inviter's page gets `busy`. */
  busy() {
    this.#refuse('busy');
  }

  /** Leaves the call (declines when still ringing). */
  hangup() {
    if (this.state === 'ringing') {
      this.decline();
      return;
    }
    if (this.state === 'ended') return;
    this.#hungUp = true;
    if (this.#session && !this.#session.isEnded()) {
      try {
        this.#session.terminate();
      } catch {
        this.#end('hangup');
      }
    } else {
      this.#end('hangup');
    }
  }

  /** Mutes (default) or unmutes this browser's microphone. */
  mute(muted = true) {
    this.muted = Boolean(muted);
    if (this.localStream) for (const t of this.localStream.getAudioTracks()) t.enabled = !this.muted;
    if (this.#session && !this.#session.isEnded()) {
      if (this.muted) this.#session.mute({ audio: true });
      else this.#session.unmute({ audio: true });
    }
    this.emit('mute', { muted: this.muted });
    this.#client.emit('mute', { call: this, muted: this.muted });
  }

  /** Unmutes the microphone. */
  unmute() {
    this.mute(false);
  }

  /** Sends a text message to this call's conference. */
  sendMessage(text) {
    return this.#client.sendMessage(text, { conference: this.conference });
  }

  /**
   * Changes the cap on sent video (bits per second; null removes it) during the call.
   * @param {number|null} bitsPerSecond
   */
  async setMaxVideoBitrate(bitsPerSecond) {
    this.#maxVideoBitrate = bitsPerSecond ?? null;
    await this.#applySenderBitrate();
  }

  // ---- internals ----

  _refresh(frame) {
    this.#invite = frame;
    this.conference = frame.conference;
    this.callerId = frame.caller_id ?? null;
    this.message = frame.message ?? null;
    this.profile = frame.profile ?? 'audio';
    this.node = frame.node ?? null;
  }

  #refuse(kind) {
    if (this.state !== 'ringing') return;
    this.#client._send({ type: kind, conference: this.conference });
    this.state = 'ended';
    this.endReason = kind === 'busy' ? 'busy' : 'declined';
    this.#client._forget(this);
    this.emit('end', { reason: this.endReason, duration: 0 });
  }

  async #accept(opts) {
    const client = this.#client;
    const JsSIP = client._options.JsSIP ?? globalThis.JsSIP;
    if (!JsSIP || typeof JsSIP.UA !== 'function') {
      const err = new SwitchyardError('jssip_missing', 'JsSIP is not available: pass connect({ JsSIP }) or load it as globalThis.JsSIP');
      client.emit('error', err);
      throw err;
    }
    let elements;
    try {
      elements = {
        videoRemote: resolveElement(opts.video_remote ?? opts.videoRemote),
        audioRemote: resolveElement(opts.audio_remote ?? opts.audioRemote),
        videoLocal: resolveElement(opts.video_local ?? opts.videoLocal),
      };
    } catch (err) {
      client.emit('error', err);
      throw err;
    }
    const type = opts.type ?? (this.profile === 'video' ? 'video' : 'audio');
    if (type !== 'audio' && type !== 'video') throw new SwitchyardError('bad_argument', `type must be "audio" or "video", not ${type}`);
    this.#elements = elements;
    this.#maxVideoBitrate = opts.maxVideoBitrate ?? null;

    this.state = 'accepting';
    client._send({ type: 'accept', conference: this.conference });
    const accepted = { call: this, conference: this.conference, type };
    this.emit('accept', accepted);
    client.emit('callAccept', accepted);

    // 1. Camera and microphone.
    try {
      const constraints = opts.mediaConstraints ?? {
        audio: true,
        video: type === 'video' ? { width: { ideal: 1280 }, height: { ideal: 720 } } : false,
      };
      this.localStream = await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      throw this.#failAccept('media_denied', `no camera/microphone: ${err?.name ?? ''} ${err?.message ?? err}`.trim(), err);
    }
    if (this.state === 'ended') throw new SwitchyardError('bad_state', 'the call ended while getting media');
    if (this.muted) for (const t of this.localStream.getAudioTracks()) t.enabled = false;
    attach(elements.videoLocal, this.localStream, { muted: true });

    // 2. REGISTER with the invitation's SIP credentials, then INVITE the conference.
    this.state = 'connecting';
    const sip = this.#invite.sip ?? {};
    const opened = new Promise((resolve, reject) => {
      let ua;
      try {
        const socket = new JsSIP.WebSocketInterface(this.#invite.wss_url);
        ua = new JsSIP.UA({
          sockets: [socket],
          uri: `sip:${sip.username}@${sip.domain}`,
          authorization_user: sip.username,
          password: sip.password,
          display_name: client.userId ?? undefined,
          register: true,
          session_timers: false,
          connection_recovery_min_interval: 2,
          connection_recovery_max_interval: 10,
          user_agent: `Switchyard-SDK/${VERSION} JsSIP/${JsSIP.version ?? '?'}`,
          ...(opts.uaConfig ?? {}),
        });
      } catch (err) {
        reject(this.#failAccept('sip_config', `JsSIP refused the configuration: ${err?.message ?? err}`, err));
        return;
      }
      this.#ua = ua;
      ua.on('registered', () => {
        this.registered = true;
        resolve(ua);
      });
      ua.on('registrationFailed', (e) =>
        reject(this.#failAccept('sip_registration_failed', `REGISTER failed: ${e?.cause ?? 'unknown'}`, e, { sipCause: e?.cause, status: e?.response?.status_code })),
      );
      ua.on('disconnected', (e) => {
        if (this.state === 'connecting' && !this.#session) {
          reject(this.#failAccept('sip_connect_failed', `cannot reach ${this.#invite.wss_url}`, e));
        }
      });
      ua.start();
    });
    const ua = await opened;
    if (this.state === 'ended') throw new SwitchyardError('bad_state', 'the call ended while registering');

    return new Promise((resolve, reject) => {
      const pcConfig = { iceServers: opts.iceServers ?? client._options.iceServers ?? [] };
      let session;
      try {
        session = ua.call(this.#invite.dial_uri, {
          mediaStream: this.localStream,
          pcConfig,
          rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: type === 'video' },
          sessionTimersExpires: 120,
        });
      } catch (err) {
        reject(this.#failAccept('sip_call_failed', `cannot dial ${this.#invite.dial_uri}: ${err?.message ?? err}`, err));
        return;
      }
      this.#session = session;
      const wirePc = (pc) => {
        if (!pc || this.peerConnection === pc) return;
        this.peerConnection = pc;
        pc.addEventListener('track', (ev) => this.#onTrack(ev));
      };
      if (session.connection) wirePc(session.connection);
      session.on('peerconnection', (e) => wirePc(e.peerconnection));
      session.on('sdp', (e) => {
        // Remote SDP bandwidth lines cap what this browser sends.
        if (e.originator === 'remote' && this.#maxVideoBitrate) e.sdp = limitVideoBandwidth(e.sdp, this.#maxVideoBitrate);
      });
      session.on('confirmed', () => {
        if (this.state === 'ended') return;
        this.state = 'active';
        this.startedAt = Date.now();
        if (this.muted) session.mute({ audio: true });
        this.#applySenderBitrate().catch((err) => client._log('setParameters failed', err));
        const started = { call: this, conference: this.conference };
        this.emit('start', started);
        client.emit('callStart', started);
        resolve();
      });
      session.on('failed', (e) => {
        const err = this.#failAccept('sip_call_failed', `the call failed: ${e?.cause ?? 'unknown'}`, e, {
          sipCause: e?.cause,
          status: e?.message?.status_code,
        });
        reject(err);
      });
      session.on('ended', (e) => {
        const reason = this.#hungUp ? 'hangup' : this.#serverReason ?? (e?.originator === 'local' ? 'hangup' : 'remote_hangup');
        this.#end(reason);
      });
    });
  }

  #failAccept(code, message, cause, extra = {}) {
    const err = new SwitchyardError(code, message, { conference: this.conference, cause, ...extra });
    if (this.state !== 'ended') {
      this.#client.emit('error', err);
      this.emit('error', err);
      this.#end(code === 'sip_call_failed' && this.#hungUp ? 'hangup' : code === 'media_denied' ? 'media_error' : 'failed', err);
    }
    return err;
  }

  #onTrack(ev) {
    const stream = ev.streams?.[0] ?? this.remoteStream ?? new MediaStream();
    if (!ev.streams?.[0] && !stream.getTracks().includes(ev.track)) stream.addTrack(ev.track);
    this.remoteStream = stream;
    const { videoRemote, audioRemote } = this.#elements;
    if (ev.track.kind === 'video') attach(videoRemote, stream);
    if (audioRemote) attach(audioRemote, stream);
    else if (ev.track.kind === 'audio' && videoRemote) attach(videoRemote, stream);
    this.emit('remoteStream', { stream, track: ev.track });
  }

  async #applySenderBitrate() {
    const pc = this.peerConnection;
    if (!pc) return;
    for (const sender of pc.getSenders()) {
      if (sender.track?.kind !== 'video') continue;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) params.encodings = [{}];
      if (this.#maxVideoBitrate) params.encodings[0].maxBitrate = Math.floor(this.#maxVideoBitrate);
      else delete params.encodings[0].maxBitrate;
      await sender.setParameters(params);
    }
  }

  _memberJoined(member) {
    if (member?.member_id == null) return;
    this.#members.set(member.member_id, { ...member });
    this.emit('members', this.members);
  }

  _memberUpdated(member) {
    if (member?.member_id == null) return;
    this.#members.set(member.member_id, { ...this.#members.get(member.member_id), ...member });
    this.emit('members', this.members);
  }

  _memberLeft(member, reason) {
    if (member?.member_id != null) this.#members.delete(member.member_id);
    this.emit('members', this.members);
    if (member?.user_id === this.#client.userId && (this.state === 'active' || this.state === 'connecting')) {
      // Possibly this tab's leg (or another tab of the same user): remember why, and make sure
      // the SIP leg ends if the node does not hang it up itself.
      if (reason && reason !== 'hangup') this.#serverGone(reason);
    }
  }

  _talking(memberId, talking) {
    const m = this.#members.get(memberId);
    if (m) {
      m.talking = Boolean(talking);
      this.emit('members', this.members);
    }
  }

  _conferenceEnded(reason) {
    if (this.state === 'ringing') {
      this._cancelled('ended');
      return;
    }
    if (this.state !== 'ended') this.#serverGone(reason === 'ended' ? 'ended' : reason);
  }

  #serverGone(reason) {
    this.#serverReason = reason;
    clearTimeout(this.#serverEndTimer);
    this.#serverEndTimer = setTimeout(() => {
      if (this.state === 'ended') return;
      try {
        this.#session?.terminate();
      } catch {
        /* ended meanwhile */
      }
      this.#end(reason);
    }, SERVER_END_GRACE_MS);
  }

  _cancelled(reason) {
    if (this.state !== 'ringing') return;
    this.state = 'ended';
    this.endReason = reason === 'answered' ? 'answered_elsewhere' : reason;
    this.#client._forget(this);
    const info = { call: this, conference: this.conference, reason };
    this.emit('cancelled', info);
    this.#client.emit('callCancelled', info);
    this.emit('end', { reason: this.endReason, duration: 0 });
  }

  _shutdown(reason) {
    if (this.state === 'ringing') {
      this.state = 'ended';
      this.endReason = reason;
      return;
    }
    this.#hungUp = true;
    try {
      if (this.#session && !this.#session.isEnded()) this.#session.terminate();
    } catch {
      /* ignore */
    }
    this.#end(reason);
  }

  #end(reason, error) {
    if (this.state === 'ended') return;
    const wasRinging = this.state === 'ringing';
    this.state = 'ended';
    this.endReason = reason;
    clearTimeout(this.#serverEndTimer);
    const duration = this.duration;
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    detach(this.#elements.videoLocal);
    detach(this.#elements.videoRemote);
    detach(this.#elements.audioRemote);
    const ua = this.#ua;
    this.#ua = null;
    if (ua) {
      // Let JsSIP send BYE / un-REGISTER before the socket goes.
      setTimeout(() => {
        try {
          ua.stop();
        } catch {
          /* ignore */
        }
      }, 0);
    }
    this.#client._forget(this);
    const info = { call: this, conference: this.conference, reason, duration, error: error ?? null };
    this.emit('end', info);
    if (!wasRinging) this.#client.emit('callEnd', info);
  }
}

/** Same as `connect`, as a namespace for `import Switchyard from '…/switchyard.js'`. */
const Switchyard = Object.freeze({ connect, Client, Call, CloseCode, SwitchyardError, countChars, limitVideoBandwidth, VERSION });
export default Switchyard;
