// Browser end-to-end test of the demo page and the JS SDK, in headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core, against a running Switchyard in demo mode whose
// node is fsim with SIP over WebSocket.
//
//   node tests/browser/e2e.mjs --base http://127.0.0.1:8080 [--artifacts target/browser-artifacts]
//                              [--chromium /usr/bin/chromium] [--headed] [--timeout 15000]
//   JSSIP_DEBUG=1 puts JsSIP's SIP trace into the console logs (artifacts/console-*.log).
//
// Two users in two browser contexts (A = alice, B = bob) plus a second tab of B; then B's context
// goes offline to test resumption, and a third context (C) tests `resync` and `getToken` with the
// SDK on its own (no demo page login). Prints one line per step; on the first failure prints
// the reason, the pages' console logs and screenshots, and exits 1. Screenshots of the key steps go to the artifacts directory.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    artifacts: { type: 'string', default: 'target/browser-artifacts' },
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    headed: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '15000' },
    'fsim-control': { type: 'string' },
  },
});
if (!args.base) {
  console.error('usage: node e2e.mjs --base http://127.0.0.1:<port> [--artifacts DIR]');
  process.exit(2);
}
const BASE = args.base.replace(/\/+$/, '');
const DEMO = `${BASE}/demo/`;
const ART = path.resolve(args.artifacts);
const TIMEOUT = Number(args.timeout);
fs.mkdirSync(ART, { recursive: true });

const run = Date.now().toString(36).slice(-5);
const ALICE = `alice-${run}`;
const BOB = `bob-${run}`;
const CAROL = `carol-${run}`;
const CHAT_A = 'Привет, Боб! Как дела? 👋🏽 café ✓ 👨‍👩‍👧';
const CHAT_B = 'Всё отлично 🚀🔥 — ёлка, ЁЖ, «кавычки»';

const started = Date.now();
const logs = new Map(); // page name -> lines
const pages = new Map(); // name -> page
const hellos = new Map(); // page name -> the `resume` of every `hello` the page sent (null: none)
let stepNo = 0;
let shotNo = 0;

function say(line) {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${t}s] ${line}`);
}

async function step(name, fn) {
  stepNo += 1;
  const t0 = Date.now();
  try {
    await fn();
  } catch (err) {
    say(`✗ ${stepNo}. ${name}`);
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { step: `${stepNo}. ${name}` });
  }
  say(`✓ ${stepNo}. ${name} (${Date.now() - t0} ms)`);
}

async function shot(page, name) {
  shotNo += 1;
  const file = path.join(ART, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
  say(`  screenshot ${path.relative(process.cwd(), file)}`);
}

/** Polls `fn` (in Node) until it returns a truthy value. */
async function until(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const tid = (id) => `[data-testid="${id}"]`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * In the page: records what `client` (an SDK Client) reports from now on, through its public
 * events, into `window[key]`. Returns the client's `lastSeq` at this moment.
 */
function recordSdk([clientPath, key]) {
  const client = clientPath.split('.').reduce((o, k) => o[k], window);
  const rec = { seqBefore: client.lastSeq, connected: [], disconnected: [], resync: 0, calls: [], seqs: [], states: [] };
  client.on('connected', ({ resumed, reconnected }) => rec.connected.push({ resumed, reconnected }));
  client.on('disconnected', ({ code, reason, willReconnect }) => rec.disconnected.push({ code, reason, willReconnect }));
  client.on('resync', () => (rec.resync += 1));
  client.on('call', (call) => rec.calls.push(call.conference));
  client.on('event', (frame) => rec.seqs.push(frame.seq));
  client.on('state', ({ state }) => rec.states.push(state));
  window[key] = rec;
  return rec.seqBefore;
}

/** `seqs` are exactly first, first + 1, … (nothing lost, nothing twice). */
function contiguous(seqs, first) {
  return seqs.length > 0 && seqs.every((s, i) => s === first + i);
}

// fsim has no media, so "talking" is driven through its control port: find B's member id in
// the members list, its channel in fsim's snapshot, and flip the talking flag there.
async function fsimTalking(conference, user, talking) {
  const control = args['fsim-control'];
  if (!control) throw new Error('--fsim-control http://… is needed to make a member talk');
  const { members } = await demoApi(`conferences/${encodeURIComponent(conference)}/members`);
  const member = members.find((m) => m.user_id === user);
  if (!member) throw new Error(`${user} is not a member of ${conference}`);
  const snapshot = await (await fetch(`${control}/nodes/${member.node}`)).json();
  const fsConference = snapshot.conferences.find((c) => c.name === conference);
  const fsMember = fsConference?.members.find((m) => m.id === member.member_id);
  if (!fsMember) throw new Error(`member ${member.member_id} not found on fsim node ${member.node}`);
  const res = await fetch(`${control}/nodes/${member.node}/calls/${fsMember.channel_uuid}/talking`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ talking }),
  });
  if (!res.ok) throw new Error(`fsim talking → ${res.status} ${await res.text()}`);
}

async function demoApi(p, body) {
  const res = await fetch(`${BASE}/demo/api/${p}`, body === undefined ? {} : {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST /demo/api/${p} → ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function openPage(context, name) {
  const page = await context.newPage();
  pages.set(name, page);
  const lines = [];
  logs.set(name, lines);
  page.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[pageerror] ${e.message}`));
  page.on('requestfailed', (r) => lines.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText ?? ''}`));
  // What the page says on its event channels, seen from outside (the token is not kept).
  const sent = [];
  hellos.set(name, sent);
  page.on('websocket', (ws) => {
    if (!ws.url().endsWith('/v1/events')) return;
    ws.on('framesent', ({ payload }) => {
      try {
        const frame = JSON.parse(payload);
        if (frame.type === 'hello') sent.push(frame.resume ?? null);
      } catch {
        /* not JSON */
      }
    });
  });
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(DEMO);
  return page;
}

async function login(page, user) {
  await page.fill(tid('login-user'), user);
  await page.click(tid('login-submit'));
  await page.waitForSelector(`${tid('connection')}[data-state="open"]`);
}

async function memberUsers(page) {
  return page.$$eval(`${tid('members')} ${tid('member')}`, (els) => els.map((e) => e.dataset.user).sort());
}

async function activity(page, kind) {
  return page.$$eval(`${tid('event-log')} [data-kind="${kind}"]`, (els) => els.map((e) => e.textContent));
}

async function invite(page, user, profile) {
  await until(`${user} online on the inviter's page`, async () => (await page.$(`${tid('online-user')}[data-user="${user}"]`)) !== null);
  await page.check(`${tid('online-user')}[data-user="${user}"] input`);
  await page.check(tid(`profile-${profile}`));
  await page.click(tid('invite-submit'));
}

async function main() {
  if (!fs.existsSync(args.chromium)) throw new Error(`${args.chromium} not found: run \`just browser-setup\``);
  const browser = await chromium.launch({
    executablePath: args.chromium,
    headless: !args.headed,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  try {
    await scenarios(browser);
  } catch (err) {
    for (const [name, page] of pages) {
      try {
        const file = path.join(ART, `FAIL-${name}.png`);
        await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
        console.error(`  screenshot ${file}`);
      } catch {
        /* page gone */
      }
    }
    throw err;
  } finally {
    for (const [name, lines] of logs) fs.writeFileSync(path.join(ART, `console-${name}.log`), lines.join('\n') + '\n');
    await browser.close();
  }
}

async function scenarios(browser) {
  say(`Switchyard at ${BASE}; users ${ALICE} and ${BOB}; artifacts in ${ART}`);
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 860 }, permissions: ['camera', 'microphone'] });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 860 }, permissions: ['camera', 'microphone'] });
  if (process.env.JSSIP_DEBUG) {
    // JsSIP logs through the `debug` package, which reads localStorage.debug.
    for (const ctx of [ctxA, ctxB]) await ctx.addInitScript(() => localStorage.setItem('debug', 'JsSIP:*'));
  }
  let A, B1, B2;

  await step('the demo page loads (SDK + JsSIP modules, no errors)', async () => {
    A = await openPage(ctxA, 'A');
    await A.waitForSelector(tid('login-form'));
    await shot(A, 'login');
  });

  await step(`A logs in as ${ALICE}, B logs in as ${BOB} in two tabs`, async () => {
    await login(A, ALICE);
    B1 = await openPage(ctxB, 'B1');
    await login(B1, BOB);
    B2 = await openPage(ctxB, 'B2');
    await login(B2, BOB);
  });

  await step('A sees B online (2 tabs), B sees A', async () => {
    await until('bob in A\'s online list', async () => (await A.$(`${tid('online-user')}[data-user="${BOB}"]`)) !== null);
    await until('alice in B\'s online list', async () => (await B1.$(`${tid('online-user')}[data-user="${ALICE}"]`)) !== null);
    const online = await demoApi('online');
    const bob = online.users.find((u) => u.user_id === BOB);
    if (!bob || bob.connections !== 2) throw new Error(`GET /demo/api/online: expected ${BOB} with 2 connections, got ${JSON.stringify(online)}`);
    await shot(A, 'A-online');
  });

  await step('B limits its sent video to 300 kbit/s (settings)', async () => {
    await B1.click('details.settings summary');
    await B1.selectOption(tid('max-bitrate'), '300000');
  });

  let conference;
  await step('A invites B to a video call: A joins, both B tabs ring (`call`)', async () => {
    await invite(A, BOB, 'video');
    for (const [name, page] of [['B1', B1], ['B2', B2]]) {
      await page.waitForSelector(`${tid('incoming')}:not([hidden])`);
      const caller = await page.textContent(tid('incoming-caller'));
      if (caller !== ALICE) throw new Error(`${name}: incoming caller is ${JSON.stringify(caller)}, expected ${ALICE}`);
    }
    conference = await B1.textContent(tid('incoming-conference'));
    say(`  conference ${conference}`);
    await shot(B1, 'B-incoming-call');
  });

  await step('B answers in tab 1: tab 2 stops ringing', async () => {
    await B1.click(tid('incoming-accept'));
    await B2.waitForSelector(tid('incoming'), { state: 'hidden' });
    await until('"answered in another tab" in B2\'s activity', async () => (await B2.textContent(tid('event-log'))).includes('answered in another tab'));
    await shot(B2, 'B-second-tab-stopped-ringing');
  });

  await step('JsSIP registers and dials the node: both calls active (`callAccept`, `callStart`)', async () => {
    for (const [name, page] of [['A', A], ['B1', B1]]) {
      await page.waitForSelector(`${tid('call-state')}[data-state="active"]`, { timeout: TIMEOUT * 2 }).catch(async (err) => {
        throw new Error(`${name}: call never became active (state: ${await page.textContent(tid('call-state'))}): ${err.message}`);
      });
      const sip = await page.evaluate(() => {
        const c = window.__demo.call;
        return { registered: c?.registered, pc: Boolean(c?.peerConnection), state: c?.state, conference: c?.conference };
      });
      if (!sip.registered) throw new Error(`${name}: SIP REGISTER did not succeed before the call: ${JSON.stringify(sip)}`);
      if (!sip.pc) throw new Error(`${name}: no RTCPeerConnection`);
      if (sip.conference !== conference) throw new Error(`${name}: in ${sip.conference}, expected ${conference}`);
    }
  });

  await step('both pages see `in` for each other; the members list shows both', async () => {
    const both = [ALICE, BOB].sort().join(',');
    for (const [name, page] of [['A', A], ['B1', B1]]) {
      await until(`${name}'s members list = ${both}`, async () => (await memberUsers(page)).join(',') === both);
    }
    await until('A logged "bob joined"', async () => (await activity(A, 'in')).some((t) => t.includes(`${BOB} joined`)));
    const members = await demoApi(`conferences/${encodeURIComponent(conference)}/members`);
    const list = Array.isArray(members) ? members : members.members;
    const users = list.map((m) => m.user_id).sort().join(',');
    if (users !== both) throw new Error(`GET members: ${JSON.stringify(members)}`);
    await shot(A, 'A-in-call-members');
    await shot(B1, 'B-in-call-members');
  });

  await step('maxVideoBitrate: B\'s video sender is capped at 300 kbit/s', async () => {
    const r = await B1.evaluate(() => {
      const pc = window.__demo.call.peerConnection;
      const senders = pc.getSenders().filter((s) => s.track?.kind === 'video');
      const enc = senders.map((s) => s.getParameters().encodings?.[0]?.maxBitrate ?? null);
      const remote = pc.remoteDescription?.sdp ?? '';
      const video = remote.split(/\r\nm=/).find((s) => s.startsWith('video') && !s.startsWith('video 0 '));
      return { enc, videoSection: Boolean(video), bandwidth: video ? (video.match(/^b=.*$/gm) ?? []).join(" ") : null };
    });
    say(`  video sender maxBitrate ${JSON.stringify(r.enc)}; remote SDP video section: ${r.videoSection}, b=AS/TIAS: ${r.bandwidth}`);
    if (r.enc.length === 0) throw new Error('B has no video sender');
    if (!r.enc.every((b) => b === 300000)) throw new Error(`sender encodings maxBitrate ${JSON.stringify(r.enc)}, expected 300000`);
    if (r.videoSection && !/b=AS:300\b/.test(r.bandwidth) && !/b=TIAS:300000\b/.test(r.bandwidth)) throw new Error('remote SDP video section lacks b=AS:300 / b=TIAS:300000');
  });

  await step('talking: fsim reports B talking, A\'s members list shows the indicator', async () => {
    await fsimTalking(conference, BOB, true);
    await A.waitForSelector(`${tid('member')}[data-user="${BOB}"][data-talking="true"]`);
    await shot(A, 'A-bob-talking');
    await fsimTalking(conference, BOB, false);
    await A.waitForSelector(`${tid('member')}[data-user="${BOB}"][data-talking="false"]`);
  });

  await step('B mutes: the button and B\'s own member row say so', async () => {
    await B1.bringToFront();
    await B1.click(tid('mute'));
    await B1.waitForSelector(`${tid('mute')}[aria-pressed="true"]`);
    await B1.waitForSelector(`${tid('member')}[data-user="${BOB}"][data-muted="true"]`);
    const tracksOff = await B1.evaluate(() => window.__demo.call.localStream.getAudioTracks().every((t) => !t.enabled));
    if (!tracksOff) throw new Error('microphone track still enabled after mute');
    await B1.click(tid('mute'));
    await B1.waitForSelector(`${tid('mute')}[aria-pressed="false"]`);
  });

  await step('chat: Cyrillic and emoji arrive intact both ways', async () => {
    await A.fill(tid('chat-input'), CHAT_A);
    await A.click(tid('chat-send'));
    const texts = (page) => page.$$eval(`${tid('chat-log')} ${tid('chat-text')}`, (els) => els.map((e) => e.textContent));
    await until('A\'s message on B\'s page', async () => (await texts(B1)).includes(CHAT_A));
    await B1.fill(tid('chat-input'), CHAT_B);
    await B1.press(tid('chat-input'), 'Enter');
    await until('B\'s message on A\'s page', async () => (await texts(A)).includes(CHAT_B));
    const onA = await texts(A);
    if (onA.join('\n') !== [CHAT_A, CHAT_B].join('\n')) throw new Error(`A's chat log: ${JSON.stringify(onA)}`);
    await shot(B1, 'B-chat');
  });

  await step('sendMessage counts code points: max_message_chars emoji pass, one more is refused locally', async () => {
    const r = await B1.evaluate(async () => {
      const { client, call } = window.__demo;
      const max = client.maxMessageChars;
      const ok = await call.sendMessage('😀'.repeat(max)).then((m) => [...m.text].length, (e) => `error ${e.code}: ${e.message}`);
      const tooLong = await call.sendMessage('😀'.repeat(max + 1)).then(() => 'sent', (e) => e.code);
      const empty = await call.sendMessage('  ').then(() => 'sent', (e) => e.code);
      return { max, ok, tooLong, empty };
    });
    if (r.ok !== r.max) throw new Error(`a ${r.max}-emoji message (${2 * r.max} UTF-16 units) was not delivered: ${r.ok}`);
    if (r.tooLong !== 'message_too_long') throw new Error(`${r.max + 1} emoji: ${r.tooLong}`);
    if (r.empty !== 'message_empty') throw new Error(`blank message: ${r.empty}`);
  });

  await step('A leaves: B sees `out`, A gets `callEnd` (hangup)', async () => {
    await A.click(tid('hangup'));
    await A.waitForSelector(`${tid('call-state')}[data-state="ended"]`);
    await until('A logged callEnd with reason hangup', async () => (await activity(A, 'end')).some((t) => t.includes('hangup')));
    await until('B\'s members list = bob', async () => (await memberUsers(B1)).join(',') === BOB);
    await until('B logged "alice left"', async () => (await activity(B1, 'out')).some((t) => t.includes(`${ALICE} left`)));
    await shot(B1, 'B-after-A-left');
    await B1.click(tid('hangup'));
    await B1.waitForSelector(`${tid('call-state')}[data-state="ended"]`);
  });

  await step('second invitation: B declines, A gets `declined`, B\'s other tab stops ringing', async () => {
    await invite(A, BOB, 'audio');
    await B1.waitForSelector(`${tid('incoming')}:not([hidden])`);
    await B2.waitForSelector(`${tid('incoming')}:not([hidden])`);
    await B1.click(tid('incoming-decline'));
    await until('A logged "bob declined"', async () => (await activity(A, 'declined')).some((t) => t.includes(`${BOB} declined`)));
    await B2.waitForSelector(tid('incoming'), { state: 'hidden' });
    await shot(A, 'A-declined');
  });

  await step('third invitation: B answers busy, A gets `busy`', async () => {
    await A.click(tid('hangup')).catch(() => {});
    await A.waitForSelector(`${tid('call-state')}:not([data-state="accepting"])`);
    await invite(A, BOB, 'audio');
    await B2.waitForSelector(`${tid('incoming')}:not([hidden])`);
    await B2.click(tid('incoming-busy'));
    await until('A logged "bob is busy"', async () => (await activity(A, 'busy')).some((t) => t.includes(`${BOB} is busy`)));
    await B1.waitForSelector(tid('incoming'), { state: 'hidden' });
    await A.click(tid('hangup')).catch(() => {});
  });

  await step('an expired token is refused with close code 4002 token_expired', async () => {
    const { token, events_url: url } = await demoApi('token-expired', { user_id: BOB });
    const raw = await B1.evaluate(
      ({ url, token }) =>
        new Promise((resolve) => {
          const ws = new WebSocket(url);
          ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token }));
          ws.onmessage = (e) => resolve({ unexpected: e.data });
          ws.onclose = (e) => resolve({ code: e.code, reason: e.reason });
          setTimeout(() => resolve({ timeout: true }), 10000);
        }),
      { url, token },
    );
    say(`  raw WebSocket closed: ${JSON.stringify(raw)}`);
    if (raw.code !== 4002) throw new Error(`expected close 4002, got ${JSON.stringify(raw)}`);
    const sdk = await B1.evaluate(
      async ({ url, token }) => {
        const { connect } = await import('./sdk/switchyard.js');
        return connect({ url, token, reconnect: true }).then(
          (c) => {
            c.close();
            return { connected: true };
          },
          (e) => ({ code: e.code, closeCode: e.closeCode }),
        );
      },
      { url, token },
    );
    say(`  SDK connect() rejected: ${JSON.stringify(sdk)}`);
    if (sdk.code !== 'token_expired' || sdk.closeCode !== 4002) throw new Error(`SDK: ${JSON.stringify(sdk)}`);
  });

  await step('resumption: B is offline while A invites; back online the SDK resumes and both tabs ring once', async () => {
    const tabs = [['B1', B1], ['B2', B2]];
    const before = {};
    const hellosBefore = {};
    for (const [name, page] of tabs) {
      before[name] = await page.evaluate(recordSdk, ['__demo.client', '__rec']);
      hellosBefore[name] = hellos.get(name).length;
    }
    await ctxB.setOffline(true);
    // The browser says `offline`: the SDK gives the socket up at once (it would otherwise hang
    // until the heartbeat noticed) and the page shows it.
    for (const [, page] of tabs) await page.waitForSelector(`${tid('connection')}[data-state="reconnecting"]`);
    const invited = await demoApi('invite', { from: ALICE, to: BOB, profile: 'audio', message: 'sent while you were offline' });
    say(`  ${BOB} offline (lastSeq ${JSON.stringify(before)}); ${ALICE} invited ${BOB} to ${invited.conference}`);
    await sleep(1500);
    if (await B1.isVisible(tid('incoming'))) throw new Error('B1 rang while offline: the channel was not cut');
    await shot(B1, 'B-offline-reconnecting');
    await ctxB.setOffline(false);
    for (const [name, page] of tabs) {
      await page.waitForSelector(`${tid('connection')}[data-state="open"]`);
      await page.waitForSelector(`${tid('incoming')}:not([hidden])`);
      const conf = await page.textContent(tid('incoming-conference'));
      if (conf !== invited.conference) throw new Error(`${name} rings for ${conf}, expected ${invited.conference}`);
    }
    await sleep(500); // a duplicate `call` would have arrived by now
    for (const [name, page] of tabs) {
      const rec = await page.evaluate(() => window.__rec);
      const sent = hellos.get(name).slice(hellosBefore[name]);
      say(`  ${name}: hello resume ${JSON.stringify(sent)} → connected ${JSON.stringify(rec.connected)}; events ${JSON.stringify(rec.seqs)}; states ${rec.states.join(' → ')}`);
      if (sent.length === 0 || !sent.every((r) => r?.seq === before[name])) throw new Error(`${name}: hello after the outage should resume from seq ${before[name]}: ${JSON.stringify(sent)}`);
      if (JSON.stringify(rec.connected) !== JSON.stringify([{ resumed: true, reconnected: true }])) throw new Error(`${name}: connected ${JSON.stringify(rec.connected)}`);
      if (rec.resync !== 0) throw new Error(`${name}: resync emitted although the channel resumed`);
      if (JSON.stringify(rec.calls) !== JSON.stringify([invited.conference])) throw new Error(`${name}: \`call\` events ${JSON.stringify(rec.calls)}, expected exactly one for ${invited.conference}`);
      if (!contiguous(rec.seqs, before[name] + 1)) throw new Error(`${name}: event seqs ${JSON.stringify(rec.seqs)} do not follow ${before[name]} without gaps or repeats`);
      if (rec.states.join(',') !== 'reconnecting,open') throw new Error(`${name}: states ${rec.states.join(' → ')}`);
      if (!rec.disconnected.every((d) => d.willReconnect)) throw new Error(`${name}: disconnected ${JSON.stringify(rec.disconnected)}`);
    }
    await shot(B1, 'B-rings-after-resume');
    await B1.click(tid('incoming-decline'));
    await B2.waitForSelector(tid('incoming'), { state: 'hidden' });
  });

  let C;
  const ctxC = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await step(`resync: a hello resuming from an unknown seq gets resumed:false; the SDK emits \`resync\` when the outage outgrew the replay buffer`, async () => {
    C = await openPage(ctxC, 'C');
    const { token, events_url: url } = await demoApi('login', { user_id: CAROL });
    const welcome = await C.evaluate(
      ({ url, token }) =>
        new Promise((resolve) => {
          const ws = new WebSocket(url);
          ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token, resume: { seq: 999999 } }));
          ws.onmessage = (e) => {
            resolve(JSON.parse(e.data));
            ws.close();
          };
          ws.onclose = (e) => resolve({ closed: e.code });
          setTimeout(() => resolve({ timeout: true }), 10000);
        }),
      { url, token },
    );
    say(`  raw hello resume {seq: 999999} → ${JSON.stringify({ type: welcome.type, seq: welcome.seq, resumed: welcome.resumed })}`);
    if (welcome.type !== 'welcome' || welcome.resumed !== false || !(welcome.seq < 999999)) throw new Error(`raw resume: ${JSON.stringify(welcome)}`);

    // The SDK: while it is offline, more events than the server keeps for resumption
    // (events.replay_events, 256 by default, as in this test's config) → resumed:false → `resync`.
    // The events: chat messages from SENDERS users, PER each (within the server's burst of 10
    // per channel, so none is refused), each user in a conference of its own with CAROL (a
    // small audience keeps the fan-out cheap).
    const SENDERS = 29;
    const PER = 9;
    const LOST = SENDERS * PER;
    const senders = await Promise.all(
      Array.from({ length: SENDERS }, async (_, i) => {
        const user = `filler${i}-${run}`;
        const conference = `resync${i}-${run}`;
        const { token: t } = await demoApi('login', { user_id: user });
        await demoApi('invite', { from: ALICE, to: CAROL, conference, profile: 'audio' });
        await demoApi('invite', { from: ALICE, to: user, conference, profile: 'audio' });
        return { token: t, conference };
      }),
    );
    const seqBefore = await C.evaluate(
      async ({ url, token }) => {
        const { connect } = await import('./sdk/switchyard.js');
        window.__carol = await connect({ url, token });
        return null;
      },
      { url, token },
    ).then(() => C.evaluate(recordSdk, ['__carol', '__rec']));
    const hellosBefore = hellos.get('C').length;
    await ctxC.setOffline(true);
    await until('C reconnecting', () => C.evaluate(() => window.__carol.state === 'reconnecting'));
    const t0 = Date.now();
    // Sent from A's page (online), over raw channels; each sender waits for its own echoes.
    await A.evaluate(
      ({ url, senders, per }) =>
        Promise.all(
          senders.map(
            ({ token, conference }, k) =>
              new Promise((resolve, reject) => {
                const ws = new WebSocket(url);
                let echoed = 0;
                ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token }));
                ws.onmessage = (e) => {
                  const f = JSON.parse(e.data);
                  if (f.type === 'welcome') {
                    for (let i = 0; i < per; i++) ws.send(JSON.stringify({ type: 'message', conference, text: `filler ${k}.${i}`, id: `f${k}.${i}` }));
                  } else if (f.type === 'message' && f.id?.startsWith(`f${k}.`) && ++echoed === per) {
                    ws.close();
                    resolve();
                  } else if (f.type === 'error') {
                    reject(new Error(`sender ${k}: ${e.data}`));
                  }
                };
                ws.onclose = (e) => echoed < per && reject(new Error(`sender ${k}: closed ${e.code} after ${echoed} echoes`));
              }),
          ),
        ),
      { url, senders, per: PER },
    );
    say(`  ${CAROL} offline at seq ${seqBefore}; ${LOST} messages from ${SENDERS} users meanwhile (${Date.now() - t0} ms)`);
    await ctxC.setOffline(false);
    await until('`resync` on C', () => C.evaluate(() => window.__rec.resync > 0));
    const r = await C.evaluate(() => ({ ...window.__rec, lastSeq: window.__carol.lastSeq, state: window.__carol.state }));
    const sent = hellos.get('C').slice(hellosBefore);
    say(`  hello resume ${JSON.stringify(sent)} → connected ${JSON.stringify(r.connected)}, resync ×${r.resync}, lastSeq ${r.lastSeq}, ${r.calls.length} calls`);
    if (!sent.every((x) => x?.seq === seqBefore) || sent.length === 0) throw new Error(`hello after the outage: ${JSON.stringify(sent)}`);
    if (JSON.stringify(r.connected) !== JSON.stringify([{ resumed: false, reconnected: true }])) throw new Error(`connected ${JSON.stringify(r.connected)}`);
    if (r.resync !== 1) throw new Error(`resync ×${r.resync}`);
    if (r.lastSeq !== seqBefore + LOST) throw new Error(`lastSeq ${r.lastSeq}, expected the welcome's ${seqBefore + LOST}`);
    if (r.calls.length !== 0 || r.seqs.length !== 0) throw new Error(`lost events were delivered anyway: ${JSON.stringify(r.seqs.slice(0, 10))}`);
    if (r.state !== 'open') throw new Error(`state ${r.state}`);
    await C.evaluate(() => window.__carol.close());
  });

  await step('getToken: connect() with an expired token and getToken recovers from 4002 with a fresh token', async () => {
    const { token: expired, events_url: url } = await demoApi('token-expired', { user_id: BOB });
    const r = await C.evaluate(
      async ({ url, expired, user }) => {
        const { default: Switchyard } = await import('./sdk/switchyard.js');
        let asked = 0;
        const getToken = async () => {
          asked += 1;
          const res = await fetch('/demo/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user_id: user }) });
          return (await res.json()).token;
        };
        const t0 = Date.now();
        const client = await Switchyard.connect({ url, token: expired, getToken });
        const out = { userId: client.userId, state: client.state, asked, ms: Date.now() - t0 };
        client.close();
        // Only getToken: the first token comes from it too.
        asked = 0;
        const second = await Switchyard.connect({ url, getToken });
        out.onlyGetToken = { userId: second.userId, state: second.state, asked };
        second.close();
        return out;
      },
      { url, expired, user: BOB },
    );
    say(`  ${JSON.stringify(r)}`);
    if (r.userId !== BOB || r.state !== 'open') throw new Error(`connect with an expired token + getToken: ${JSON.stringify(r)}`);
    if (r.asked !== 1) throw new Error(`getToken called ${r.asked} times, expected once (after the 4002)`);
    if (r.onlyGetToken.userId !== BOB || r.onlyGetToken.asked !== 1) throw new Error(`connect({getToken}): ${JSON.stringify(r.onlyGetToken)}`);
    const connects = hellos.get('C').length;
    if (connects < 3) throw new Error(`expected the expired hello, the retried hello and the getToken-only hello on C, saw ${connects}`);
  });

  await step('no page errors', async () => {
    for (const [name, lines] of logs) {
      const errors = lines.filter((l) => l.startsWith('[pageerror]'));
      if (errors.length) throw new Error(`${name}: ${errors.join('\n')}`);
    }
    await shot(A, 'A-final');
  });
}

main().then(
  () => {
    say(`PASS: ${stepNo} steps; screenshots in ${ART}`);
    process.exit(0);
  },
  async (err) => {
    console.error(`\nFAIL${err.step ? ` at step ${err.step}` : ''}: ${err.message}`);
    for (const [name, lines] of logs) {
      if (lines.length) console.error(`--- console of ${name} (last 30) ---\n${lines.slice(-30).join('\n')}`);
    }
    process.exit(1);
  },
);
