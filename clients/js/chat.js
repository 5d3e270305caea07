/**
 * chat.js: a client for the ngx_chat wire protocol (chat.v1).
 *
 * A plain ES module without dependencies. It runs in browsers and in
 * Node 20+ (pass a WebSocket implementation as `opts.WebSocket` where
 * `globalThis.WebSocket` is missing).
 *
 * What it does for the application:
 *  - connects with the token as `access_token` and the subprotocol chat.v1,
 *    and reconnects after any loss with exponential backoff and full jitter
 *    (or within the server's `reconnect` hint);
 *  - resyncs after every connect with `sync`, sending per conversation the
 *    highest contiguous seq it holds, and fills holes with `history`;
 *  - drops duplicate deliveries by (conversation, seq);
 *  - retries a `send` with the same client_msg_id until it holds the `ack`;
 *  - matches answers to requests by req_id and returns them as promises;
 *  - keeps typing indicators for their 6 s, presence subscriptions across
 *    reconnects, and the receipt pointers it has sent.
 *
 * @module chat
 */

/** The WebSocket subprotocol of the contract. */
export const PROTOCOL = 'chat.v1';

/** How long a received typing `start` stays valid unless renewed. */
export const TYPING_TTL_MS = 6000;

/** Error codes after which a send or a read is tried again. */
const TRANSIENT = new Set(['rate_limited', 'unavailable', 'internal']);

const OPEN = 1;            // WebSocket.OPEN

const DEFAULTS = {
    backoffBaseMs: 500,     // first reconnect waits 0..500 ms
    backoffMaxMs: 30000,    // no reconnect waits more than 30 s
    helloTimeoutMs: 10000,  // connect + hello
    sendTimeoutMs: 10000,   // no ack by then: the same send again
    requestTimeoutMs: 15000,
    syncTimeoutMs: 30000,
    pongTimeoutMs: 10000,   // a ping unanswered that long: the link is dead
    gapDelayMs: 200,        // a hole may still fill itself (an ack in flight)
    deliveredDelayMs: 100,  // delivered receipts are batched per conversation
    typingThrottleMs: 2000, // at most one typing start per conversation
    autoDelivered: true,    // send `delivered` for what arrives
    maxSendAttempts: Infinity,
    conversationPages: 50,  // after sync, at most this many extra list pages
};

/**
 * An error answered by the server (`code` as in the contract) or made by
 * the client: `unsupported` (the server lacks the feature), `timeout`,
 * `disconnected` (the connection went before the answer; the request may or
 * may not have taken effect), `closed` (the client was closed), `too_large`.
 */
export class ChatError extends Error {
    /**
     * @param {string} code
     * @param {string} [message]
     * @param {object} [frame] the error frame, when the server sent one
     */
    constructor(code, message, frame) {
        super(message || code);
        this.name = 'ChatError';
        this.code = code;
        this.frame = frame || null;
        this.retryAfterMs = frame && Number.isFinite(frame.retry_after_ms)
            ? frame.retry_after_ms : null;
    }
}

/**
 * Delay before reconnect attempt `attempt` (0 for the first): full jitter,
 * a uniform random time in [0, min(maxMs, baseMs * 2^attempt)).
 *
 * @param {number} attempt
 * @param {number} baseMs
 * @param {number} maxMs
 * @param {function():number} [random] uniform in [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
    const cap = Math.min(maxMs, baseMs * Math.pow(2, Math.min(attempt, 30)));
    return Math.floor(random() * cap);
}

/**
 * A fresh client_msg_id (32 hex digits).
 * @returns {string}
 */
export function makeClientMsgId() {
    const c = globalThis.crypto;
    if (c && typeof c.randomUUID === 'function') {
        return c.randomUUID().replace(/-/g, '');
    }
    let s = '';
    for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
    return s;
}

/**
 * The id of the direct conversation of users a and b (`dm:<a>:<b>`, a < b in
 * byte order; user ids are ASCII, so code-unit order is byte order).
 * @param {string} a
 * @param {string} b
 * @returns {string}
 */
export function directId(a, b) {
    return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/**
 * The other user of a direct conversation id, or null.
 * @param {string} conversationId
 * @param {string} me
 * @returns {string|null}
 */
export function directPeer(conversationId, me) {
    const m = /^dm:([^:]+):([^:]+)$/.exec(conversationId || '');
    if (!m) return null;
    return m[1] === me ? m[2] : m[1];
}

/** A minimal event emitter: on / once / off / emit. */
export class Emitter {
    constructor() {
        this._handlers = new Map();
    }

    /**
     * @param {string} type
     * @param {function(...*)} fn
     * @returns {function()} a function that removes the handler
     */
    on(type, fn) {
        if (!this._handlers.has(type)) this._handlers.set(type, new Set());
        this._handlers.get(type).add(fn);
        return () => this.off(type, fn);
    }

    /** Like on(), for the next event only. */
    once(type, fn) {
        const off = this.on(type, (...args) => { off(); fn(...args); });
        return off;
    }

    off(type, fn) {
        const set = this._handlers.get(type);
        if (set) set.delete(fn);
    }

    emit(type, ...args) {
        const set = this._handlers.get(type);
        if (!set) return;
        for (const fn of [...set]) {
            try {
                fn(...args);
            } catch (e) {
                // a faulty handler must not break the client's state
                if (typeof console !== 'undefined') console.error(e);
            }
        }
    }
}

/**
 * @typedef {object} ChatOptions
 * @property {string} url the WebSocket URL of the chat location (ws://host/chat)
 * @property {string|function():(string|Promise<string>)} token a JWT, or a
 *   function asked for one before every connect (then a close for an expired
 *   or revoked token is followed by a reconnect with a fresh one)
 * @property {Function} [WebSocket] WebSocket constructor (default globalThis.WebSocket)
 * @property {Object<string,number>} [cursors] conversation id -> highest
 *   contiguous seq held, from an earlier run
 * @property {boolean} [autoDelivered=true] send `delivered` receipts for arrivals
 * @property {number} [backoffBaseMs=500]
 * @property {number} [backoffMaxMs=30000]
 * @property {number} [sendTimeoutMs=10000]
 * @property {number} [requestTimeoutMs=15000]
 * @property {function():number} [random] for tests
 * @property {function():number} [now] for tests
 * @property {Function} [setTimeout] for tests
 * @property {Function} [clearTimeout] for tests
 */

/**
 * A connection to an ngx_chat server that survives reconnects.
 *
 * Events (`client.on(name, handler)`):
 *  - `state` (state, detail): `idle`, `connecting`, `syncing` (hello
 *    received, sync running), `ready`, `reconnecting` (detail.delay ms),
 *    `closed` (detail.reason: `closed`, `replaced`, `expired`, `revoked`)
 *  - `hello` (frame)
 *  - `message` (message, {source}): each (conversation, seq) once; source is
 *    `live`, `sync` or `gap` (fetched to fill a hole). Holes are filled
 *    after newer messages arrived, so order by seq.
 *  - `conversations` (items, {source, has_more}): the list from sync
 *    (source `sync`) and its further pages (`page`)
 *  - `synced` (): a sync finished
 *  - `receipt` (frame), `presence` (frame), `group` (frame)
 *  - `ticks` (conversation_id, {delivered, read}): the highest seq every
 *    other member has delivered / read moved (from the conversation list's
 *    `others_delivered_seq` / `others_read_seq`, a `receipts` answer, and
 *    the receipts that follow it)
 *  - `typing` ({conversation_id, user_id, typing}): typing true on a start,
 *    false on a stop, a message from that user, or 6 s without renewal
 *  - `ack` (frame), `duplicate` (message), `close` ({code, reason}),
 *    `reconnect_hint` (ms), `error` (ChatError: errors no request owns)
 *  - `frame` (frame): every frame received, before anything else
 */
export class ChatClient extends Emitter {
    /** @param {ChatOptions} opts */
    constructor(opts) {
        super();
        if (!opts || !opts.url) throw new TypeError('ChatClient: opts.url is required');
        this.url = opts.url;
        this._token = opts.token;
        this._WS = opts.WebSocket || globalThis.WebSocket;
        if (typeof this._WS !== 'function') {
            throw new TypeError('ChatClient: no WebSocket implementation (pass opts.WebSocket)');
        }
        this.opts = { ...DEFAULTS, ...opts };
        this._random = opts.random || Math.random;
        this._now = opts.now || (() => Date.now());
        this._setTimer = opts.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
        this._clearTimer = opts.clearTimeout || ((t) => globalThis.clearTimeout(t));

        /** @type {string} */
        this.state = 'idle';
        /** The last hello frame, or null. */
        this.hello = null;
        /** This connection's user id (from hello). */
        this.userId = null;
        /** @type {Set<string>} the additions the server announced */
        this.features = new Set();
        /** @type {Map<string,object>} user id -> last presence frame */
        this.presence = new Map();

        this._ws = null;
        this._live = false;          // hello received on the current socket
        this._stopped = true;        // close() called, or never connected
        this._attempt = 0;
        this._hint = null;           // retry_after_ms of a reconnect frame
        this._timers = {};           // named single timers
        this._lastRx = 0;
        this._pingAt = 0;
        this._ids = 0;
        this._idPrefix = Math.floor(this._random() * 36 ** 4).toString(36);

        this._seqs = new Map();      // conv -> {cursor, ahead: Set<seq>}
        this._requests = new Map();  // req_id -> pending request
        this._outbox = new Map();    // client_msg_id -> pending send
        this._sync = null;           // {reqId, items}
        this._gapTimers = new Map();
        this._gapBusy = new Set();
        this._subs = new Set();      // presence subscriptions
        this._status = null;         // our own presence_set
        this._typingIn = new Map();  // conv -> Map(user -> timer)
        this._typingOut = new Map(); // conv -> time of our last start
        this._receiptsSent = new Map();   // conv -> {delivered, read}
        this._receiptsWanted = new Map(); // conv -> {delivered, read}
        // conv -> {delivered, read, members}: how far every other member
        // has got (the ticks of our own messages); members, user -> {delivered,
        // read}, once a receipts answer told them all
        this._others = new Map();
        this._deliverTimers = new Map();
        this._left = new Set();      // groups a system message removed us from

        for (const [conv, seq] of Object.entries(opts.cursors || {})) {
            if (Number.isInteger(seq) && seq > 0) {
                this._seqs.set(conv, { cursor: seq, ahead: new Set() });
            }
        }
    }

    // ------------------------------------------------------------ lifecycle

    /** Starts connecting (and keeps reconnecting until close()). */
    connect() {
        if (!this._stopped) return;
        this._stopped = false;
        this._attempt = 0;
        this._open();
    }

    /**
     * Closes the connection for good: pending sends and requests are
     * rejected with `closed`.
     */
    close() {
        this._stopped = true;
        this._clear('reconnect');
        const ws = this._ws;
        if (ws) {
            this._teardown(1000, 'closed by the client');
            try { ws.close(1000); } catch (e) { /* already closing */ }
        }
        const err = new ChatError('closed', 'the client was closed');
        for (const r of this._requests.values()) { this._clearReq(r); r.reject(err); }
        this._requests.clear();
        for (const s of this._outbox.values()) { this._clearTimer(s.timer); s.reject(err); }
        this._outbox.clear();
        this._setState('closed', { reason: 'closed' });
    }

    /** Skips the wait of a pending reconnect. */
    reconnectNow() {
        if (this.state === 'reconnecting') {
            this._clear('reconnect');
            this._open();
        }
    }

    /** Whether the server announced the addition `name` (e.g. 'auth'). */
    supports(name) {
        return this.features.has(name);
    }

    /**
     * The highest contiguous seq held per conversation: what the next sync
     * sends as cursors. Keep it to resume a later run without a replay.
     * @returns {Object<string,number>}
     */
    cursors() {
        const out = {};
        for (const [conv, t] of this._seqs) if (t.cursor > 0) out[conv] = t.cursor;
        return out;
    }

    /** Highest contiguous seq held in one conversation (0: none). */
    cursor(conversationId) {
        const t = this._seqs.get(conversationId);
        return t ? t.cursor : 0;
    }

    _open() {
        if (this._stopped) return;
        this._setState('connecting', { attempt: this._attempt });
        let token;
        try {
            token = typeof this._token === 'function' ? this._token() : this._token;
        } catch (e) {
            this.emit('error', new ChatError('token', String(e && e.message || e)));
            this._scheduleReconnect();
            return;
        }
        if (token && typeof token.then === 'function') {
            token.then((t) => this._dial(t), (e) => {
                this.emit('error', new ChatError('token', String(e && e.message || e)));
                this._scheduleReconnect();
            });
        } else {
            this._dial(token);
        }
    }

    _dial(token) {
        if (this._stopped || this._ws) return;
        const sep = this.url.includes('?') ? '&' : '?';
        let ws;
        try {
            ws = new this._WS(`${this.url}${sep}access_token=${encodeURIComponent(token || '')}`,
                              PROTOCOL);
        } catch (e) {
            this.emit('error', new ChatError('connect', String(e && e.message || e)));
            this._scheduleReconnect();
            return;
        }
        this._ws = ws;
        this._live = false;
        ws.onmessage = (ev) => { if (ws === this._ws) this._onData(ev.data); };
        ws.onclose = (ev) => {
            if (ws === this._ws) this._onClose(ev ? ev.code : 1006, ev ? ev.reason : '');
        };
        ws.onerror = () => { /* a close event follows */ };
        this._timer('hello', this.opts.helloTimeoutMs, () => this._drop('no hello from the server'));
    }

    /** The socket is given up on (silent, no hello): close it and reconnect. */
    _drop(reason) {
        const ws = this._ws;
        if (!ws) return;
        this._onClose(4000, reason);
        try { ws.close(4000, reason); } catch (e) { /* ignore */ }
    }

    _onClose(code, reason) {
        this._teardown(code, reason);
        this.emit('close', { code, reason });
        if (this._stopped) return;
        if (code === 4001) {
            // another connection of this device took over: fighting it back
            // would only replace that one in turn
            this._terminal('replaced', code);
        } else if ((code === 4003 || code === 1008) && typeof this._token !== 'function') {
            this._terminal(code === 4003 ? 'revoked' : 'expired', code);
        } else {
            this._scheduleReconnect();
        }
    }

    _terminal(reason, code) {
        this._stopped = true;
        const err = new ChatError('disconnected', reason);
        for (const r of this._requests.values()) { this._clearReq(r); r.reject(err); }
        this._requests.clear();
        // pending sends stay: a later connect() (a new token) delivers them
        this._setState('closed', { reason, code });
    }

    /** Forgets the current socket: timers off, in-flight reads queued again. */
    _teardown() {
        this._ws = null;
        this._live = false;
        this._sync = null;
        this._clear('hello');
        this._clear('keepalive');
        this._clear('sync');
        for (const s of this._outbox.values()) { this._clearTimer(s.timer); s.timer = null; }
        for (const [id, r] of this._requests) {
            if (!r.sent) continue;
            this._clearReq(r);
            if (r.retry) {
                r.sent = false;     // asked again on the next connection
            } else {
                this._requests.delete(id);
                r.reject(new ChatError('disconnected', 'the connection went before the answer'));
            }
        }
        for (const t of this._gapTimers.values()) this._clearTimer(t);
        this._gapTimers.clear();
        this._typingOut.clear();
        // what the server holds is learnt again from the next sync
        this._receiptsSent.clear();
    }

    _scheduleReconnect() {
        if (this._stopped) return;
        let delay;
        if (this._hint !== null) {
            // a planned close: a random time in 0..N ms, the server spreads us
            delay = Math.min(this._hint, Math.floor(this._random() * (this._hint + 1)));
            this._hint = null;
        } else {
            delay = backoffDelay(this._attempt, this.opts.backoffBaseMs,
                                 this.opts.backoffMaxMs, this._random);
            this._attempt++;
        }
        this._setState('reconnecting', { delay, attempt: this._attempt });
        this._timer('reconnect', delay, () => this._open());
    }

    _setState(state, detail = {}) {
        this.state = state;
        this.emit('state', state, detail);
    }

    // --------------------------------------------------------------- frames

    _onData(data) {
        let f;
        try {
            f = JSON.parse(typeof data === 'string' ? data : String(data));
        } catch (e) {
            this.emit('error', new ChatError('bad_frame', 'a frame that is not JSON'));
            return;
        }
        if (!f || typeof f !== 'object') return;
        this._lastRx = this._now();
        this._pingAt = 0;
        this.emit('frame', f);
        switch (f.type) {
        case 'hello': this._onHello(f); return;
        case 'message': this._onMessage(f); return;
        case 'ack': this._onAck(f); return;
        case 'error': this._onError(f); return;
        case 'receipt':
            this._onReceipt(f);
            this.emit('receipt', f);
            return;
        case 'typing': this._onTyping(f); return;
        case 'presence':
            this.presence.set(f.user_id, f);
            this.emit('presence', f);
            return;
        case 'reconnect':
            this._hint = Math.max(0, Math.floor(Number(f.retry_after_ms) || 0));
            this.emit('reconnect_hint', this._hint);
            return;
        case 'conversations':
            if (this._sync && f.req_id === this._sync.reqId) { this._onSyncList(f); return; }
            break;
        case 'sync_done':
            if (this._sync && f.req_id === this._sync.reqId) { this._onSyncDone(); return; }
            break;
        case 'group':
            this.emit('group', f);
            break;
        default:
            break;
        }
        if (f.req_id !== undefined && this._requests.has(f.req_id)) this._answer(f);
    }

    _onHello(f) {
        this._clear('hello');
        this._hint = null;
        this.hello = f;
        this.userId = f.user_id;
        this.deviceId = f.device_id;
        this.features = new Set(Array.isArray(f.features) ? f.features : []);
        this._live = true;
        this._setState('syncing');
        this.emit('hello', f);

        if (this._status) this._raw({ type: 'presence_set', status: this._status });
        this._sendSubscriptions([...this._subs]);
        for (const r of this._requests.values()) if (!r.sent) this._transmitRequest(r);
        for (const s of this._outbox.values()) this._transmitSend(s);
        this._startSync();
        this._startKeepalive();
    }

    _onError(f) {
        const err = new ChatError(f.code || 'error', f.message, f);
        if (f.client_msg_id !== undefined && this._outbox.has(f.client_msg_id)) {
            this._sendFailed(this._outbox.get(f.client_msg_id), err);
        } else if (this._sync && f.req_id === this._sync.reqId) {
            // the backend could not answer the sync: ask again later
            this._sync = null;
            this._clear('sync');
            const delay = err.retryAfterMs ?? backoffDelay(2, this.opts.backoffBaseMs,
                                                           this.opts.backoffMaxMs, this._random);
            this._timer('sync', Math.max(delay, 100), () => this._startSync());
            this.emit('error', err);
        } else if (f.req_id !== undefined && this._requests.has(f.req_id)) {
            const r = this._requests.get(f.req_id);
            if (r.retry && TRANSIENT.has(err.code)) {
                this._clearReq(r);
                r.sent = false;
                const delay = err.retryAfterMs ?? backoffDelay(r.attempts, this.opts.backoffBaseMs,
                                                               this.opts.backoffMaxMs, this._random);
                r.timer = this._setTimer(() => { r.timer = null; this._transmitRequest(r); },
                                         Math.max(delay, 1));
            } else {
                this._requests.delete(f.req_id);
                this._clearReq(r);
                r.reject(err);
            }
        } else {
            this.emit('error', err);
        }
    }

    /** Sends a frame on the live socket; false when there is none. */
    _raw(frame) {
        const ws = this._ws;
        if (!ws || !this._live || ws.readyState !== OPEN) return false;
        ws.send(JSON.stringify(frame));
        return true;
    }

    _id(prefix) {
        this._ids += 1;
        return `${prefix}${this._idPrefix}.${this._ids}`;
    }

    _timer(name, ms, fn) {
        this._clear(name);
        this._timers[name] = this._setTimer(() => { this._timers[name] = null; fn(); }, ms);
    }

    _clear(name) {
        if (this._timers[name]) {
            this._clearTimer(this._timers[name]);
            this._timers[name] = null;
        }
    }

    _startKeepalive() {
        const hb = Math.max(1, Number(this.hello && this.hello.heartbeat_s) || 30) * 1000;
        this._lastRx = this._now();
        const tick = () => {
            const now = this._now();
            if (this._pingAt && now - this._pingAt >= this.opts.pongTimeoutMs) {
                this._drop('no answer to ping');
                return;
            }
            if (!this._pingAt && now - this._lastRx >= hb) {
                // browsers answer the server's pings without telling us:
                // our own ping shows whether anything still comes back
                this._pingAt = now;
                this._raw({ type: 'ping' });
            }
            this._timer('keepalive', Math.min(hb / 2, this.opts.pongTimeoutMs), tick);
        };
        this._timer('keepalive', Math.min(hb / 2, this.opts.pongTimeoutMs), tick);
    }

    // ----------------------------------------------------------------- sync

    _startSync() {
        if (!this._live) return;
        const reqId = this._id('s');
        this._sync = { reqId, items: [] };
        this._raw({ type: 'sync', req_id: reqId, cursors: this.cursors() });
        this._timer('sync', this.opts.syncTimeoutMs, () => this._startSync());
    }

    _onSyncList(f) {
        const items = Array.isArray(f.items) ? f.items : [];
        this._sync.items = items;
        this._sync.hasMore = !!f.has_more;
        for (const it of items) this._noteItem(it);
        // receipts the server does not have yet (one may have been lost
        // with the last connection)
        this._flushReceipts();
        this.emit('conversations', items, { source: 'sync', has_more: !!f.has_more });
    }

    _onSyncDone() {
        const { items, hasMore } = this._sync;
        this._sync = null;
        this._clear('sync');
        this._attempt = 0;
        this._setState('ready');
        for (const it of items) {
            const conv = it.conversation_id;
            const last = Number.isInteger(it.last_seq) ? it.last_seq : 0;
            const t = this._seqs.get(conv);
            if (!t) {
                // nothing came for it: treat what exists as seen, so that a
                // jump past it later is noticed
                if (last > 0) this._seqs.set(conv, { cursor: last, ahead: new Set() });
            } else if (t.cursor < last || t.ahead.size) {
                this._fillGaps(conv, last);
            }
        }
        for (const [conv, t] of this._seqs) if (t.ahead.size) this._fillGaps(conv, 0);
        this.emit('synced');
        if (hasMore && this.supports('conversations') && items.length) {
            this._pageConversations(items[items.length - 1]);
        }
    }

    async _pageConversations(lastItem) {
        let last = lastItem;
        for (let i = 0; i < this.opts.conversationPages && last; i++) {
            const ts = activityTs(last);
            if (!ts) return;
            const opts = { before_ts: ts };
            // within one ms the last message's id says where the page ended
            const id = last.last_message && last.last_message.message_id;
            if (typeof id === 'string' && /^[0-9]{1,19}$/.test(id)) opts.before_message_id = id;
            let page;
            try {
                page = await this.listConversations(opts);
            } catch (e) {
                this.emit('error', e);
                return;
            }
            const items = page.items || [];
            this.emit('conversations', items, { source: 'page', has_more: !!page.has_more });
            if (!page.has_more || !items.length) return;
            last = items[items.length - 1];
        }
    }

    // -------------------------------------------------- messages and holes

    _onMessage(f) {
        const conv = f.conversation_id;
        const source = this._sync ? 'sync' : 'live';
        if (typeof conv !== 'string' || !Number.isInteger(f.seq)) {
            this.emit('message', f, { source });
            return;
        }
        if (!this._hold(conv, f.seq, source === 'live')) {
            this.emit('duplicate', f);
            return;
        }
        this._deliver(f, source);
    }

    _deliver(f, source) {
        if (f.kind === 'system') {
            this._noteMembership(f);
            this._othersMembership(f);
        }
        if (f.sender_id) this._typingEnded(f.conversation_id, f.sender_id);
        this.emit('message', f, { source });
        if (f.sender_id !== this.userId) this._scheduleDelivered(f.conversation_id);
    }

    /**
     * Records that (conv, seq) is held. Returns false for a duplicate. A seq
     * past the next one leaves a hole, filled by a history fetch when
     * `detectGap` (a live arrival; after a sync the holes are filled then).
     */
    _hold(conv, seq, detectGap) {
        const t = this._seqs.get(conv);
        if (!t) {
            // the first seen of a conversation: what came before is history
            this._seqs.set(conv, { cursor: seq, ahead: new Set() });
            return true;
        }
        if (seq <= t.cursor || t.ahead.has(seq)) return false;
        if (seq === t.cursor + 1) {
            t.cursor = seq;
            while (t.ahead.delete(t.cursor + 1)) t.cursor++;
            return true;
        }
        t.ahead.add(seq);
        if (detectGap) this._scheduleGapFill(conv);
        return true;
    }

    _scheduleGapFill(conv) {
        if (this._gapTimers.has(conv) || this._gapBusy.has(conv)) return;
        this._gapTimers.set(conv, this._setTimer(() => {
            this._gapTimers.delete(conv);
            this._fillGaps(conv, 0);
        }, this.opts.gapDelayMs));
    }

    /** Pages `history` forward from the cursor until no hole is left. */
    async _fillGaps(conv, upto) {
        if (this._gapBusy.has(conv)) return;
        this._gapBusy.add(conv);
        try {
            for (;;) {
                const t = this._seqs.get(conv);
                const ahead = [...t.ahead];
                const target = Math.max(upto, ...ahead);
                if (t.cursor >= target) break;
                const next = ahead.length ? Math.min(...ahead) : target + 1;
                const limit = Math.max(1, Math.min(100, next - 1 - t.cursor));
                const before = t.cursor;
                const page = await this._request(
                    { type: 'history', conversation_id: conv, after_seq: t.cursor, limit },
                    ['history'], { retry: true });
                const msgs = Array.isArray(page.messages) ? page.messages : [];
                for (const m of msgs) {
                    if (m.conversation_id === undefined) m.conversation_id = conv;
                    if (Number.isInteger(m.seq) && this._hold(conv, m.seq, false)) {
                        this._deliver(m, 'gap');
                    }
                }
                if (t.cursor === before) {
                    // nothing readable fills this hole: step over it
                    if (!t.ahead.size) break;
                    t.cursor = Math.min(...t.ahead);
                    t.ahead.delete(t.cursor);
                    while (t.ahead.delete(t.cursor + 1)) t.cursor++;
                }
            }
        } catch (e) {
            if (!(e instanceof ChatError && e.code === 'closed')) this.emit('error', e);
        } finally {
            this._gapBusy.delete(conv);
        }
        const t = this._seqs.get(conv);
        if (t && t.ahead.size && this._live && !this._sync) this._scheduleGapFill(conv);
    }

    /**
     * A group we were removed from takes no receipts or typing of ours
     * (the server would answer forbidden); being added back ends that.
     */
    _noteMembership(f) {
        const b = f.body;
        if (!b || !Array.isArray(b.user_ids) || !b.user_ids.includes(this.userId)) return;
        if (b.event === 'members_removed') this._left.add(f.conversation_id);
        else if (b.event === 'members_added' || b.event === 'group_created') {
            this._left.delete(f.conversation_id);
        }
    }

    /**
     * Who the ticks wait for changes with the group: a removed member no
     * longer holds them back, an added one has nothing before its joining
     * to receive.
     */
    _othersMembership(f) {
        const o = this._others.get(f.conversation_id);
        const b = f.body;
        if (!o || !o.members || !b || !Array.isArray(b.user_ids)) return;
        for (const u of b.user_ids) {
            if (u === this.userId) continue;
            if (b.event === 'members_removed') o.members.delete(u);
            else if (b.event === 'members_added' && !o.members.has(u)) {
                o.members.set(u, { delivered: f.seq - 1, read: f.seq - 1 });
            }
        }
        this._othersFromMembers(f.conversation_id);
    }

    /** Whether a system message said we were removed from this group. */
    hasLeft(conversationId) {
        return this._left.has(conversationId);
    }

    // ----------------------------------------------------------------- send

    /**
     * Sends a message and resolves with its `ack` (message_id, seq, ...).
     * Retried with the same client_msg_id across timeouts, reconnects,
     * `rate_limited` (after retry_after_ms) and `unavailable`, until acked;
     * rejected with the server's error for anything that retrying cannot
     * change (`forbidden`, `bad_request`, ...). Sends queue while offline.
     *
     * @param {object} msg
     * @param {string} [msg.conversation_id]
     * @param {string} [msg.to] a user id: the direct conversation
     * @param {string} msg.body
     * @param {string} [msg.client_msg_id] default: a fresh one
     * @returns {Promise<object>} the ack frame
     */
    send(msg) {
        const frame = { type: 'send', ...msg };
        if (!frame.client_msg_id) frame.client_msg_id = makeClientMsgId();
        if (frame.conversation_id === undefined && frame.to === undefined) {
            return Promise.reject(new ChatError('bad_request', 'send needs conversation_id or to'));
        }
        if (this._outbox.has(frame.client_msg_id)) return this._outbox.get(frame.client_msg_id).promise;
        if (frame.conversation_id !== undefined) this.stopTyping(frame.conversation_id);
        let entry;
        const promise = new Promise((resolve, reject) => {
            entry = { frame, resolve, reject, attempts: 0, timer: null };
        });
        entry.promise = promise;
        this._outbox.set(frame.client_msg_id, entry);
        this._transmitSend(entry);
        return promise;
    }

    /** The client_msg_ids of sends not yet acked, oldest first. */
    pendingSends() {
        return [...this._outbox.keys()];
    }

    _transmitSend(s) {
        if (!this._outbox.has(s.frame.client_msg_id)) return;
        this._clearTimer(s.timer);
        s.timer = null;
        if (!this._live || this._ws.readyState !== OPEN) return;   // again after the next hello
        const text = JSON.stringify(s.frame);
        const max = this.hello && this.hello.max_message_bytes;
        if (max && byteLength(text) > max) {
            this._outbox.delete(s.frame.client_msg_id);
            s.reject(new ChatError('too_large', `the message is over ${max} bytes`));
            return;
        }
        if (s.attempts >= this.opts.maxSendAttempts) {
            this._outbox.delete(s.frame.client_msg_id);
            s.reject(new ChatError('timeout', 'no ack after the last attempt'));
            return;
        }
        s.attempts++;
        this._ws.send(text);
        s.timer = this._setTimer(() => { s.timer = null; this._transmitSend(s); },
                                 this.opts.sendTimeoutMs);
    }

    _sendFailed(s, err) {
        this._clearTimer(s.timer);
        s.timer = null;
        if (TRANSIENT.has(err.code)) {
            const delay = err.retryAfterMs ?? backoffDelay(s.attempts, this.opts.backoffBaseMs,
                                                           this.opts.backoffMaxMs, this._random);
            s.timer = this._setTimer(() => { s.timer = null; this._transmitSend(s); },
                                     Math.max(delay, 1));
            return;
        }
        this._outbox.delete(s.frame.client_msg_id);
        s.reject(err);
    }

    _onAck(f) {
        const s = this._outbox.get(f.client_msg_id);
        if (Number.isInteger(f.seq) && typeof f.conversation_id === 'string') {
            // our own message: held, and our pointers moved to it
            this._hold(f.conversation_id, f.seq, !this._sync);
            this._notePointers(f.conversation_id, f.seq, f.seq);
        }
        this.emit('ack', f);
        if (!s) return;                      // a retry's second answer
        this._outbox.delete(f.client_msg_id);
        this._clearTimer(s.timer);
        s.resolve(f);
    }

    // ------------------------------------------------------------- requests

    _request(frame, expect, { retry = false, feature = null } = {}) {
        return new Promise((resolve, reject) => {
            const reqId = this._id('r');
            const r = {
                frame: { ...frame, req_id: reqId }, expect: new Set(expect),
                resolve, reject, retry, feature, sent: false, attempts: 0, timer: null,
            };
            this._requests.set(reqId, r);
            this._transmitRequest(r);
        });
    }

    _transmitRequest(r) {
        const reqId = r.frame.req_id;
        if (!this._requests.has(reqId) || !this._live) return;
        if (r.feature && !this.supports(r.feature)) {
            this._requests.delete(reqId);
            r.reject(new ChatError('unsupported', `the server does not support ${r.feature}`));
            return;
        }
        this._clearReq(r);
        r.sent = true;
        r.attempts++;
        this._raw(r.frame);
        r.timer = this._setTimer(() => {
            r.timer = null;
            if (r.retry) {
                this._transmitRequest(r);
            } else {
                this._requests.delete(reqId);
                r.reject(new ChatError('timeout', `no answer to ${r.frame.type}`));
            }
        }, this.opts.requestTimeoutMs);
    }

    _clearReq(r) {
        this._clearTimer(r.timer);
        r.timer = null;
    }

    _answer(f) {
        const r = this._requests.get(f.req_id);
        if (!r.expect.has(f.type)) return;
        this._requests.delete(f.req_id);
        this._clearReq(r);
        r.resolve(f);
    }

    /**
     * A page of a conversation's messages (ascending seq).
     * @param {string} conversationId
     * @param {{before_seq?: number, after_seq?: number, limit?: number}} [opts]
     *   neither before_seq nor after_seq: the newest
     * @returns {Promise<{messages: object[], has_more: boolean}>}
     */
    async history(conversationId, opts = {}) {
        const frame = { type: 'history', conversation_id: conversationId };
        if (opts.before_seq !== undefined) frame.before_seq = opts.before_seq;
        if (opts.after_seq !== undefined) frame.after_seq = opts.after_seq;
        if (opts.limit !== undefined) frame.limit = opts.limit;
        const page = await this._request(frame, ['history'], { retry: true });
        const msgs = Array.isArray(page.messages) ? page.messages : [];
        for (const m of msgs) {
            if (m.conversation_id === undefined) m.conversation_id = conversationId;
            // returned, not emitted; what extends the cursor counts as held
            const t = this._seqs.get(conversationId);
            if (Number.isInteger(m.seq) && (!t || m.seq === t.cursor + 1)) {
                this._hold(conversationId, m.seq, false);
            }
        }
        return { messages: msgs, has_more: !!page.has_more, frame: page };
    }

    /**
     * Creates a group; resolves with the `group` frame (conversation_id,
     * name, members).
     * @param {string} name
     * @param {string[]} [members]
     */
    createGroup(name, members = []) {
        return this._request({ type: 'create_group', name, members }, ['group']);
    }

    /** @param {string} conversationId @param {string[]} userIds */
    addMembers(conversationId, userIds) {
        return this._request({ type: 'add_members', conversation_id: conversationId,
                               user_ids: userIds }, ['group']);
    }

    /** @param {string} conversationId @param {string[]} userIds */
    removeMembers(conversationId, userIds) {
        return this._request({ type: 'remove_members', conversation_id: conversationId,
                               user_ids: userIds }, ['group']);
    }

    /** Resolves with the pong. */
    ping() {
        return this._request({ type: 'ping' }, ['pong'], { retry: true });
    }

    /**
     * A page of the conversation list (contract part 2, feature
     * `conversations`; rejected with `unsupported` where the server lacks it).
     * The next page starts before the last item's activity (its last
     * message's `server_ts`, and that message's id as `before_message_id`
     * where the server takes it). The items' pointers are noted as the
     * sync's are.
     * @param {{before_ts?: number, before_message_id?: string, limit?: number}} [opts]
     * @returns {Promise<{items: object[], has_more: boolean}>}
     */
    async listConversations(opts = {}) {
        const frame = { type: 'conversations' };
        if (opts.before_ts !== undefined) frame.before_ts = opts.before_ts;
        if (opts.before_message_id !== undefined) frame.before_message_id = opts.before_message_id;
        if (opts.limit !== undefined) frame.limit = opts.limit;
        const page = await this._request(frame, ['conversations'],
                                         { retry: true, feature: 'conversations' });
        for (const it of Array.isArray(page.items) ? page.items : []) this._noteItem(it);
        return page;
    }

    /**
     * Every member's delivered/read pointers of a conversation (part 2,
     * feature `receipts`). The others' lowest become the conversation's
     * ticks, kept up to date by the receipts that follow.
     * @param {string} conversationId
     * @returns {Promise<{members: {user_id: string, delivered_seq: number, read_seq: number}[]}>}
     */
    async fetchReceipts(conversationId) {
        const f = await this._request({ type: 'receipts', conversation_id: conversationId },
                                      ['receipts'], { retry: true, feature: 'receipts' });
        if (Array.isArray(f.members)) {
            const members = new Map();
            for (const m of f.members) {
                if (m && typeof m.user_id === 'string' && m.user_id !== this.userId) {
                    members.set(m.user_id, { delivered: Number(m.delivered_seq) || 0,
                                             read: Number(m.read_seq) || 0 });
                }
            }
            const o = this._othersOf(conversationId);
            o.members = members;
            this._othersFromMembers(conversationId);
        }
        return f;
    }

    /**
     * How far every other member has got in a conversation: the highest
     * seq all of them have delivered (double tick) and read (blue tick);
     * null while the server has not said.
     * @param {string} conversationId
     * @returns {{delivered: number, read: number}|null}
     */
    ticks(conversationId) {
        const o = this._others.get(conversationId);
        return o && o.known ? { delivered: o.delivered, read: o.read } : null;
    }

    /**
     * Hands the client a fresh token. It is used for every later connect;
     * where the server supports `auth`, the live connection is renewed too
     * and this resolves with `auth_ok` (`expires_at`); otherwise with null.
     * @param {string} token
     * @returns {Promise<object|null>}
     */
    async renewToken(token) {
        if (typeof this._token !== 'function') this._token = token;
        if (!this._live || !this.supports('auth')) return null;
        return this._request({ type: 'auth', token }, ['auth_ok'], { feature: 'auth' });
    }

    // ------------------------------------------------------------- receipts

    /**
     * Tells the server this device holds every message of the conversation
     * up to seq. Done automatically for arrivals unless autoDelivered is off.
     */
    markDelivered(conversationId, seq) {
        this._wantReceipt(conversationId, 'delivered', seq);
    }

    /** Tells the server the user has read the conversation up to seq. */
    markRead(conversationId, seq) {
        this._wantReceipt(conversationId, 'read', seq);
    }

    _wantReceipt(conv, state, seq) {
        if (!Number.isInteger(seq) || seq <= 0 || this._left.has(conv)) return;
        const w = this._receiptsWanted.get(conv) || { delivered: 0, read: 0 };
        if (seq > w[state]) w[state] = seq;
        this._receiptsWanted.set(conv, w);
        this._flushReceipts(conv);
    }

    /** A conversation item (sync or page): our pointers, the others'. */
    _noteItem(it) {
        if (!it || typeof it.conversation_id !== 'string') return;
        this._notePointers(it.conversation_id, it.delivered_seq, it.read_seq);
        if (Number.isInteger(it.others_delivered_seq) && Number.isInteger(it.others_read_seq)) {
            this._noteOthers(it.conversation_id, it.others_delivered_seq, it.others_read_seq);
        }
    }

    _othersOf(conv) {
        let o = this._others.get(conv);
        if (!o) {
            o = { delivered: 0, read: 0, known: false, members: null };
            this._others.set(conv, o);
        }
        return o;
    }

    /** The others' pointers only move forward; read implies delivered. */
    _noteOthers(conv, delivered, read) {
        const o = this._othersOf(conv);
        const d = Math.max(o.delivered, delivered, read);
        const r = Math.max(o.read, read);
        if (o.known && d === o.delivered && r === o.read) return;
        o.known = true;
        o.delivered = d;
        o.read = r;
        this.emit('ticks', conv, { delivered: d, read: r });
    }

    _othersFromMembers(conv) {
        const o = this._others.get(conv);
        if (!o || !o.members) return;
        let d = Infinity;
        let r = Infinity;
        for (const m of o.members.values()) {
            d = Math.min(d, m.delivered);
            r = Math.min(r, m.read);
        }
        // nobody else: nobody holds a tick back
        if (d === Infinity) return;
        this._noteOthers(conv, d, r);
    }

    /** Another member's receipt moves its pointer, and maybe the ticks. */
    _onReceipt(f) {
        const conv = f.conversation_id;
        const user = f.user_id;
        if (typeof conv !== 'string' || typeof user !== 'string' || user === this.userId
            || !Number.isInteger(f.seq)) return;
        const read = f.state === 'read';
        if (directPeer(conv, this.userId) === user) {
            // the one other member; a delivered leaves read where it was
            this._noteOthers(conv, f.seq, read ? f.seq : 0);
            return;
        }
        const o = this._others.get(conv);
        if (!o || !o.members) return;
        const m = o.members.get(user) || { delivered: 0, read: 0 };
        m.delivered = Math.max(m.delivered, f.seq);
        if (read) m.read = Math.max(m.read, f.seq);
        o.members.set(user, m);
        this._othersFromMembers(conv);
    }

    _notePointers(conv, delivered, read) {
        if (!conv) return;
        const s = this._receiptsSent.get(conv) || { delivered: 0, read: 0 };
        if (Number.isInteger(delivered) && delivered > s.delivered) s.delivered = delivered;
        if (Number.isInteger(read) && read > s.read) s.read = read;
        if (s.read > s.delivered) s.delivered = s.read;
        this._receiptsSent.set(conv, s);
    }

    _flushReceipts(only) {
        if (!this._live) return;
        const convs = only ? [only] : [...this._receiptsWanted.keys()];
        for (const conv of convs) {
            const w = this._receiptsWanted.get(conv);
            if (!w) continue;
            const s = this._receiptsSent.get(conv) || { delivered: 0, read: 0 };
            // read first: it implies delivered, which then needs no frame
            for (const state of ['read', 'delivered']) {
                if (w[state] > s[state]) {
                    this._raw({ type: 'receipt', conversation_id: conv, seq: w[state], state });
                    s[state] = w[state];
                }
                if (s.read > s.delivered) s.delivered = s.read;
            }
            this._receiptsSent.set(conv, s);
        }
    }

    _scheduleDelivered(conv) {
        if (!this.opts.autoDelivered || this._deliverTimers.has(conv)) return;
        this._deliverTimers.set(conv, this._setTimer(() => {
            this._deliverTimers.delete(conv);
            this.markDelivered(conv, this.cursor(conv));
        }, this.opts.deliveredDelayMs));
    }

    // ------------------------------------------------------------- presence

    /**
     * Subscribes to users' presence (kept across reconnects). Each answers
     * with a `presence` event now and on every change.
     * @param {string[]} userIds
     */
    subscribePresence(userIds) {
        const fresh = userIds.filter((u) => !this._subs.has(u));
        for (const u of fresh) this._subs.add(u);
        this._sendSubscriptions(fresh);
    }

    /** @param {string[]} userIds */
    unsubscribePresence(userIds) {
        const gone = userIds.filter((u) => this._subs.delete(u));
        for (let i = 0; i < gone.length; i += 1000) {
            this._raw({ type: 'presence_unsubscribe', user_ids: gone.slice(i, i + 1000) });
        }
    }

    /** @param {'online'|'away'} status kept across reconnects */
    setPresence(status) {
        this._status = status;
        this._raw({ type: 'presence_set', status });
    }

    _sendSubscriptions(ids) {
        for (let i = 0; i < ids.length; i += 1000) {
            this._raw({ type: 'presence_subscribe', user_ids: ids.slice(i, i + 1000) });
        }
    }

    // --------------------------------------------------------------- typing

    /**
     * Call on every keystroke: sends a typing `start` at most once per
     * typingThrottleMs per conversation (a start is valid for 6 s on the
     * other side). Returns whether a frame went out.
     */
    typing(conversationId) {
        if (this._left.has(conversationId)) return false;
        const now = this._now();
        const last = this._typingOut.get(conversationId);
        if (last !== undefined && now - last < this.opts.typingThrottleMs) return false;
        if (!this._raw({ type: 'typing', conversation_id: conversationId, state: 'start' })) return false;
        this._typingOut.set(conversationId, now);
        return true;
    }

    /** Sends a typing `stop` if a start of ours may still be showing. */
    stopTyping(conversationId) {
        const last = this._typingOut.get(conversationId);
        if (last === undefined) return false;
        this._typingOut.delete(conversationId);
        if (this._now() - last >= TYPING_TTL_MS) return false;
        return this._raw({ type: 'typing', conversation_id: conversationId, state: 'stop' });
    }

    /** User ids typing in a conversation now. */
    typingUsers(conversationId) {
        const m = this._typingIn.get(conversationId);
        return m ? [...m.keys()] : [];
    }

    _onTyping(f) {
        const conv = f.conversation_id;
        const user = f.user_id;
        if (!conv || !user || user === this.userId) return;
        if (f.state !== 'start') {
            this._typingEnded(conv, user);
            return;
        }
        let m = this._typingIn.get(conv);
        if (!m) { m = new Map(); this._typingIn.set(conv, m); }
        const known = m.has(user);
        if (known) this._clearTimer(m.get(user));
        m.set(user, this._setTimer(() => this._typingEnded(conv, user), TYPING_TTL_MS));
        if (!known) this.emit('typing', { conversation_id: conv, user_id: user, typing: true });
    }

    _typingEnded(conv, user) {
        const m = this._typingIn.get(conv);
        if (!m || !m.has(user)) return;
        this._clearTimer(m.get(user));
        m.delete(user);
        if (!m.size) this._typingIn.delete(conv);
        this.emit('typing', { conversation_id: conv, user_id: user, typing: false });
    }
}

/** When a conversation item last saw activity (ms), for list paging. */
export function activityTs(item) {
    if (!item) return 0;
    if (Number.isFinite(item.last_activity_ts)) return item.last_activity_ts;
    if (Number.isFinite(item.updated_at)) return item.updated_at;
    if (item.last_message && Number.isFinite(item.last_message.server_ts)) {
        return item.last_message.server_ts;
    }
    return 0;
}

function byteLength(s) {
    if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(s).length;
    return unescape(encodeURIComponent(s)).length;
}
