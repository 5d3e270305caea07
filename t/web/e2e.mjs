// End-to-end run of the web client (clients/web) in Debian's Chromium,
// driven by playwright-core over the DevTools protocol. t/test_web.py runs
// it against a test stack; by hand, against any stack:
//
//   E2E_BASE=http://127.0.0.1:8080 \
//   E2E_USERS='{"alice":{"id":"alice","token":"<jwt>"},"bob":{...},"carol":{...}}' \
//   E2E_ARTIFACTS=build/web-artifacts PLAYWRIGHT_DIR=~/.cache/ngx_chat/node \
//   node t/web/e2e.mjs
//
// Chromium is started here (Playwright's launch() refuses a --user-data-dir
// of ours) with a fresh profile and the flags below, and attached to with
// connectOverCDP. Every step asserts on the DOM; on a failure the script
// takes a screenshot of every page (failure-<user>.png) and exits 1.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function env(name, fallback) {
    const v = process.env[name] ?? fallback;
    if (v === undefined) throw new Error(`${name} is not set`);
    return v;
}

const BASE = env('E2E_BASE').replace(/\/$/, '');
const USERS = JSON.parse(env('E2E_USERS'));
const ARTIFACTS = path.resolve(env('E2E_ARTIFACTS'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const WAIT = Number(env('E2E_WAIT_MS', '15000'));
// optional: {peer, count}: peer sent alice `count` messages "history 1".. before
const HISTORY = JSON.parse(env('E2E_HISTORY', 'null'));

const require = createRequire(path.join(path.resolve(env('PLAYWRIGHT_DIR')), 'package.json'));
const { chromium } = require('playwright-core');

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const pages = {};
const pageErrors = [];
let step = 0;

const log = (...a) => console.log(...a);
const directId = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);

/** Chromium with a fresh profile: {proc, wsEndpoint, profile}. */
function startChromium() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-chat-chromium.'));
    const args = [...FLAGS, `--user-data-dir=${profile}`, '--remote-debugging-address=127.0.0.1',
                  '--remote-debugging-port=0', 'about:blank'];
    // its own process group: stopping it stops its helper processes too
    const proc = spawn(CHROMIUM, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    return new Promise((resolve, reject) => {
        let err = '';
        const timer = setTimeout(() => {
            proc.kill('SIGKILL');
            reject(new Error(`Chromium did not start within 30 s:\n${err}`));
        }, 30000);
        proc.stderr.on('data', (d) => {
            err += d;
            const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
            if (m) {
                clearTimeout(timer);
                resolve({ proc, wsEndpoint: m[1], profile });
            }
        });
        proc.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`Chromium exited (${code}) before listening:\n${err}`));
        });
    });
}

async function stopChromium(chrome) {
    const group = (sig) => {
        try { process.kill(-chrome.proc.pid, sig); } catch (e) { /* already gone */ }
    };
    if (chrome.proc.exitCode === null && chrome.proc.signalCode === null) {
        const gone = new Promise((r) => chrome.proc.once('exit', r));
        group('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    }
    group('SIGKILL');                      // helpers that outlived the browser
    try {
        fs.rmSync(chrome.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch (e) {
        log(`   (profile ${chrome.profile} not removed: ${e.message})`);
    }
}

async function shot(name, who) {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await pages[who].screenshot({ path: file });
    log(`   screenshot ${file}`);
}

async function check(what, fn) {
    step += 1;
    const t0 = Date.now();
    await fn();
    log(`ok ${step} - ${what} (${Date.now() - t0} ms)`);
}

/**
 * Waits until fn(arg), run in the page, is truthy. On a timeout the error
 * says what was awaited and, from describe(arg) run in the page, what is there.
 */
async function until(who, what, fn, arg, describe) {
    try {
        await pages[who].waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
    } catch (e) {
        let seen = '';
        if (describe) {
            try { seen = `; found: ${JSON.stringify(await pages[who].evaluate(describe, arg))}`; } catch (x) { /* */ }
        }
        throw new Error(`${who}: no ${what} within ${WAIT} ms${seen}`);
    }
}

// --- page-side probes (self-contained: they run in the browser) ----------

function ownStatus([text]) {
    for (const m of document.querySelectorAll('#messages .msg.own')) {
        if (m.querySelector('.text')?.textContent === text) {
            return { status: m.dataset.status || null, seq: m.dataset.seq || null,
                     readBy: m.querySelector('.readby')?.textContent || '' };
        }
    }
    return null;
}

function ownStatusIs([text, status, readBy]) {
    for (const m of document.querySelectorAll('#messages .msg.own')) {
        if (m.querySelector('.text')?.textContent === text) {
            return m.dataset.status === status
                && (readBy === undefined || m.querySelector('.readby')?.textContent === readBy);
        }
    }
    return false;
}

function listItem([id]) {
    const li = document.querySelector(`#conv-list li[data-conv="${id}"]`);
    if (!li) return null;
    return { name: li.querySelector('.name')?.textContent, preview: li.querySelector('.preview')?.textContent,
             unread: li.querySelector('.unread')?.textContent || '' };
}

function listItemIs([id, unread, preview]) {
    const li = document.querySelector(`#conv-list li[data-conv="${id}"]`);
    return !!li && (li.querySelector('.unread')?.textContent || '') === unread
        && (preview === undefined || li.querySelector('.preview')?.textContent === preview);
}

function otherMessages() {
    return [...document.querySelectorAll('#messages .msg')].map((m) => m.textContent);
}

function hasMessage([text, cls]) {
    return [...document.querySelectorAll(`#messages .msg${cls || ''}`)]
        .some((m) => m.textContent.includes(text));
}

function textIs([sel, text]) {
    return document.querySelector(sel)?.textContent === text;
}

function textOf([sel]) {
    return document.querySelector(sel)?.textContent;
}

// ---------------------------------------------------------------- steps

async function signIn(browser, who) {
    const u = USERS[who];
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const page = await ctx.newPage();
    pages[who] = page;
    page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error') log(`   [${who} console] ${m.text()}`);
    });
    await page.goto(`${BASE}/app/web/#token=${u.token}`);
    await until(who, 'ready connection',
                () => document.querySelector('#conn-state')?.dataset.state === 'ready',
                undefined, () => document.querySelector('#conn-state')?.dataset.state);
    await until(who, `#me-name ${u.id}`, textIs, ['#me-name', u.id], textOf);
    if (page.url().includes('token=')) throw new Error(`${who}: the token stayed in the address bar`);
    const ws = await page.evaluate(() => {
        const w = window.chatApp.client._ws;
        return w && { protocol: w.protocol, extensions: w.extensions };
    });
    log(`   ${who}: subprotocol ${ws && ws.protocol}, extensions "${ws && ws.extensions}"`);
    if (!ws || ws.protocol !== 'chat.v1') throw new Error(`${who}: subprotocol ${ws && ws.protocol}, not chat.v1`);
}

async function openConversation(who, id, title) {
    await pages[who].click(`#conv-list li[data-conv="${id}"]`);
    await until(who, `the open chat titled ${title}`, textIs, ['#chat-title', title], textOf);
}

async function sendText(who, text) {
    await pages[who].fill('#composer-text', text);
    await pages[who].press('#composer-text', 'Enter');
}

async function scenario(browser) {
    const { alice, bob, carol } = USERS;
    const dm = directId(alice.id, bob.id);
    const tag = Math.random().toString(36).slice(2, 8);
    const hello = `Hello Bob, this is Alice (${tag})`;
    const reply = `Hi Alice! Bob here (${tag})`;
    const groupName = `Trio ${tag}`;
    const groupMsg = `Hello both of you (${tag})`;

    await check('alice, bob and carol sign in with #token= links', async () => {
        await signIn(browser, 'alice');
        await signIn(browser, 'bob');
        await signIn(browser, 'carol');
    });

    if (HISTORY) {
        const older = directId(alice.id, HISTORY.peer);
        const n = HISTORY.count;
        await check(`alice has ${n} unread from ${HISTORY.peer}; scrolling up pages in the older ones`, async () => {
            await until('alice', `${n} unread`, listItemIs, [older, String(n), `history ${n}`], listItem);
            await openConversation('alice', older, HISTORY.peer);
            await until('alice', 'the newest message', hasMessage, [`history ${n}`, '.other'], otherMessages);
            const synced = await pages.alice.locator('#messages .msg.other').count();
            if (synced >= n) throw new Error(`alice: all ${n} came with the sync: nothing left to page`);
            await until('alice', 'no unread badge', listItemIs, [older, ''], listItem);
            for (let i = 0; i < 10; i++) {
                await pages.alice.locator('#messages').evaluate((box) => { box.scrollTop = 0; });
                const count = await pages.alice.locator('#messages .msg.other').count();
                if (count >= n) break;
                await pages.alice.waitForTimeout(200);
            }
            await until('alice', `all ${n} messages in order`, ([count]) => {
                const texts = [...document.querySelectorAll('#messages .msg.other .text')].map((t) => t.textContent);
                return texts.length === count && texts.every((t, i) => t === `history ${i + 1}`);
            }, [n], () => document.querySelectorAll('#messages .msg.other').length);
            await shot('00-alice-history-scrolled-back', 'alice');
        });
    }

    await check('alice starts a direct chat with bob by user id', async () => {
        await pages.alice.fill('#new-direct-user', bob.id);
        await pages.alice.press('#new-direct-user', 'Enter');
        await until('alice', `chat title ${bob.id}`, textIs, ['#chat-title', bob.id], textOf);
    });

    await check('alice sends; the message is acked (it has a seq); now contacts, bob shows online', async () => {
        await sendText('alice', hello);
        await until('alice', 'ack of her message', ([t]) => [...document.querySelectorAll('#messages .msg.own')]
            .some((m) => m.querySelector('.text')?.textContent === t && m.dataset.seq), [hello], ownStatus);
        await until('alice', 'presence online', textIs, ['#chat-subtitle', 'online'],
                    () => document.querySelector('#chat-subtitle')?.textContent);
    });

    await check('bob gets it live: the chat is listed with 1 unread and the text', async () => {
        await until('bob', 'list item with 1 unread', listItemIs, [dm, '1', hello], listItem);
        await shot('01-bob-new-message-unread', 'bob');
    });

    await check("bob's device reports delivery: alice's tick turns delivered", async () => {
        await until('alice', 'delivered tick', ownStatusIs, [hello, 'delivered'], ownStatus);
        await shot('02-alice-delivered', 'alice');
    });

    await check("bob opens the chat and reads it: alice's tick turns read", async () => {
        await openConversation('bob', dm, alice.id);
        await until('bob', 'the message in the chat', hasMessage, [hello, '.other'], otherMessages);
        await until('bob', 'no unread badge', listItemIs, [dm, ''], listItem);
        await until('alice', 'read tick', ownStatusIs, [hello, 'read'], ownStatus);
        await shot('03-alice-read', 'alice');
    });

    await check('bob types: alice sees the typing indicator, live in the chat and the list', async () => {
        await pages.bob.click('#composer-text');
        await pages.bob.keyboard.type('Hi Ali', { delay: 30 });
        await until('alice', 'typing indicator', textIs, ['#typing', `${bob.id} is typing…`], () =>
            document.querySelector('#typing')?.textContent);
        await until('alice', 'typing in the list', ([id]) => document.querySelector(
            `#conv-list li[data-conv="${id}"] .preview.typing`) !== null, [dm], listItem);
        await shot('04-alice-sees-bob-typing', 'alice');
    });

    await check('bob sends his reply: alice gets it live and the indicator goes', async () => {
        await sendText('bob', reply);
        await until('alice', 'the reply', hasMessage, [reply, '.other'], otherMessages);
        await until('alice', 'no typing indicator', textIs, ['#typing', ''], () =>
            document.querySelector('#typing')?.textContent);
        await until('bob', 'his reply acked', ([t]) => [...document.querySelectorAll('#messages .msg.own')]
            .some((m) => m.querySelector('.text')?.textContent === t && m.dataset.seq), [reply], ownStatus);
    });

    await check('presence: bob sets away, then online again; alice follows', async () => {
        await pages.bob.selectOption('#my-status', 'away');
        await until('alice', 'presence away', textIs, ['#chat-subtitle', 'away'],
                    () => document.querySelector('#chat-subtitle')?.textContent);
        await shot('05-alice-sees-bob-away', 'alice');
        await pages.bob.selectOption('#my-status', 'online');
        await until('alice', 'presence online', textIs, ['#chat-subtitle', 'online'],
                    () => document.querySelector('#chat-subtitle')?.textContent);
    });

    let group = null;
    await check('alice creates a group with bob and carol and writes to it', async () => {
        await pages.alice.click('#new-group-box summary');
        await pages.alice.fill('#new-group-name', groupName);
        await pages.alice.fill('#new-group-members', `${bob.id}, ${carol.id}`);
        await pages.alice.click('#new-group button[type=submit]');
        await until('alice', `chat title ${groupName}`, textIs, ['#chat-title', groupName], textOf);
        await until('alice', 'the group_created line', hasMessage,
                    [`You created the group “${groupName}”`, '.system'], otherMessages);
        group = await pages.alice.evaluate(() => document.querySelector('#conv-list li.active')?.dataset.conv);
        if (!group || !group.startsWith('g:')) throw new Error(`alice: the open chat is ${group}, not a group`);
        await until('alice', 'three members in the subtitle', ([n]) =>
            document.querySelector('#chat-subtitle')?.textContent.startsWith(n), ['3 members'],
        () => document.querySelector('#chat-subtitle')?.textContent);
        await sendText('alice', groupMsg);
        await until('alice', 'delivered to both', ownStatusIs, [groupMsg, 'delivered', 'read by 0 of 2'], ownStatus);
    });

    await check('bob and carol get the group live, with 1 unread', async () => {
        await until('bob', 'group listed, 1 unread', listItemIs, [group, '1', `${alice.id}: ${groupMsg}`], listItem);
        await until('carol', 'group listed, 1 unread', listItemIs, [group, '1', `${alice.id}: ${groupMsg}`], listItem);
        await shot('06-carol-group-unread', 'carol');
    });

    await check('carol, then bob read it: "read by 1 of 2", then read by all', async () => {
        await openConversation('carol', group, groupName);
        await until('carol', 'the group message', hasMessage, [groupMsg, '.other'], otherMessages);
        await until('alice', 'read by 1 of 2', ownStatusIs, [groupMsg, 'delivered', 'read by 1 of 2'], ownStatus);
        await shot('07-alice-group-read-by-1', 'alice');
        await openConversation('bob', group, groupName);
        await until('alice', 'read by 2 of 2', ownStatusIs, [groupMsg, 'read', 'read by 2 of 2'], ownStatus);
        await shot('08-alice-group-read', 'alice');
        await shot('09-bob-group', 'bob');
    });

    await check('members: alice removes carol; everyone sees it, carol can no longer write', async () => {
        await pages.alice.click('#members-toggle');
        await until('alice', 'carol online in the member list', ([u]) =>
            document.querySelector(`#member-list li[data-user="${u}"] .dot`)?.dataset.status === 'online',
        [carol.id], () => document.querySelector('#member-list')?.textContent);
        await shot('10-alice-members', 'alice');
        await pages.alice.click(`#member-list li[data-user="${carol.id}"] button`);
        await until('alice', 'the removal line', hasMessage, [`You removed ${carol.id}`, '.system'], otherMessages);
        await until('bob', 'the removal line', hasMessage, [`${alice.id} removed ${carol.id}`, '.system'], otherMessages);
        await until('carol', 'her removal line', hasMessage, [`${alice.id} removed you`, '.system'], otherMessages);
        await until('carol', 'a disabled composer', () => document.querySelector('#composer-text')?.disabled === true);
        await until('alice', 'two members in the subtitle', ([n]) =>
            document.querySelector('#chat-subtitle')?.textContent.startsWith(n), ['2 members'],
        () => document.querySelector('#chat-subtitle')?.textContent);
        await shot('11-carol-removed', 'carol');
    });

    await check('members: alice adds carol back', async () => {
        await pages.alice.fill('#add-member-user', carol.id);
        await pages.alice.press('#add-member-user', 'Enter');
        await until('bob', 'the addition line', hasMessage, [`${alice.id} added ${carol.id}`, '.system'], otherMessages);
        await until('carol', 'an enabled composer', () => document.querySelector('#composer-text')?.disabled === false);
    });

    await check('bob reloads: the token is kept, sync brings both chats back without unread', async () => {
        await pages.bob.reload();
        await until('bob', 'ready connection',
                    () => document.querySelector('#conn-state')?.dataset.state === 'ready');
        await until('bob', 'the direct chat, read', listItemIs, [dm, '', `You: ${reply}`], listItem);
        await until('bob', 'the group listed', ([id]) => !!document.querySelector(
            `#conv-list li[data-conv="${id}"]`), [group], listItem);
        await openConversation('bob', dm, alice.id);
        await until('bob', 'both messages of the chat', ([a, b]) => {
            const t = document.querySelector('#messages')?.textContent || '';
            return t.includes(a) && t.includes(b);
        }, [hello, reply], otherMessages);
        await shot('12-bob-after-reload', 'bob');
    });

    await check('no page got an error frame that no request owned', async () => {
        for (const who of Object.keys(pages)) {
            const errors = await pages[who].evaluate(() => window.chatApp.errors);
            if (errors.length) throw new Error(`${who}: ${JSON.stringify(errors)}`);
        }
    });

    for (const who of Object.keys(pages)) await shot(`99-final-${who}`, who);
}

async function main() {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const chrome = await startChromium();
    let browser = null;
    let failed = null;
    try {
        browser = await chromium.connectOverCDP(chrome.wsEndpoint);
        log(`chromium ${browser.version()}, ${BASE}, artifacts in ${ARTIFACTS}`);
        await scenario(browser);
        if (pageErrors.length) throw new Error(`uncaught errors in the page:\n${pageErrors.join('\n')}`);
    } catch (e) {
        failed = e;
        log(`not ok ${step} - ${e.message}`);
        for (const who of Object.keys(pages)) {
            try { await shot(`failure-${who}`, who); } catch (x) { /* page gone */ }
        }
    } finally {
        if (browser) await browser.close().catch(() => {});
        await stopChromium(chrome);
    }
    if (failed) {
        console.error(failed.stack || String(failed));
        process.exit(1);
    }
    log(`e2e: all ${step} steps passed`);
}

main().catch((e) => {
    console.error(e.stack || String(e));
    process.exit(1);
});
