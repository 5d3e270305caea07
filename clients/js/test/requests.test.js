// Sends retried on one client_msg_id, requests matched by req_id,
// receipts, presence, typing, and the contract's second part.

import test from 'node:test';
import assert from 'node:assert/strict';

import { ChatError, TYPING_TTL_MS } from '../chat.js';
import { setup, ready, msg, flush } from './fakes.js';

const A = 'dm:alice:bob';

function ackFor(send, seq) {
    return { type: 'ack', client_msg_id: send.client_msg_id, message_id: `m${seq}`,
             conversation_id: send.conversation_id || A, seq, server_ts: seq };
}

test('send: retried with the same client_msg_id across timeouts and reconnects until ack', async () => {
    const { client, server, clock } = setup();
    const p = client.send({ to: 'bob', body: 'hello' });
    let settled = false;
    p.then(() => { settled = true; });
    client.connect();
    server.last.accept();
    const first = server.last.lastOf('send');
    assert.equal(first.to, 'bob');
    assert.equal(first.body, 'hello');
    assert.match(first.client_msg_id, /^[0-9a-f]{32}$/);

    await clock.advance(10000);                      // no ack: sent again
    assert.equal(server.last.frames('send').length, 2);

    server.last.drop(1006);                          // lost: sent again after the next hello
    await clock.advance(1000);
    server.last.accept();
    assert.equal(server.last.frames('send').length, 1);

    const all = server.sockets.flatMap((ws) => ws.frames('send'));
    assert.equal(all.length, 3);
    assert.ok(all.every((f) => f.client_msg_id === first.client_msg_id));
    assert.equal(settled, false);

    server.last.push(ackFor(first, 1));
    const ack = await p;
    assert.equal(ack.seq, 1);
    assert.deepEqual(client.pendingSends(), []);
    server.last.push(ackFor(first, 1));              // a retry's second ack: ignored
    await clock.advance(60000);
    assert.equal(server.sockets.flatMap((ws) => ws.frames('send')).length, 3,
                 'nothing more once acked');
});

test('send: rate_limited waits retry_after_ms, unavailable backs off, same id', async () => {
    const { client, server, clock } = await ready();
    const ws = server.last;
    const p = client.send({ conversation_id: A, body: 'x', client_msg_id: 'cm-1' });
    ws.push({ type: 'error', code: 'rate_limited', message: 'slow down', retry_after_ms: 700,
              client_msg_id: 'cm-1' });
    await clock.advance(699);
    assert.equal(ws.frames('send').length, 1);
    await clock.advance(1);
    assert.equal(ws.frames('send').length, 2);
    ws.push({ type: 'error', code: 'unavailable', message: 'backend down', client_msg_id: 'cm-1' });
    await clock.advance(5000);
    assert.equal(ws.frames('send').length, 3);
    assert.ok(ws.frames('send').every((f) => f.client_msg_id === 'cm-1'));
    ws.push(ackFor({ client_msg_id: 'cm-1' }, 4));
    assert.equal((await p).message_id, 'm4');
});

test('send: an error retrying cannot change rejects', async () => {
    const { client, server } = await ready();
    const p = client.send({ conversation_id: 'g:nope', body: 'x', client_msg_id: 'cm-2' });
    server.last.push({ type: 'error', code: 'forbidden', message: 'no', client_msg_id: 'cm-2' });
    await assert.rejects(p, (e) => e instanceof ChatError && e.code === 'forbidden');
    assert.deepEqual(client.pendingSends(), []);
});

test('send: over max_message_bytes is refused locally', async () => {
    const { client, server } = await ready({}, { hello: { max_message_bytes: 100 } });
    await assert.rejects(client.send({ conversation_id: A, body: 'é'.repeat(60) }),
                         { code: 'too_large' });
    assert.equal(server.last.frames('send').length, 0);
});

test('sends go out in order and each ack resolves its own', async () => {
    const { client, server } = await ready();
    const ps = [1, 2, 3].map((i) => client.send({ conversation_id: A, body: `b${i}` }));
    const sent = server.last.frames('send');
    assert.deepEqual(sent.map((f) => f.body), ['b1', 'b2', 'b3']);
    server.last.push(ackFor(sent[2], 3));
    server.last.push(ackFor(sent[0], 1));
    server.last.push(ackFor(sent[1], 2));
    const acks = await Promise.all(ps);
    assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3]);
});

test('requests: answers matched by req_id, in any order; errors reject only theirs', async () => {
    const { client, server } = await ready();
    const ws = server.last;
    const h1 = client.history(A, { limit: 1 });
    const h2 = client.history('g:2', { limit: 2 });
    const g = client.createGroup('team', ['bob', 'carol']);
    const [f1, f2] = ws.frames('history');
    const fg = ws.lastOf('create_group');
    assert.notEqual(f1.req_id, f2.req_id);
    assert.deepEqual(fg.members, ['bob', 'carol']);
    ws.push({ type: 'history', req_id: 'someone-else', conversation_id: A, messages: [], has_more: false });
    ws.push({ type: 'error', code: 'forbidden', message: 'not a member', req_id: f2.req_id });
    ws.push({ type: 'group', req_id: fg.req_id, conversation_id: 'g:abc', name: 'team',
              members: [{ user_id: 'alice', role: 'admin' }] });
    ws.push({ type: 'history', req_id: f1.req_id, conversation_id: A,
              messages: [msg(A, 7)], has_more: true });
    assert.deepEqual((await h1).messages.map((m) => m.seq), [7]);
    await assert.rejects(h2, { code: 'forbidden' });
    assert.equal((await g).conversation_id, 'g:abc');
});

test('requests across a lost connection: reads asked again, changes rejected', async () => {
    const { client, server, clock } = await ready();
    const h = client.history(A);
    const g = assert.rejects(client.addMembers('g:1', ['dave']), { code: 'disconnected' });
    const hid = server.last.lastOf('history').req_id;
    server.last.drop(1006);
    await g;
    await clock.advance(1000);
    server.last.accept();
    const again = server.last.lastOf('history');
    assert.equal(again.req_id, hid);
    server.last.push({ type: 'history', req_id: hid, conversation_id: A, messages: [], has_more: false });
    assert.deepEqual((await h).messages, []);
});

test('requests: timeouts', async () => {
    const { client, server, clock } = await ready();
    const g = assert.rejects(client.removeMembers('g:1', ['dave']), { code: 'timeout' });
    const h = client.history(A);
    await clock.advance(15000);
    await g;
    assert.equal(server.last.frames('history').length, 2, 'a read is asked again');
    const f = server.last.lastOf('history');
    server.last.push({ type: 'history', req_id: f.req_id, conversation_id: A, messages: [], has_more: false });
    await h;
});

test('contract part 2 without features: unsupported, nothing sent; the new token waits', async () => {
    const { client, server, clock } = await ready();
    await assert.rejects(client.listConversations(), { code: 'unsupported' });
    await assert.rejects(client.fetchReceipts(A), { code: 'unsupported' });
    assert.equal(await client.renewToken('tok2'), null);
    assert.equal(server.last.frames('conversations').length, 0);
    assert.equal(server.last.frames('auth').length, 0);
    server.last.drop(1006);
    await clock.advance(1000);
    assert.match(server.last.url, /access_token=tok2$/);
});

test('contract part 2 with features: auth, conversations, receipts', async () => {
    const { client, server } = await ready({}, {
        hello: { features: ['auth', 'conversations', 'receipts'] },
    });
    const ws = server.last;
    const a = client.renewToken('tok3');
    const fa = ws.lastOf('auth');
    assert.equal(fa.token, 'tok3');
    ws.push({ type: 'auth_ok', req_id: fa.req_id, expires_at: 123 });
    assert.equal((await a).expires_at, 123);

    const c = client.listConversations({ before_ts: 99, limit: 10 });
    const fc = ws.lastOf('conversations');
    assert.deepEqual([fc.before_ts, fc.limit], [99, 10]);
    ws.push({ type: 'conversations', req_id: fc.req_id, items: [], has_more: false });
    assert.deepEqual((await c).items, []);

    const r = client.fetchReceipts(A);
    const fr = ws.lastOf('receipts');
    ws.push({ type: 'error', code: 'bad_request', message: 'unknown type', req_id: fr.req_id });
    await assert.rejects(r, { code: 'bad_request' });
});

test('sync with has_more pages the list where the server supports conversations', async () => {
    const { client, server, of } = setup();
    client.connect();
    const ws = server.last;
    ws.accept({ features: ['conversations'] });
    const sync = ws.lastOf('sync');
    ws.push({ type: 'conversations', req_id: sync.req_id, has_more: true, items: [
        { conversation_id: A, kind: 'direct', last_seq: 1, delivered_seq: 1, read_seq: 1,
          unread: 0, last_message: { ...msg(A, 1), server_ts: 5000 } }] });
    ws.push({ type: 'sync_done', req_id: sync.req_id });
    await flush();
    const page = ws.lastOf('conversations');
    assert.equal(page.before_ts, 5000);
    ws.push({ type: 'conversations', req_id: page.req_id, has_more: false,
              items: [{ conversation_id: 'g:old', kind: 'group', last_seq: 3 }] });
    await flush();
    assert.deepEqual(of('conversations').map((e) => e[1].source), ['sync', 'page']);
});

test('receipts: delivered sent for arrivals, read on demand, pointers only forward', async () => {
    const { client, server, clock } = await ready({}, {
        items: [{ conversation_id: A, kind: 'direct', last_seq: 2, delivered_seq: 2,
                  read_seq: 1, unread: 1, last_message: null }],
    });
    const ws = server.last;
    ws.push(msg(A, 3));
    ws.push(msg(A, 4));
    await clock.advance(100);
    assert.deepEqual(ws.frames('receipt'), [
        { type: 'receipt', conversation_id: A, seq: 4, state: 'delivered' }]);
    client.markRead(A, 4);
    client.markRead(A, 3);
    client.markDelivered(A, 4);
    assert.deepEqual(ws.frames('receipt').map((f) => [f.state, f.seq]),
                     [['delivered', 4], ['read', 4]]);
    // our own messages need none
    ws.push({ type: 'ack', client_msg_id: 'z', message_id: 'm5', conversation_id: A, seq: 5,
              server_ts: 5 });
    await clock.advance(1000);
    assert.equal(ws.frames('receipt').length, 2);
    // others' receipts are events
    ws.push({ type: 'receipt', conversation_id: A, user_id: 'bob', state: 'read', seq: 5, server_ts: 9 });
    assert.ok(client.state === 'ready');
});

test('presence: subscriptions and status survive reconnects', async () => {
    const { client, server, clock, of } = setup();
    client.subscribePresence(['bob', 'carol']);
    client.setPresence('away');
    client.connect();
    server.last.accept();
    assert.deepEqual(server.last.lastOf('presence_subscribe').user_ids, ['bob', 'carol']);
    assert.equal(server.last.lastOf('presence_set').status, 'away');
    server.last.push({ type: 'presence', user_id: 'bob', status: 'online', last_seen: null });
    assert.equal(client.presence.get('bob').status, 'online');
    assert.equal(of('presence').length, 1);
    client.unsubscribePresence(['carol']);
    assert.deepEqual(server.last.lastOf('presence_unsubscribe').user_ids, ['carol']);
    server.last.drop(1006);
    await clock.advance(1000);
    server.last.accept();
    assert.deepEqual(server.last.lastOf('presence_subscribe').user_ids, ['bob']);
    assert.equal(server.last.lastOf('presence_set').status, 'away');
});

test('typing received: valid 6 s unless renewed; a stop or a message ends it', async () => {
    const { client, server, clock, of } = await ready();
    const ws = server.last;
    const start = { type: 'typing', conversation_id: A, user_id: 'bob', state: 'start' };
    ws.push(start);
    assert.deepEqual(client.typingUsers(A), ['bob']);
    assert.deepEqual(of('typing').at(-1)[0], { conversation_id: A, user_id: 'bob', typing: true });
    await clock.advance(TYPING_TTL_MS - 1);
    assert.deepEqual(client.typingUsers(A), ['bob']);
    ws.push(start);                                   // renewed
    await clock.advance(TYPING_TTL_MS - 1);
    assert.deepEqual(client.typingUsers(A), ['bob']);
    assert.equal(of('typing').length, 1, 'a renewal is no new event');
    await clock.advance(1);
    assert.deepEqual(client.typingUsers(A), []);
    assert.equal(of('typing').at(-1)[0].typing, false);

    ws.push(start);
    ws.push({ type: 'typing', conversation_id: A, user_id: 'bob', state: 'stop' });
    assert.deepEqual(client.typingUsers(A), []);
    ws.push(start);
    ws.push(msg(A, 1, 'bob'));
    assert.deepEqual(client.typingUsers(A), []);
    assert.deepEqual(of('typing').map((e) => e[0].typing), [true, false, true, false, true, false]);
});

test('typing sent: one start per 2 s per conversation; stop only after a start', async () => {
    const { client, server, clock } = await ready();
    const ws = server.last;
    assert.equal(client.stopTyping(A), false);
    assert.equal(client.typing(A), true);
    assert.equal(client.typing(A), false);
    assert.equal(client.typing('g:1'), true);
    await clock.advance(1999);
    assert.equal(client.typing(A), false);
    await clock.advance(1);
    assert.equal(client.typing(A), true);
    client.send({ conversation_id: A, body: 'x' });  // a send ends typing
    assert.deepEqual(ws.frames('typing').map((f) => [f.conversation_id, f.state]),
                     [[A, 'start'], ['g:1', 'start'], [A, 'start'], [A, 'stop']]);
});

test('removed from a group: no receipts or typing of ours there until added back', async () => {
    const { client, server, clock } = await ready();
    const ws = server.last;
    const G = 'g:77';
    const system = (seq, event) => ({ ...msg(G, seq, 'bob'), kind: 'system',
                                      body: { event, user_ids: ['alice'], by: 'bob' } });
    ws.push(msg(G, 1, 'bob'));
    await clock.advance(100);
    assert.equal(ws.frames('receipt').length, 1);
    ws.push(system(2, 'members_removed'));
    assert.ok(client.hasLeft(G));
    await clock.advance(100);
    client.markRead(G, 2);
    assert.equal(client.typing(G), false);
    assert.equal(ws.frames('receipt').length, 1, 'nothing the server would refuse');
    ws.push(system(3, 'members_added'));
    assert.ok(!client.hasLeft(G));
    await clock.advance(100);
    client.markRead(G, 3);
    assert.deepEqual(ws.frames('receipt').map((f) => [f.state, f.seq]),
                     [['delivered', 1], ['delivered', 3], ['read', 3]]);
});

test('receipts after a reconnect: sent again where the sync shows the server lacks them', async () => {
    const { client, server, clock } = await ready();
    client.markRead(A, 7);
    assert.equal(server.last.frames('receipt').length, 1);
    server.last.drop(1006);                         // the receipt may be lost with it
    await clock.advance(1000);
    server.last.accept();
    assert.equal(server.last.frames('receipt').length, 0, 'not before the sync says');
    server.last.finishSync([{ conversation_id: A, kind: 'direct', last_seq: 9, delivered_seq: 5,
                              read_seq: 5, unread: 4, last_message: null },
                            { conversation_id: 'g:9', kind: 'group', last_seq: 3, delivered_seq: 3,
                              read_seq: 3, unread: 0, last_message: null }]);
    assert.deepEqual(server.last.frames('receipt').map((f) => [f.conversation_id, f.state, f.seq]),
                     [[A, 'read', 7]]);
    client.markRead(A, 7);
    assert.equal(server.last.frames('receipt').length, 1);
});

test('ticks: the others\' pointers from the sync and its pages, forward only', async () => {
    const { client, server } = setup();
    const ticks = [];
    client.on('ticks', (...args) => ticks.push(args));
    client.connect();
    const ws = server.last;
    ws.accept({ features: ['conversations', 'receipts'] });
    const sync = ws.lastOf('sync');
    ws.push({ type: 'conversations', req_id: sync.req_id, has_more: true, items: [
        { conversation_id: A, kind: 'direct', last_seq: 9, delivered_seq: 9, read_seq: 9,
          others_delivered_seq: 8, others_read_seq: 6, unread: 0,
          last_message: { ...msg(A, 9), message_id: '900', server_ts: 5000 } },
        { conversation_id: 'g:1', kind: 'group', last_seq: 3, delivered_seq: 3, read_seq: 3,
          unread: 0, last_message: { ...msg('g:1', 3), message_id: '300', server_ts: 4000 } }] });
    ws.push({ type: 'sync_done', req_id: sync.req_id });
    await flush();
    assert.deepEqual(client.ticks(A), { delivered: 8, read: 6 });
    assert.equal(client.ticks('g:1'), null, 'a server without others_* says nothing');

    // the next page starts at the last item, within its ms by message id
    const page = ws.lastOf('conversations');
    assert.deepEqual([page.before_ts, page.before_message_id], [4000, '300']);
    ws.push({ type: 'conversations', req_id: page.req_id, has_more: false, items: [
        { conversation_id: 'g:old', kind: 'group', last_seq: 5, delivered_seq: 5, read_seq: 5,
          others_delivered_seq: 5, others_read_seq: 2, unread: 0, last_message: null }] });
    await flush();
    assert.deepEqual(client.ticks('g:old'), { delivered: 5, read: 2 });

    // an older answer never moves them back; a newer one does
    const p = client.listConversations({ limit: 1 });
    const f = ws.lastOf('conversations');
    ws.push({ type: 'conversations', req_id: f.req_id, has_more: true, items: [
        { conversation_id: A, kind: 'direct', last_seq: 9, delivered_seq: 9, read_seq: 9,
          others_delivered_seq: 7, others_read_seq: 9, unread: 0, last_message: null }] });
    await p;
    assert.deepEqual(client.ticks(A), { delivered: 9, read: 9 });
    assert.deepEqual(ticks.map((e) => e[0]), [A, 'g:old', A]);
});

test('ticks: a direct conversation follows the other\'s receipts', async () => {
    const { client, server } = await ready();
    const ws = server.last;
    ws.push({ type: 'receipt', conversation_id: A, user_id: 'bob', state: 'delivered', seq: 4,
              server_ts: 1 });
    assert.deepEqual(client.ticks(A), { delivered: 4, read: 0 });
    ws.push({ type: 'receipt', conversation_id: A, user_id: 'bob', state: 'read', seq: 3,
              server_ts: 2 });
    assert.deepEqual(client.ticks(A), { delivered: 4, read: 3 });
    ws.push({ type: 'receipt', conversation_id: A, user_id: 'alice', state: 'read', seq: 9,
              server_ts: 3 });
    assert.deepEqual(client.ticks(A), { delivered: 4, read: 3 }, 'our own receipts are no ticks');
});

test('ticks: a group\'s from a receipts answer, kept up by receipts and membership', async () => {
    const { client, server } = await ready({}, { hello: { features: ['receipts'] } });
    const ws = server.last;
    const G = 'g:5';
    ws.push({ type: 'receipt', conversation_id: G, user_id: 'bob', state: 'read', seq: 2,
              server_ts: 1 });
    assert.equal(client.ticks(G), null, 'one member of a group says nothing of all');

    const r = client.fetchReceipts(G);
    const fr = ws.lastOf('receipts');
    assert.equal(fr.conversation_id, G);
    ws.push({ type: 'receipts', req_id: fr.req_id, conversation_id: G, members: [
        { user_id: 'alice', delivered_seq: 9, read_seq: 9 },
        { user_id: 'bob', delivered_seq: 7, read_seq: 5 },
        { user_id: 'carol', delivered_seq: 6, read_seq: 3 }] });
    assert.equal((await r).members.length, 3);
    assert.deepEqual(client.ticks(G), { delivered: 6, read: 3 });

    ws.push({ type: 'receipt', conversation_id: G, user_id: 'carol', state: 'read', seq: 8,
              server_ts: 2 });
    assert.deepEqual(client.ticks(G), { delivered: 7, read: 5 });

    // dave joins at seq 10: nothing before it to receive; bob leaves
    ws.push({ ...msg(G, 10, 'alice'), kind: 'system',
              body: { event: 'members_added', user_ids: ['dave'], by: 'alice' } });
    assert.deepEqual(client.ticks(G), { delivered: 7, read: 5 });
    ws.push({ ...msg(G, 11, 'alice'), kind: 'system',
              body: { event: 'members_removed', user_ids: ['bob'], by: 'alice' } });
    assert.deepEqual(client.ticks(G), { delivered: 8, read: 8 });
});
