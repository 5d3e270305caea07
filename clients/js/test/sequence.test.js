// Cursors, duplicates and holes: what the client holds per conversation.

import test from 'node:test';
import assert from 'node:assert/strict';

import { setup, ready, msg, flush } from './fakes.js';

const A = 'dm:alice:bob';
const G = 'g:0001';

const seqsOf = (of, conv) => of('message').filter((e) => e[0].conversation_id === conv)
    .map((e) => e[0].seq);

test('cursor: the highest contiguous seq held, per conversation', async () => {
    const { client, server } = await ready();
    const ws = server.last;
    ws.push(msg(A, 1));
    ws.push(msg(A, 2));
    ws.push(msg(G, 7, 'carol'));        // first seen at 7: earlier ones are history
    assert.deepEqual(client.cursors(), { [A]: 2, [G]: 7 });
    ws.push(msg(A, 4));                 // out of order: 3 is missing
    assert.equal(client.cursor(A), 2);
    ws.push(msg(A, 3));
    assert.equal(client.cursor(A), 4);
    ws.push({ type: 'ack', client_msg_id: 'x', message_id: 'm5', conversation_id: A,
              seq: 5, server_ts: 5 });  // our own message counts as held
    assert.equal(client.cursor(A), 5);
});

test('cursors go out with the sync after every reconnect', async () => {
    const { client, server, clock } = await ready({ cursors: { [G]: 40 } });
    assert.deepEqual(server.sockets[0].lastOf('sync').cursors, { [G]: 40 });
    server.last.push(msg(A, 1));
    server.last.push(msg(A, 2));
    server.last.drop(1006);
    await clock.advance(1000);
    server.last.accept();
    assert.deepEqual(server.last.lastOf('sync').cursors, { [G]: 40, [A]: 2 });
    assert.equal(client.state, 'syncing');
});

test('a conversation listed by sync without messages counts as seen up to last_seq', async () => {
    const { client, server } = await ready({}, {
        items: [{ conversation_id: A, kind: 'direct', last_seq: 9, delivered_seq: 9,
                  read_seq: 9, unread: 0, last_message: null }],
    });
    assert.equal(client.cursor(A), 9);
    server.last.push(msg(A, 10));
    assert.equal(client.cursor(A), 10);
    assert.equal(server.last.frames('history').length, 0);
});

test('duplicates by (conversation, seq) are delivered once', async () => {
    const { server, clock, of } = await ready();
    const ws = server.last;
    ws.push(msg(A, 1));
    ws.push(msg(A, 1));
    ws.push(msg(A, 2));
    ws.push(msg(G, 1, 'carol'));        // same seq, other conversation: not a duplicate
    ws.push(msg(A, 2));
    assert.deepEqual(seqsOf(of, A), [1, 2]);
    assert.deepEqual(seqsOf(of, G), [1]);
    assert.equal(of('duplicate').length, 2);

    // a sync after a reconnect that sends held ones again
    ws.drop(1006);
    await clock.advance(1000);
    server.last.accept();
    server.last.finishSync([], [msg(A, 2), msg(A, 3)]);
    assert.deepEqual(seqsOf(of, A), [1, 2, 3]);
    assert.equal(of('message').at(-1)[1].source, 'sync');
});

test('gap on a live connection: history fetch for exactly the missing range', async () => {
    const { client, server, clock, of } = await ready();
    const ws = server.last;
    ws.push(msg(A, 1));
    ws.push(msg(A, 2));
    ws.push(msg(A, 5));
    assert.equal(ws.frames('history').length, 0, 'a short wait first');
    await clock.advance(200);
    const h = ws.lastOf('history');
    assert.equal(h.conversation_id, A);
    assert.equal(h.after_seq, 2);
    assert.equal(h.limit, 2);
    ws.push({ type: 'history', req_id: h.req_id, conversation_id: A,
              messages: [msg(A, 3), msg(A, 4)].map(({ type, ...m }) => m), has_more: false });
    await flush();
    assert.deepEqual(seqsOf(of, A), [1, 2, 5, 3, 4]);
    assert.deepEqual(of('message').slice(-2).map((e) => e[1].source), ['gap', 'gap']);
    assert.equal(client.cursor(A), 5);
    assert.equal(ws.frames('history').length, 1);
});

test('a hole that an in-flight message fills needs no fetch', async () => {
    const { server, clock } = await ready();
    const ws = server.last;
    ws.push(msg(A, 1));
    ws.push(msg(A, 3));
    ws.push(msg(A, 2));
    await clock.advance(1000);
    assert.equal(ws.frames('history').length, 0);
});

test('large holes are paged 100 at a time; answers with held ones add nothing twice', async () => {
    const { client, server, clock, of } = await ready();
    const ws = server.last;
    ws.push(msg(A, 1));
    ws.push(msg(A, 150));
    await clock.advance(200);
    let h = ws.lastOf('history');
    assert.deepEqual([h.after_seq, h.limit], [1, 100]);
    const page = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => msg(A, from + i));
    ws.push({ type: 'history', req_id: h.req_id, conversation_id: A,
              messages: page(2, 101), has_more: true });
    await flush();
    h = ws.lastOf('history');
    assert.deepEqual([h.after_seq, h.limit], [101, 48]);
    ws.push({ type: 'history', req_id: h.req_id, conversation_id: A,
              messages: page(100, 150), has_more: false });
    await flush();
    assert.equal(client.cursor(A), 150);
    const seqs = seqsOf(of, A);
    assert.equal(seqs.length, 150);
    assert.equal(new Set(seqs).size, 150);
});

test('a hole nothing can fill is stepped over (no endless fetching)', async () => {
    const { client, server, clock } = await ready();
    const ws = server.last;
    ws.push(msg(A, 1));
    ws.push(msg(A, 4));
    await clock.advance(200);
    const h = ws.lastOf('history');
    ws.push({ type: 'history', req_id: h.req_id, conversation_id: A, messages: [], has_more: false });
    await flush();
    await clock.advance(5000);
    assert.equal(client.cursor(A), 4);
    assert.equal(ws.frames('history').length, 1);
});

test('holes after a capped sync are filled after sync_done, not during it', async () => {
    const { client, server, clock, of } = setup({ cursors: { [A]: 2 } });
    client.connect();
    const ws = server.last;
    ws.accept();
    const sync = ws.lastOf('sync');
    ws.push({ type: 'conversations', req_id: sync.req_id, items: [
        { conversation_id: A, kind: 'direct', last_seq: 12, truncated: true,
          delivered_seq: 2, read_seq: 2, unread: 10, last_message: msg(A, 12) }] });
    for (const s of [10, 11, 12]) ws.push(msg(A, s));
    await clock.advance(1000);
    assert.equal(ws.frames('history').length, 0, 'no fetch during the sync');
    ws.push({ type: 'sync_done', req_id: sync.req_id });
    await flush();
    const h = ws.lastOf('history');
    assert.deepEqual([h.after_seq, h.limit], [2, 7]);
    ws.push({ type: 'history', req_id: h.req_id, conversation_id: A,
              messages: [3, 4, 5, 6, 7, 8, 9].map((s) => msg(A, s)), has_more: false });
    await flush();
    assert.equal(client.cursor(A), 12);
    assert.deepEqual(seqsOf(of, A), [10, 11, 12, 3, 4, 5, 6, 7, 8, 9]);
});

test('sync_done catches up a conversation whose last_seq is past the cursor', async () => {
    const { client, server } = setup({ cursors: { [A]: 3 } });
    client.connect();
    server.last.accept();
    server.last.finishSync([{ conversation_id: A, kind: 'direct', last_seq: 5,
                              delivered_seq: 3, read_seq: 3, unread: 2, last_message: null }]);
    await flush();
    const h = server.last.lastOf('history');
    assert.deepEqual([h.after_seq, h.limit], [3, 2]);
});

test('public history pages are returned, not emitted as messages', async () => {
    const { client, server, of } = await ready();
    const ws = server.last;
    ws.push(msg(A, 50));
    const p = client.history(A, { before_seq: 50, limit: 2 });
    const h = ws.lastOf('history');
    assert.deepEqual([h.before_seq, h.limit, h.after_seq], [50, 2, undefined]);
    ws.push({ type: 'history', req_id: h.req_id, conversation_id: A,
              messages: [msg(A, 48), msg(A, 49)], has_more: true });
    const page = await p;
    assert.deepEqual(page.messages.map((m) => m.seq), [48, 49]);
    assert.equal(page.has_more, true);
    assert.deepEqual(seqsOf(of, A), [50]);
});
