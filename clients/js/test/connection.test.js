// Connecting, reconnecting (backoff with full jitter, the server's hint),
// close codes and keepalive.

import test from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay, PROTOCOL } from '../chat.js';
import { setup, ready, flush } from './fakes.js';

test('backoffDelay: full jitter within [0, min(max, base * 2^n))', () => {
    const base = 500;
    const max = 30000;
    for (let n = 0; n < 40; n++) {
        const cap = Math.min(max, base * 2 ** n);
        assert.equal(backoffDelay(n, base, max, () => 0), 0);
        const top = backoffDelay(n, base, max, () => 0.999999);
        assert.ok(top < cap && top >= cap - 1, `attempt ${n}: ${top} vs cap ${cap}`);
        for (let i = 0; i < 50; i++) {
            const d = backoffDelay(n, base, max);
            assert.ok(Number.isInteger(d) && d >= 0 && d < cap, `attempt ${n}: ${d}`);
        }
    }
    // the draws spread over the range: full jitter, not a fixed step
    const draws = new Set();
    for (let i = 0; i < 200; i++) draws.add(backoffDelay(6, base, max));
    assert.ok(draws.size > 100);
});

test('connect: token as access_token, subprotocol chat.v1, then hello and sync', async () => {
    const { client, server, of } = setup({ token: 'a b+c' });
    client.connect();
    const ws = server.last;
    assert.equal(ws.url, 'ws://chat.test/chat?access_token=a%20b%2Bc');
    assert.equal(ws.protocol, PROTOCOL);
    assert.equal(client.state, 'connecting');
    ws.accept({ user_id: 'alice', features: ['auth'] });
    assert.equal(client.userId, 'alice');
    assert.ok(client.supports('auth'));
    assert.ok(!client.supports('search'));
    assert.equal(client.state, 'syncing');
    const sync = ws.lastOf('sync');
    assert.ok(sync.req_id);
    assert.deepEqual(sync.cursors, {});
    ws.finishSync();
    assert.equal(client.state, 'ready');
    assert.deepEqual(of('state').map((e) => e[0]), ['connecting', 'syncing', 'ready']);
    assert.equal(of('synced').length, 1);
});

test('a token function is asked before every connect', async () => {
    let n = 0;
    const { client, server, clock } = setup({ token: () => `t${++n}` });
    client.connect();
    assert.match(server.last.url, /access_token=t1$/);
    server.last.drop(1006);
    await clock.advance(250);
    assert.match(server.last.url, /access_token=t2$/);
});

test('reconnect: delays follow the backoff and grow until a sync succeeds', async () => {
    const { client, server, clock, of } = setup({ random: () => 0.999 });
    client.connect();
    const expected = [];
    for (let n = 0; n < 9; n++) {
        const sockets = server.sockets.length;
        server.last.drop(1006);                  // refused before any hello
        const delay = of('state').at(-1)[1].delay;
        expected.push(Math.min(30000, 500 * 2 ** n));
        assert.equal(delay, Math.floor(0.999 * expected[n]));
        await clock.advance(delay - 1);
        assert.equal(server.sockets.length, sockets, 'no reconnect before the delay');
        await clock.advance(1);
        assert.equal(server.sockets.length, sockets + 1, 'reconnected after the delay');
    }
    // a good session resets the attempts
    server.last.accept();
    server.last.finishSync();
    server.last.drop(1006);
    assert.equal(client.state, 'reconnecting');
    assert.ok(of('state').at(-1)[1].delay < 500);
});

test('reconnect frame: a random wait in 0..retry_after_ms, then resync with cursors', async () => {
    const { client, server, clock, of } = await ready({ random: () => 0.5 }, {
        messages: [{ conversation_id: 'dm:alice:bob', seq: 1, sender_id: 'bob',
                     message_id: '1', kind: 'text', body: 'hi', server_ts: 1 }],
    });
    const first = server.last;
    first.push({ type: 'reconnect', retry_after_ms: 3000 });
    assert.equal(client.state, 'ready', 'the hint alone does not disconnect');
    first.drop(1012);
    const delay = of('state').at(-1)[1].delay;
    assert.equal(delay, 1500);
    await clock.advance(1499);
    assert.equal(server.sockets.length, 1);
    await clock.advance(1);
    assert.equal(server.sockets.length, 2);
    server.last.accept();
    assert.deepEqual(server.last.lastOf('sync').cursors, { 'dm:alice:bob': 1 });

    // the hint is used once: the next loss is plain backoff again
    server.last.drop(1006);
    assert.equal(of('state').at(-1)[1].delay, 250);
});

test('reconnect hint bounds: every draw within 0..N', async () => {
    for (const r of [0, 0.25, 0.999999]) {
        const { server, of } = await ready({ random: () => r });
        server.last.push({ type: 'reconnect', retry_after_ms: 800 });
        server.last.drop(1001);
        const d = of('state').at(-1)[1].delay;
        assert.ok(d >= 0 && d <= 800, `delay ${d}`);
    }
});

test('4001 (replaced by a newer connection) does not reconnect', async () => {
    const { client, server, clock, of } = await ready();
    server.last.drop(4001, 'replaced');
    assert.equal(client.state, 'closed');
    assert.equal(of('state').at(-1)[1].reason, 'replaced');
    await clock.advance(120000);
    assert.equal(server.sockets.length, 1);
});

test('1008 (token expired) with a static token stops; with a token function reconnects', async () => {
    const a = await ready();
    a.server.last.drop(1008);
    assert.equal(a.client.state, 'closed');
    assert.equal(a.of('state').at(-1)[1].reason, 'expired');

    const b = await ready({ token: () => 'fresh' });
    b.server.last.drop(1008);
    assert.equal(b.client.state, 'reconnecting');
    await b.clock.advance(1000);
    assert.equal(b.server.sockets.length, 2);
});

test('no hello in time: the socket is given up and retried', async () => {
    const { client, server, clock } = setup();
    client.connect();
    server.last.readyState = 1;          // upgraded, but silent
    await clock.advance(10000);
    assert.deepEqual(server.sockets[0].closedByClient.code, 4000);
    assert.equal(client.state, 'reconnecting');
    await clock.advance(1000);
    assert.equal(server.sockets.length, 2);
});

test('keepalive: a ping after a silent heartbeat, a dead link dropped', async () => {
    const { client, server, clock } = await ready({}, { hello: { heartbeat_s: 30 } });
    const ws = server.last;
    await clock.advance(29000);
    assert.equal(ws.frames('ping').length, 0);
    await clock.advance(2000);
    assert.equal(ws.frames('ping').length, 1);
    ws.push({ type: 'pong' });
    await clock.advance(9000);
    assert.equal(client.state, 'ready');
    // silent again: ping, no answer, dropped and reconnected
    await clock.advance(45000);
    assert.equal(ws.frames('ping').length, 2);
    assert.equal(ws.closedByClient && ws.closedByClient.code, 4000);
    assert.equal(server.sockets.length, 2);
    assert.notEqual(client.state, 'ready');
});

test('close(): stops for good and rejects what is pending', async () => {
    const { client, server, clock } = await ready();
    const p = client.send({ conversation_id: 'dm:alice:bob', body: 'x' });
    const h = client.history('dm:alice:bob');
    client.close();
    await assert.rejects(p, { code: 'closed' });
    await assert.rejects(h, { code: 'closed' });
    assert.equal(client.state, 'closed');
    await flush();
    await clock.advance(60000);
    assert.equal(server.sockets.length, 1);
});
