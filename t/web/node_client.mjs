// clients/js/chat.js in Node against a real server (t/test_web.py runs it
// with E2E_URL and E2E_USERS {alice, bob: {id, token}}): live delivery,
// an idempotent retry, a lost connection caught up by sync with cursors,
// typing, presence, a group, and the second part's degrading.
// Uses Node's own WebSocket (node --experimental-websocket on Node 20).

import assert from 'node:assert/strict';

import { ChatClient, directId, makeClientMsgId } from '../../clients/js/chat.js';

const URL = process.env.E2E_URL;
const USERS = JSON.parse(process.env.E2E_USERS);
const WAIT = 15000;
let step = 0;

function within(what, promise) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT} ms`)), WAIT);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first event `name` whose arguments pass pred. */
function next(client, name, pred = () => true) {
    return new Promise((resolve) => {
        const off = client.on(name, (...args) => {
            if (pred(...args)) { off(); resolve(args); }
        });
    });
}

async function check(what, fn) {
    step += 1;
    await fn();
    console.log(`ok ${step} - ${what}`);
}

async function main() {
    const { alice, bob } = USERS;
    const dm = directId(alice.id, bob.id);
    const a = new ChatClient({ url: URL, token: alice.token });
    const b = new ChatClient({ url: URL, token: bob.token });
    const got = [];
    a.on('message', (m, { source }) => { if (m.conversation_id === dm) got.push([m.seq, m.body, source]); });

    try {
        await check('both connect and sync', async () => {
            const ready = Promise.all([next(a, 'state', (s) => s === 'ready'),
                                       next(b, 'state', (s) => s === 'ready')]);
            a.connect();
            b.connect();
            await within('ready', ready);
            assert.equal(a.userId, alice.id);
            assert.equal(b.userId, bob.id);
        });

        let first;
        await check('a send is acked and delivered live, once', async () => {
            const arrived = next(a, 'message', (m) => m.body === 'n1');
            first = await within('ack', b.send({ to: alice.id, body: 'n1' }));
            assert.equal(first.conversation_id, dm);
            const [m, meta] = await within('delivery', arrived);
            assert.equal(m.seq, first.seq);
            assert.equal(meta.source, 'live');
        });

        await check('a retry with the same client_msg_id gets the same ack, nothing new', async () => {
            const cmid = makeClientMsgId();
            const one = await within('ack', b.send({ to: alice.id, body: 'r1', client_msg_id: cmid }));
            const two = await within('ack', b.send({ to: alice.id, body: 'r1', client_msg_id: cmid }));
            assert.equal(two.message_id, one.message_id);
            assert.equal(two.seq, one.seq);
            await new Promise((r) => setTimeout(r, 300));
            assert.equal(got.filter((g) => g[1] === 'r1').length, 1);
        });

        await check('a lost connection: what came meanwhile arrives by sync, each once, in order', async () => {
            const before = a.cursor(dm);
            const resynced = next(a, 'synced');
            a._ws.close();                         // as if the network went
            const sent = [];
            for (const body of ['n2', 'n3', 'n4']) sent.push(await within('ack', b.send({ to: alice.id, body })));
            await within('resync', resynced);
            await within('the three', new Promise((resolve) => {
                const t = setInterval(() => {
                    if (a.cursor(dm) >= sent[2].seq) { clearInterval(t); resolve(); }
                }, 20);
            }));
            const seqs = got.map((g) => g[0]);
            assert.equal(new Set(seqs).size, seqs.length, `duplicates in ${seqs}`);
            // a delivery that went to the old session is a hole, filled from
            // history after a newer one arrived: in seq order they are all there
            const caught = got.filter((g) => g[0] > before).sort((x, y) => x[0] - y[0]);
            assert.deepEqual(caught.map((g) => g[1]), ['n2', 'n3', 'n4']);
            assert.deepEqual(caught.map((g) => g[0]), sent.map((s) => s.seq));
            assert.equal(a.cursor(dm), sent[2].seq);
            console.log(`   caught up by: ${caught.map((g) => `${g[1]}:${g[2]}`).join(' ')}`);
        });

        await check('typing: start and stop reach the other side', async () => {
            const on = next(a, 'typing', (t) => t.typing && t.user_id === bob.id);
            assert.ok(b.typing(dm));
            await within('typing start', on);
            assert.deepEqual(a.typingUsers(dm), [bob.id]);
            const off = next(a, 'typing', (t) => !t.typing && t.user_id === bob.id);
            b.stopTyping(dm);
            await within('typing stop', off);
        });

        await check('presence: bob online, then away', async () => {
            const online = next(a, 'presence', (p) => p.user_id === bob.id);
            a.subscribePresence([bob.id]);
            assert.equal((await within('presence', online))[0].status, 'online');
            const away = next(a, 'presence', (p) => p.user_id === bob.id && p.status === 'away');
            b.setPresence('away');
            await within('away', away);
        });

        await check('receipts: alice reads, bob hears it', async () => {
            const read = next(b, 'receipt', (r) => r.user_id === alice.id && r.state === 'read');
            a.markRead(dm, a.cursor(dm));
            const [r] = await within('read receipt', read);
            assert.equal(r.seq, a.cursor(dm));
        });

        await check('a group: created, the system message reaches the member', async () => {
            const sys = next(b, 'message', (m) => m.kind === 'system');
            const g = await within('group', a.createGroup('node group', [bob.id]));
            assert.ok(g.conversation_id.startsWith('g:'));
            const [m] = await within('group_created', sys);
            assert.equal(m.conversation_id, g.conversation_id);
            assert.equal(m.body.event, 'group_created');
        });

        await check('the second part degrades: unsupported unless announced', async () => {
            if (a.supports('conversations')) {
                const page = await within('conversations', a.listConversations({ limit: 5 }));
                assert.ok(Array.isArray(page.items));
            } else {
                await assert.rejects(a.listConversations(), { code: 'unsupported' });
            }
            if (!a.supports('auth')) assert.equal(await a.renewToken(alice.token), null);
        });
    } finally {
        a.close();
        b.close();
    }
    console.log(`node client: all ${step} checks passed`);
}

main().then(() => process.exit(0), (e) => {
    console.log(`not ok ${step + 1} - ${e.message}`);
    console.error(e.stack || String(e));
    process.exit(1);
});
