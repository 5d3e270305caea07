// Test doubles for chat.js: a WebSocket the test plays the server of, and
// a clock whose timers run only when the test advances it. No network.

import { ChatClient } from '../chat.js';

/** Lets pending promise callbacks run. */
export function flush() {
    return new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock {
    constructor(start = 1_700_000_000_000) {
        this.t = start;
        this.nextId = 1;
        this.timers = new Map();
        this.now = () => this.t;
        this.setTimeout = (fn, ms) => {
            const id = this.nextId++;
            this.timers.set(id, { at: this.t + Math.max(0, Math.floor(ms) || 0), fn, ms, id });
            return id;
        };
        this.clearTimeout = (id) => { this.timers.delete(id); };
    }

    /** Runs, in time order, every timer due within ms, then moves there. */
    async advance(ms) {
        const end = this.t + ms;
        for (;;) {
            let first = null;
            for (const tm of this.timers.values()) {
                if (tm.at <= end && (!first || tm.at < first.at
                                     || (tm.at === first.at && tm.id < first.id))) first = tm;
            }
            if (!first) break;
            this.timers.delete(first.id);
            this.t = first.at;
            first.fn();
            await flush();
        }
        this.t = end;
        await flush();
    }
}

/** A fake server side: every socket the client opens, newest last. */
export function fakeServer() {
    const sockets = [];

    class FakeWebSocket {
        constructor(url, protocol) {
            this.url = url;
            this.protocol = protocol;
            this.readyState = 0;
            this.sent = [];
            this.closedByClient = null;
            sockets.push(this);
        }

        send(text) {
            if (this.readyState !== 1) throw new Error('send on a socket that is not open');
            this.sent.push(JSON.parse(text));
        }

        close(code = 1000, reason = '') {
            if (this.readyState === 3) return;
            this.readyState = 3;
            this.closedByClient = { code, reason };
            // a real socket reports its close later
            queueMicrotask(() => this.onclose && this.onclose({ code, reason }));
        }

        // --- the test's side -------------------------------------------

        /** Completes the upgrade and sends the hello. */
        accept(hello = {}) {
            this.readyState = 1;
            if (this.onopen) this.onopen({});
            this.push({
                type: 'hello', user_id: 'alice', device_id: 'web', session_id: '0123456789abcdef',
                server_id: 's1', heartbeat_s: 30, max_message_bytes: 16384, server_ts: 0, ...hello,
            });
        }

        push(frame) {
            if (this.onmessage) this.onmessage({ data: JSON.stringify(frame) });
        }

        /** The server closes (or the link is lost: 1006). */
        drop(code = 1006, reason = '') {
            this.readyState = 3;
            if (this.onclose) this.onclose({ code, reason });
        }

        frames(type) {
            return this.sent.filter((f) => f.type === type);
        }

        lastOf(type) {
            const list = this.frames(type);
            return list[list.length - 1];
        }

        /** Answers the newest sync with these items and messages. */
        finishSync(items = [], messages = []) {
            const sync = this.lastOf('sync');
            if (!sync) throw new Error('no sync was sent');
            this.push({ type: 'conversations', req_id: sync.req_id, items });
            for (const m of messages) this.push({ type: 'message', ...m });
            this.push({ type: 'sync_done', req_id: sync.req_id });
            return sync;
        }
    }

    return {
        WebSocket: FakeWebSocket,
        sockets,
        get last() { return sockets[sockets.length - 1]; },
    };
}

/** A message frame of conversation conv. */
export function msg(conv, seq, sender = 'bob', body = `m${seq}`) {
    return {
        type: 'message', message_id: `${conv}#${seq}`, conversation_id: conv, seq,
        sender_id: sender, client_msg_id: `c${seq}`, kind: 'text', body, server_ts: seq,
    };
}

/**
 * A client wired to a fake server and clock; events of every kind are kept
 * in `events` as [name, ...args].
 */
export function setup(opts = {}) {
    const clock = new FakeClock();
    const server = fakeServer();
    const client = new ChatClient({
        url: 'ws://chat.test/chat',
        token: 'tok',
        WebSocket: server.WebSocket,
        random: () => 0.5,
        now: clock.now,
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
        ...opts,
    });
    const events = [];
    for (const name of ['state', 'message', 'duplicate', 'receipt', 'presence', 'typing',
                        'conversations', 'synced', 'ack', 'error', 'close', 'group']) {
        client.on(name, (...args) => events.push([name, ...args]));
    }
    const of = (name) => events.filter((e) => e[0] === name).map((e) => e.slice(1));
    return { client, clock, server, events, of };
}

/** setup() plus a connection that is through hello and sync. */
export async function ready(opts = {}, { hello = {}, items = [], messages = [] } = {}) {
    const s = setup(opts);
    s.client.connect();
    s.server.last.accept(hello);
    s.server.last.finishSync(items, messages);
    await flush();
    return s;
}
