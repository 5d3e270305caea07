// The ngx_chat web client: a page on top of ../js/chat.js, no framework.
//
// The token comes from the URL fragment (#token=<jwt>, then removed from the
// address bar and kept in sessionStorage) or from the sign-in form. The
// WebSocket is /chat on the same host, or ?ws=<url>.

import { ChatClient, directId, directPeer, makeClientMsgId } from '../js/chat.js';

const $ = (sel) => document.querySelector(sel);
const USER_ID = /^[A-Za-z0-9_.@-]{1,64}$/;
const PAGE = 30;

/** Everything the page knows; the DOM is drawn from it. */
const app = {
    client: null,
    me: null,
    everReady: false,
    convs: new Map(),        // conversation id -> conversation (see conv())
    active: null,            // id of the open conversation
    errors: [],              // errors the server sent that no request owned
};
window.chatApp = app;        // a handle for the console (and the e2e test)

// ------------------------------------------------------------- start-up

function init() {
    bindUi();
    const frag = new URLSearchParams(location.hash.slice(1));
    let token = frag.get('token');
    if (token) {
        sessionStorage.setItem('chat.token', token);
        history.replaceState(null, '', location.pathname + location.search);
    } else {
        token = sessionStorage.getItem('chat.token');
    }
    if (token) signIn(token);
    else showSignIn('');
}

function wsUrl() {
    const q = new URLSearchParams(location.search).get('ws');
    if (q) return q;
    const u = new URL('/chat', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
}

function tokenClaims(token) {
    try {
        const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
        return JSON.parse(atob(part));
    } catch (e) {
        return null;
    }
}

function showSignIn(error) {
    $('#app').hidden = true;
    $('#signin').hidden = false;
    $('#signin-error').textContent = error || '';
    $('#token').focus();
}

function signIn(token) {
    token = token.trim();
    const claims = tokenClaims(token);
    if (!claims || !claims.sub) {
        showSignIn('That is not a JWT.');
        return;
    }
    if (claims.exp && claims.exp * 1000 < Date.now()) {
        sessionStorage.removeItem('chat.token');
        showSignIn('That token has expired: mint a new one.');
        return;
    }
    sessionStorage.setItem('chat.token', token);
    $('#signin').hidden = true;
    $('#app').hidden = false;
    $('#me-name').textContent = claims.sub;
    app.me = claims.sub;

    const client = new ChatClient({ url: wsUrl(), token });
    app.client = client;
    client.on('state', onState);
    client.on('hello', (h) => { app.me = h.user_id; $('#me-name').textContent = h.user_id; });
    client.on('conversations', onConversations);
    client.on('message', onMessage);
    client.on('receipt', onReceipt);
    client.on('presence', () => render());
    client.on('typing', () => render());
    client.on('group', onGroup);
    client.on('error', (e) => {
        app.errors.push({ code: e.code, message: e.message });
        toast(`${e.code}: ${e.message}`);
    });
    client.connect();
}

function signOut() {
    if (app.client) app.client.close();
    app.client = null;
    app.convs.clear();
    app.active = null;
    app.everReady = false;
    sessionStorage.removeItem('chat.token');
    $('#conv-list').replaceChildren();
    openConversation(null);
    showSignIn('');
}

// ------------------------------------------------------------ the model

/** The conversation with this id, made on first mention. */
function conv(id) {
    let c = app.convs.get(id);
    if (c) return c;
    const direct = id.startsWith('dm:');
    c = {
        id,
        kind: direct ? 'direct' : 'group',
        name: null,
        peer: direct ? directPeer(id, app.me) : null,
        memberCount: direct ? 2 : 0,
        members: null,            // Map user -> role, when known
        lastSeq: 0,
        syncedSeq: 0,             // last_seq at the last sync (its unread covers up to it)
        lastMessage: null,
        lastActivity: 0,
        unread: 0,
        readSeq: 0,               // my read pointer
        messages: new Map(),      // seq -> message
        pending: new Map(),       // client_msg_id -> unsent or unacked message
        receipts: new Map(),      // other user -> {delivered, read}
        othersDelivered: 0,       // from the list (contract part 2), when given
        othersRead: 0,
        olderDone: false,
        loadingOlder: false,
        receiptsAsked: false,
        left: false,
    };
    app.convs.set(id, c);
    if (c.peer) app.client.subscribePresence([c.peer]);
    return c;
}

function title(c) {
    if (c.kind === 'direct') return c.peer || c.id;
    return c.name || 'Group';
}

function others(c) {
    if (c.kind === 'direct') return c.peer ? [c.peer] : [];
    return c.members ? [...c.members.keys()].filter((u) => u !== app.me) : null;
}

function noteMessage(c, m) {
    c.messages.set(m.seq, m);
    if (m.seq >= c.lastSeq) {
        c.lastSeq = m.seq;
        c.lastMessage = m;
    }
    c.lastActivity = Math.max(c.lastActivity, m.server_ts || 0);
}

function setMembers(c, members) {
    c.members = new Map(members.map((m) => [m.user_id, m.role || 'member']));
    c.memberCount = c.members.size;
    app.client.subscribePresence(members.map((m) => m.user_id).filter((u) => u !== app.me));
}

/** Membership follows the group's system messages. */
function applySystem(c, m) {
    const b = m.body || {};
    const ids = Array.isArray(b.user_ids) ? b.user_ids : [];
    if (b.event === 'group_created') {
        if (b.name) c.name = b.name;
        if (!c.members) {
            const list = [{ user_id: b.by, role: 'admin' },
                          ...ids.filter((u) => u !== b.by).map((u) => ({ user_id: u, role: 'member' }))];
            setMembers(c, list);
        }
    } else if (b.event === 'members_added' && c.members) {
        for (const u of ids) if (!c.members.has(u)) c.members.set(u, 'member');
        c.memberCount = c.members.size;
        app.client.subscribePresence(ids.filter((u) => u !== app.me));
    } else if (b.event === 'members_removed' && c.members) {
        for (const u of ids) c.members.delete(u);
        c.memberCount = c.members.size;
    }
    if (b.event === 'members_removed' && ids.includes(app.me)) c.left = true;
    if (b.event === 'members_added' && ids.includes(app.me)) c.left = false;
}

// --------------------------------------------------------------- events

function onState(state, detail) {
    const el = $('#conn-state');
    el.dataset.state = state;
    const text = {
        connecting: 'connecting…',
        syncing: 'syncing…',
        ready: '',
        reconnecting: `reconnecting in ${Math.ceil((detail.delay || 0) / 1000)} s…`,
        closed: detail.reason === 'replaced' ? 'signed in elsewhere'
            : detail.reason === 'expired' ? 'token expired'
            : detail.reason === 'revoked' ? 'signed out by the server' : 'offline',
    }[state] ?? state;
    el.textContent = text;
    if (state === 'closed' && detail.reason === 'replaced') {
        // another tab or window of this device took over; taking it back is the user's call
        el.append(' ', elem('button', { type: 'button', class: 'link', text: 'use here',
                                        onclick: () => app.client && app.client.connect() }));
    }
    $('#me-dot').dataset.status = state === 'ready' ? ($('#my-status').value) : 'offline';
    if (state === 'ready') app.everReady = true;
    if (state === 'reconnecting' && !app.everReady && detail.attempt >= 2) {
        // never got in: most likely the token was refused
        const c = app.client;
        signOut();
        if (c) showSignIn('Could not connect: the server refused the token or is down.');
    }
    if (state === 'closed' && (detail.reason === 'expired' || detail.reason === 'revoked')) {
        signOut();
        showSignIn(detail.reason === 'expired' ? 'Your token expired: sign in again.'
                                               : 'This device was signed out.');
    }
}

function onConversations(items) {
    for (const it of items) {
        const c = conv(it.conversation_id);
        c.kind = it.kind || c.kind;
        if (it.name) c.name = it.name;
        if (it.member_count) c.memberCount = it.member_count;
        c.syncedSeq = it.last_seq || 0;
        c.lastSeq = Math.max(c.lastSeq, it.last_seq || 0);
        c.readSeq = Math.max(c.readSeq, it.read_seq || 0);
        c.unread = it.unread || 0;
        if (it.last_message && (!c.lastMessage || it.last_message.seq >= c.lastMessage.seq)) {
            c.lastMessage = { conversation_id: c.id, ...it.last_message };
            c.lastActivity = Math.max(c.lastActivity, it.last_message.server_ts || 0);
        }
        if (Number.isInteger(it.others_delivered_seq)) c.othersDelivered = it.others_delivered_seq;
        if (Number.isInteger(it.others_read_seq)) c.othersRead = it.others_read_seq;
    }
    if (app.active) markActiveRead();
    render();
}

function onMessage(m, { source }) {
    const c = conv(m.conversation_id);
    if (m.kind === 'system') applySystem(c, m);
    noteMessage(c, m);
    const fromOther = m.sender_id !== app.me;
    const counted = source === 'live' || (source === 'gap' && m.seq > c.syncedSeq);
    if (fromOther && counted && m.kind !== 'system' && m.seq > c.readSeq) c.unread++;
    if (!fromOther && m.client_msg_id) c.pending.delete(m.client_msg_id);
    if (c.id === app.active) markActiveRead();
    render();
}

function onReceipt(r) {
    const c = conv(r.conversation_id);
    if (r.user_id === app.me) {
        // my other devices: read state follows me
        if (r.state === 'read' && r.seq > c.readSeq) {
            c.readSeq = r.seq;
            if (c.readSeq >= c.lastSeq) c.unread = 0;
        }
    } else {
        const p = c.receipts.get(r.user_id) || { delivered: 0, read: 0 };
        if (r.state === 'read') p.read = Math.max(p.read, r.seq);
        p.delivered = Math.max(p.delivered, r.seq, p.read);
        c.receipts.set(r.user_id, p);
    }
    render();
}

function onGroup(g) {
    const c = conv(g.conversation_id);
    c.kind = 'group';
    if (g.name) c.name = g.name;
    if (Array.isArray(g.members)) setMembers(c, g.members);
    render();
}

// -------------------------------------------------------------- actions

function openConversation(id) {
    app.active = id;
    const c = id ? app.convs.get(id) : null;
    $('#members-panel').hidden = true;
    if (c) {
        if (c.messages.size < PAGE && !c.olderDone) loadOlder(c);
        if (!c.receiptsAsked && app.client.supports('receipts') && c.lastSeq > 0) {
            c.receiptsAsked = true;
            app.client.fetchReceipts(c.id).then((a) => {
                for (const m of a.members || []) {
                    if (m.user_id === app.me) continue;
                    c.receipts.set(m.user_id, { delivered: m.delivered_seq || 0, read: m.read_seq || 0 });
                }
                render();
            }, () => {});
        }
        markActiveRead();
    }
    render({ scrollToEnd: true });
    if (c) $('#composer-text').focus();
}

async function loadOlder(c) {
    if (c.loadingOlder || c.olderDone) return;
    const held = [...c.messages.keys()];
    const lowest = held.length ? Math.min(...held) : 0;
    if (lowest === 1 || (!held.length && c.lastSeq === 0 && !c.syncedSeq && !c.lastMessage)) {
        c.olderDone = true;
        return;
    }
    c.loadingOlder = true;
    render();
    try {
        const opts = { limit: PAGE };
        if (lowest) opts.before_seq = lowest;
        const page = await app.client.history(c.id, opts);
        for (const m of page.messages) {
            if (m.kind === 'system') applySystem(c, m);
            noteMessage(c, m);
        }
        // has_more false is final; true at a page boundary may be wrong, and
        // the empty page that follows ends it
        if (!page.messages.length || !page.has_more) c.olderDone = true;
        if (c.id === app.active) markActiveRead();
    } catch (e) {
        if (e.code === 'forbidden') c.olderDone = true;
        else toast(`history: ${e.code}`);
    } finally {
        c.loadingOlder = false;
        render({ keepBottomDistance: true });
    }
}

function markActiveRead() {
    const c = app.convs.get(app.active);
    if (!c || document.visibilityState === 'hidden') return;
    const top = Math.max(0, ...c.messages.keys());
    if (top > 0 && !c.left) {
        app.client.markRead(c.id, top);
        c.readSeq = Math.max(c.readSeq, top);
    }
    c.unread = 0;
}

function sendMessage(text) {
    const c = app.convs.get(app.active);
    if (!c || !text.trim()) return;
    const cmid = makeClientMsgId();
    const local = { client_msg_id: cmid, sender_id: app.me, body: text, kind: 'text',
                    server_ts: Date.now(), conversation_id: c.id, status: 'pending' };
    c.pending.set(cmid, local);
    c.lastActivity = Date.now();
    const target = c.kind === 'direct' ? { to: c.peer } : { conversation_id: c.id };
    app.client.send({ ...target, body: text, client_msg_id: cmid }).then((ack) => {
        c.pending.delete(cmid);
        noteMessage(c, { ...local, status: undefined, message_id: ack.message_id,
                         seq: ack.seq, server_ts: ack.server_ts });
        render();
    }, (e) => {
        local.status = 'failed';
        local.error = e.code;
        render();
    });
    render({ scrollToEnd: true });
}

function startDirect(user) {
    if (!USER_ID.test(user)) { toast('Not a user id.'); return; }
    if (user === app.me) { toast('That is you.'); return; }
    const c = conv(directId(app.me, user));
    openConversation(c.id);
}

async function createGroup(name, members) {
    try {
        const g = await app.client.createGroup(name, members);
        onGroup(g);
        const c = conv(g.conversation_id);
        c.lastActivity = Date.now();
        openConversation(c.id);
    } catch (e) {
        toast(`create group: ${e.code} ${e.message}`);
    }
}

async function changeMembers(add, user) {
    const c = app.convs.get(app.active);
    if (!c) return;
    try {
        const g = add ? await app.client.addMembers(c.id, [user])
                      : await app.client.removeMembers(c.id, [user]);
        onGroup(g);
    } catch (e) {
        toast(`${add ? 'add' : 'remove'} ${user}: ${e.code}`);
    }
}

// ------------------------------------------------------------ rendering

let renderQueued = null;

/** Coalesces redraws; opts ask to keep the scroll at the end or in place. */
function render(opts = {}) {
    if (!renderQueued) {
        renderQueued = {};
        queueMicrotask(() => {
            const o = renderQueued;
            renderQueued = null;
            draw(o);
        });
    }
    Object.assign(renderQueued, opts);
}

function draw(opts) {
    drawList();
    drawChat(opts);
}

function elem(tag, props = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-(.)/g, (_, x) => x.toUpperCase())] = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
}

function presenceOf(user) {
    return app.client && app.client.presence.get(user);
}

function presenceText(p) {
    if (!p) return '';
    if (p.status === 'online') return 'online';
    if (p.status === 'away') return 'away';
    return p.last_seen ? `last seen ${when(p.last_seen)}` : 'offline';
}

function when(ts) {
    const d = new Date(ts);
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return time;
    return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

function dayName(ts) {
    const d = new Date(ts);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (d.toDateString() === today.toDateString()) return 'Today';
    if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
    return d.toLocaleDateString([], { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' });
}

function preview(c, m) {
    if (!m) return '';
    if (m.kind === 'system') return systemText(c, m);
    if (m.deleted) return 'message deleted';
    const who = m.sender_id === app.me ? 'You: ' : (c.kind === 'group' ? `${m.sender_id}: ` : '');
    return who + (typeof m.body === 'string' ? m.body : '');
}

function systemText(c, m) {
    const b = m.body || {};
    const by = b.by === app.me ? 'You' : b.by;
    const ids = (b.user_ids || []).map((u) => (u === app.me ? 'you' : u)).join(', ');
    switch (b.event) {
    case 'group_created': return `${by} created the group “${b.name || title(c)}”`;
    case 'members_added': return `${by} added ${ids}`;
    case 'members_removed': return `${by} removed ${ids}`;
    default: return b.event || 'system message';
    }
}

function typingText(c) {
    const users = app.client ? app.client.typingUsers(c.id) : [];
    if (!users.length) return '';
    if (users.length === 1) return `${users[0]} is typing…`;
    if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
    return `${users.length} people are typing…`;
}

function drawList() {
    const list = $('#conv-list');
    const convs = [...app.convs.values()]
        .filter((c) => c.lastSeq > 0 || c.pending.size || c.id === app.active || c.kind === 'group')
        .sort((a, b) => b.lastActivity - a.lastActivity || a.id.localeCompare(b.id));
    list.replaceChildren(...convs.map((c) => {
        const typing = typingText(c);
        const p = c.peer ? presenceOf(c.peer) : null;
        return elem('li', {
            'data-conv': c.id, class: c.id === app.active ? 'active' : null,
            onclick: () => openConversation(c.id),
        },
        elem('span', { class: 'avatar', 'data-kind': c.kind, text: title(c).slice(0, 1).toUpperCase() },
           c.peer ? elem('span', { class: 'dot', 'data-status': p ? p.status : 'offline' }) : null),
        elem('div', { class: 'item' },
           elem('div', { class: 'line' },
              elem('span', { class: 'name', text: title(c) }),
              elem('time', { class: 'muted', text: c.lastActivity ? when(c.lastActivity) : '' })),
           elem('div', { class: 'line' },
              elem('span', { class: typing ? 'preview typing' : 'preview',
                           text: typing || preview(c, lastShown(c)) }),
              c.unread > 0 ? elem('span', { class: 'unread', text: String(c.unread) }) : null)));
    }));
}

function lastShown(c) {
    const pend = [...c.pending.values()];
    return pend.length ? pend[pend.length - 1] : c.lastMessage;
}

/**
 * The state of one of my messages: {status: pending|sent|delivered|read|
 * failed, label, readBy ("read by N of M" in groups, else '')}.
 */
function tickOf(c, m) {
    if (m.status === 'failed') return { status: 'failed', label: `Not sent (${m.error})`, readBy: '' };
    if (!m.seq) return { status: 'pending', label: 'Sending…', readBy: '' };
    const who = others(c);
    if (!who || !who.length) {
        // members unknown: what the list said for all others
        const status = c.othersRead >= m.seq ? 'read'
            : c.othersDelivered >= m.seq ? 'delivered' : 'sent';
        return { status, label: status[0].toUpperCase() + status.slice(1), readBy: '' };
    }
    const count = (k, all) => who.filter((u) => {
        const p = c.receipts.get(u);
        return (p && p[k] >= m.seq) || all >= m.seq;
    }).length;
    const read = count('read', c.othersRead);
    const delivered = count('delivered', c.othersDelivered);
    const status = read === who.length ? 'read' : delivered === who.length ? 'delivered' : 'sent';
    const readBy = c.kind === 'group' ? `read by ${read} of ${who.length}` : '';
    const label = status[0].toUpperCase() + status.slice(1) + (readBy ? `, ${readBy}` : '');
    return { status, label, readBy };
}

const TICKS = { pending: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };

function drawMessage(c, m) {
    if (m.kind === 'system') {
        return elem('div', { class: 'msg system', 'data-seq': m.seq }, elem('span', { text: systemText(c, m) }));
    }
    const own = m.sender_id === app.me;
    const tick = own ? tickOf(c, m) : null;
    const text = m.deleted ? 'message deleted' : (typeof m.body === 'string' ? m.body : '');
    return elem('div', {
        class: `msg ${own ? 'own' : 'other'}`, 'data-seq': m.seq, 'data-cmid': m.client_msg_id,
        'data-status': tick && tick.status,
    },
    elem('div', { class: 'bubble' },
       !own && c.kind === 'group' ? elem('div', { class: 'sender', text: m.sender_id }) : null,
       elem('div', { class: 'text', text }),
       elem('div', { class: 'meta' },
          m.edited_at ? elem('span', { text: 'edited' }) : null,
          tick && tick.readBy ? elem('span', { class: 'readby', text: tick.readBy }) : null,
          elem('time', { text: when(m.server_ts || Date.now()) }),
          tick ? elem('span', { class: 'tick', 'data-status': tick.status, title: tick.label,
                              'aria-label': tick.label, text: TICKS[tick.status] }) : null)));
}

function drawChat(opts) {
    const c = app.convs.get(app.active);
    $('#no-chat').hidden = !!c;
    $('#chat-header').hidden = !c;
    $('#composer').hidden = !c;
    $('#typing').hidden = !c;
    const box = $('#messages');
    box.hidden = !c;
    if (!c) {
        box.replaceChildren();
        $('#typing').textContent = '';
        return;
    }
    $('#chat-title').textContent = title(c);
    const sub = $('#chat-subtitle');
    if (c.kind === 'direct') {
        const p = presenceOf(c.peer);
        sub.textContent = presenceText(p);
        sub.dataset.presence = p ? p.status : '';
    } else {
        const n = c.members ? c.members.size : c.memberCount;
        const names = c.members ? [...c.members.keys()].map((u) => (u === app.me ? 'you' : u)).join(', ') : '';
        sub.textContent = `${n} member${n === 1 ? '' : 's'}${names ? `: ${names}` : ''}`;
        sub.dataset.presence = '';
    }
    $('#members-toggle').hidden = c.kind !== 'group';
    drawMembers(c);
    $('#typing').textContent = typingText(c);
    $('#composer-text').disabled = c.left;
    $('#composer-text').placeholder = c.left ? 'You are no longer a member' : 'Write a message…';

    const fromBottom = box.scrollHeight - box.scrollTop;
    const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    const msgs = [...c.messages.values()].sort((a, b) => a.seq - b.seq);
    const nodes = [];
    if (c.loadingOlder) nodes.push(elem('div', { class: 'older muted', text: 'Loading…' }));
    else if (!c.olderDone && msgs.length) {
        nodes.push(elem('button', { class: 'older link', type: 'button', text: 'Load older messages',
                                  onclick: () => loadOlder(c) }));
    }
    let day = '';
    for (const m of msgs) {
        const d = new Date(m.server_ts || 0).toDateString();
        if (d !== day) {
            day = d;
            nodes.push(elem('div', { class: 'day muted', text: dayName(m.server_ts || 0) }));
        }
        nodes.push(drawMessage(c, m));
    }
    for (const m of c.pending.values()) nodes.push(drawMessage(c, m));
    box.replaceChildren(...nodes);
    if (opts.keepBottomDistance && !opts.scrollToEnd) box.scrollTop = box.scrollHeight - fromBottom;
    else if (opts.scrollToEnd || nearEnd) box.scrollTop = box.scrollHeight;
}

function drawMembers(c) {
    const list = $('#member-list');
    if (c.kind !== 'group' || !c.members) {
        list.replaceChildren();
        return;
    }
    const admin = c.members.get(app.me) === 'admin';
    list.replaceChildren(...[...c.members].map(([u, role]) => {
        const p = u === app.me ? null : presenceOf(u);
        const canRemove = !c.left && (admin || u === app.me);
        return elem('li', { 'data-user': u },
                  elem('span', { class: 'dot', 'data-status': u === app.me ? 'online' : (p ? p.status : 'offline') }),
                  elem('span', { class: 'name', text: u === app.me ? `${u} (you)` : u }),
                  role === 'admin' ? elem('span', { class: 'role muted', text: 'admin' }) : null,
                  elem('span', { class: 'muted', text: p ? presenceText(p) : '' }),
                  canRemove ? elem('button', {
                      type: 'button', class: 'link', text: u === app.me ? 'Leave' : 'Remove',
                      onclick: () => changeMembers(false, u),
                  }) : null);
    }));
    $('#add-member').hidden = !admin || c.left;
}

let toastTimer = null;

function toast(text) {
    const t = $('#toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}

// ------------------------------------------------------------------- UI

function bindUi() {
    $('#signin-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        signIn($('#token').value);
    });
    $('#sign-out').addEventListener('click', signOut);
    $('#my-status').addEventListener('change', (ev) => {
        app.client.setPresence(ev.target.value);
        $('#me-dot').dataset.status = ev.target.value;
    });
    $('#new-direct').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const input = $('#new-direct-user');
        startDirect(input.value.trim());
        input.value = '';
    });
    $('#new-group').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const name = $('#new-group-name').value.trim();
        const members = $('#new-group-members').value.split(/[\s,]+/).filter(Boolean);
        const bad = members.find((u) => !USER_ID.test(u));
        if (bad) { toast(`Not a user id: ${bad}`); return; }
        createGroup(name, members);
        $('#new-group-name').value = '';
        $('#new-group-members').value = '';
        $('#new-group-box').open = false;
    });
    $('#members-toggle').addEventListener('click', () => {
        $('#members-panel').hidden = !$('#members-panel').hidden;
    });
    $('#add-member').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const input = $('#add-member-user');
        changeMembers(true, input.value.trim());
        input.value = '';
    });
    const text = $('#composer-text');
    $('#composer').addEventListener('submit', (ev) => {
        ev.preventDefault();
        sendMessage(text.value);
        text.value = '';
        autosize(text);
    });
    text.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            $('#composer').requestSubmit();
        }
    });
    text.addEventListener('input', () => {
        autosize(text);
        if (!app.active) return;
        if (text.value) app.client.typing(app.active);
        else app.client.stopTyping(app.active);
    });
    text.addEventListener('blur', () => { if (app.active) app.client.stopTyping(app.active); });
    $('#messages').addEventListener('scroll', () => {
        const c = app.convs.get(app.active);
        if (c && $('#messages').scrollTop < 40) loadOlder(c);
    });
    document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible' && app.active) { markActiveRead(); render(); }
    });
    window.addEventListener('online', () => app.client && app.client.reconnectNow());
    // typing indicators age out without an event for the list's "last seen"
    setInterval(() => { if (app.client) render(); }, 30000);
}

function autosize(t) {
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
    t.style.overflowY = t.scrollHeight > 160 ? 'auto' : 'hidden';
}

init();
