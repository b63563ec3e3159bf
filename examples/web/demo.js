// The demo page: a small app on the Switchyard SDK. The demo backend (/demo/api/…) stands in for
// your own web backend: it logs users in, hands out session tokens and sends invitations.
import JsSIP from './vendor/jssip.js';
import { connect, countChars } from './sdk/switchyard.js';

const API = new URL('api/', import.meta.url);
const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

const ui = {
  loginCard: $('login-card'),
  loginForm: $('login-form'),
  loginUser: $('login-user'),
  loginError: $('login-error'),
  session: $('session'),
  connection: $('connection'),
  whoami: $('whoami'),
  logout: $('logout'),
  app: $('app'),
  onlineList: $('online-list'),
  onlineEmpty: $('online-empty'),
  onlineCount: $('online-count'),
  inviteForm: $('invite-form'),
  inviteSubmit: $('invite-submit'),
  inviteMessage: $('invite-message'),
  inviteHelp: $('invite-help'),
  maxBitrate: $('max-bitrate'),
  autoBusy: $('auto-busy'),
  incoming: $('incoming'),
  incomingCaller: $('incoming-caller'),
  incomingProfile: $('incoming-profile'),
  incomingConference: $('incoming-conference'),
  incomingMessage: $('incoming-message'),
  incomingAccept: $('incoming-accept'),
  incomingDecline: $('incoming-decline'),
  incomingBusy: $('incoming-busy'),
  callState: $('call-state'),
  callTimer: $('call-timer'),
  callConference: $('call-conference'),
  media: $('media'),
  videoRemote: $('video-remote'),
  videoLocal: $('video-local'),
  audioRemote: $('audio-remote'),
  mute: $('mute'),
  hangup: $('hangup'),
  members: $('members'),
  membersEmpty: $('members-empty'),
  memberCount: $('member-count'),
  chatLog: $('chat-log'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
  chatSend: $('chat-send'),
  chatCounter: $('chat-counter'),
  chatMax: $('chat-max'),
  eventLog: $('event-log'),
};

const state = {
  userId: null,
  client: null,
  /** conferences this tab created by inviting itself: answered automatically */
  ownInvites: new Set(),
  inviteInFlight: Promise.resolve(),
  /** the call shown in the call panel */
  call: null,
  /** the invitation shown in the banner */
  ringing: null,
  /** member_id → member of the call's conference */
  members: new Map(),
  /** while a members request is in flight: member_id → 'in' | 'out' from events meanwhile */
  membersMeanwhile: null,
  selected: new Set(),
  onlineTimer: null,
  clockTimer: null,
};

// For the browser tests and for poking around in devtools; the SDK itself leaks no globals.
window.__demo = state;

async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(new URL(path, API), init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!res.ok) {
    const err = new Error(data?.detail ?? data?.code ?? `${res.status} ${res.statusText}`);
    err.code = data?.code;
    throw err;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data') || k.startsWith('aria') || k === 'role' || k === 'title' || k === 'for') node.setAttribute(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v === true ? '' : v);
    else node[k] = v;
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const time = (iso) => (iso ? new Date(iso) : new Date()).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

function log(kind, text) {
  const item = el('li', { class: `log-${kind}`, dataTestid: 'event', dataKind: kind }, el('time', { text: time() }), ' ', text);
  ui.eventLog.prepend(item);
  while (ui.eventLog.children.length > 60) ui.eventLog.lastElementChild.remove();
}

// ---- login ----

ui.loginUser.value = localStorage.getItem('switchyard-demo-user') ?? '';

ui.loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  ui.loginError.hidden = true;
  const userId = ui.loginUser.value.trim();
  if (!ui.loginUser.checkValidity()) {
    ui.loginError.textContent = 'Use letters, digits, “_”, “.” or “-” (up to 64).';
    ui.loginError.hidden = false;
    return;
  }
  try {
    await login(userId);
  } catch (err) {
    ui.loginError.textContent = `Could not log in: ${err.message}`;
    ui.loginError.hidden = false;
  }
});

async function login(userId) {
  const session = await api('login', { user_id: userId });
  localStorage.setItem('switchyard-demo-user', userId);
  state.userId = session.user_id;
  ui.whoami.textContent = session.user_id;
  ui.loginCard.hidden = true;
  ui.session.hidden = false;
  ui.app.hidden = false;
  setConnection('connecting');

  const client = await connect({
    url: session.events_url,
    token: session.token,
    // Called when the token expired and the channel must reconnect: ask the backend again.
    getToken: async () => (await api('login', { user_id: userId })).token,
    JsSIP,
    busyWhenInCall: ui.autoBusy.checked,
  });
  state.client = client;
  wire(client);
  setConnection('open');
  ui.chatMax.textContent = String(client.maxMessageChars);
  log('info', `Connected as ${client.userId}`);
  pollOnline();
  state.onlineTimer = setInterval(pollOnline, 2000);
}

ui.logout.addEventListener('click', () => {
  state.client?.close();
  location.reload();
});

function setConnection(s) {
  ui.connection.dataset.state = s;
  ui.connection.textContent = { connecting: 'connecting…', open: 'online', reconnecting: 'reconnecting…', closed: 'offline' }[s] ?? s;
}

ui.autoBusy.addEventListener('change', () => {
  // The option is read when an invitation arrives.
  if (state.client) state.client.busyWhenInCall = ui.autoBusy.checked;
});

// ---- online users and inviting ----

async function pollOnline() {
  let data;
  try {
    data = await api('online');
  } catch {
    return;
  }
  const others = (data.users ?? []).filter((u) => u.user_id !== state.userId);
  ui.onlineCount.textContent = String(others.length);
  ui.onlineEmpty.hidden = others.length > 0;
  const ids = new Set(others.map((u) => u.user_id));
  for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
  const rows = others.map((u) => {
    const id = `pick-${u.user_id}`;
    const box = el('input', { type: 'checkbox', id, value: u.user_id, checked: state.selected.has(u.user_id), dataTestid: 'online-pick' });
    box.addEventListener('change', () => {
      if (box.checked) state.selected.add(u.user_id);
      else state.selected.delete(u.user_id);
      updateInviteButton();
    });
    const tabs = u.connections > 1 ? el('span', { class: 'tabs', text: `${u.connections} tabs` }) : null;
    return el('li', { class: 'online-user', dataTestid: 'online-user', dataUser: u.user_id }, box,
      el('label', { for: id }, el('span', { class: 'avatar', ariaHidden: 'true', text: initials(u.user_id) }), el('span', { class: 'name', text: u.user_id })), tabs);
  });
  ui.onlineList.replaceChildren(...rows);
  updateInviteButton();
}

function initials(name) {
  const parts = name.split(/[._-]+/).filter(Boolean);
  return ((parts[0]?.[0] ?? '?') + (parts[1]?.[0] ?? '')).toUpperCase();
}

function updateInviteButton() {
  const n = state.selected.size;
  ui.inviteSubmit.disabled = n === 0;
  const inCall = state.call && state.call.state !== 'ended';
  ui.inviteSubmit.textContent = n === 0 ? 'Invite' : `${inCall ? 'Add' : 'Call'} ${n === 1 ? [...state.selected][0] : `${n} people`}`;
  ui.inviteHelp.textContent = inCall ? `Invites into ${state.call.conference}.` : 'Select who to call. You join the conference too.';
}

ui.inviteForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const invitees = [...state.selected];
  if (invitees.length === 0) return;
  const profile = new FormData(ui.inviteForm).get('profile') ?? 'audio';
  const message = ui.inviteMessage.value.trim() || undefined;
  state.inviteInFlight = invite(invitees, profile, message).catch((err) => log('error', `Invite failed: ${err.message}`));
});

async function invite(invitees, profile, message) {
  ui.inviteSubmit.disabled = true;
  try {
    let conference = state.call && state.call.state !== 'ended' ? state.call.conference : null;
    if (!conference) {
      // Invite ourselves first: that places the conference, and this tab dials in like everyone.
      const own = await api('invite', { from: state.userId, to: state.userId, profile, message });
      conference = own.conference;
      state.ownInvites.add(conference);
    }
    for (const to of invitees) {
      await api('invite', { from: state.userId, to, conference, profile, message });
      log('info', `Invited ${to} to ${conference}`);
    }
    state.selected.clear();
    ui.inviteMessage.value = '';
    pollOnline();
  } finally {
    updateInviteButton();
  }
}

// ---- SDK events ----

function wire(client) {
  client.on('state', ({ state: s }) => setConnection(s));
  client.on('resync', () => {
    log('info', 'Reconnected after missing events: refreshing');
    if (state.call) refreshMembers();
  });
  client.on('error', (err) => log('error', `${err.code}: ${err.message}`));

  client.on('call', async (call) => {
    // Our own invitation (this tab just created the conference): answer it at once.
    await state.inviteInFlight;
    if (call.callerId === state.userId && state.ownInvites.delete(call.conference)) {
      startCall(call, { own: true });
      return;
    }
    if (call.state !== 'ringing') return;
    showIncoming(call);
    log('ring', `${call.callerId ?? 'Someone'} is calling (${call.profile})`);
  });
  client.on('missedCall', ({ call }) => log('info', `Answered “busy” to ${call.callerId ?? 'a call'} (${call.conference})`));
  client.on('callCancelled', ({ call, reason }) => {
    if (state.ringing === call) hideIncoming();
    const why = { answered: 'answered in another tab', declined: 'declined in another tab', busy: 'busy', cancelled: 'cancelled by the caller', ended: 'the conference ended' }[reason] ?? reason;
    log('info', `Invitation to ${call.conference} stopped ringing: ${why}`);
  });
  client.on('callAccept', ({ call }) => log('info', `Answering ${call.conference}…`));
  client.on('callStart', ({ call }) => {
    setCallState(call, 'active', 'In call');
    log('start', `Joined ${call.conference}`);
    refreshMembers();
  });
  client.on('callEnd', ({ call, reason, duration }) => {
    log('end', `Left ${call.conference}: ${reason}, ${formatDuration(duration)}`);
    if (state.call === call) endCallUi(reason);
  });
  client.on('in', ({ conference, member, self }) => {
    if (!isMine(conference)) return;
    state.members.set(member.member_id, member);
    state.membersMeanwhile?.set(member.member_id, 'in');
    renderMembers();
    if (!self) log('in', `${member.user_id} joined`);
  });
  client.on('out', ({ conference, member, reason, self }) => {
    if (!isMine(conference)) return;
    state.members.delete(member.member_id);
    state.membersMeanwhile?.set(member.member_id, 'out');
    renderMembers();
    if (!self) log('out', `${member.user_id} left (${reason})`);
  });
  client.on('memberUpdated', ({ conference, member }) => {
    if (!isMine(conference)) return;
    state.members.set(member.member_id, { ...state.members.get(member.member_id), ...member });
    state.membersMeanwhile?.set(member.member_id, 'in');
    renderMembers();
  });
  client.on('talking', ({ conference, memberId, talking }) => {
    if (!isMine(conference)) return;
    const m = state.members.get(memberId);
    if (!m) return;
    m.talking = talking;
    renderMembers();
  });
  client.on('declined', ({ conference, userId }) => log('declined', `${userId} declined (${conference})`));
  client.on('busy', ({ conference, userId }) => log('busy', `${userId} is busy (${conference})`));
  client.on('conferenceEnded', ({ conference, reason }) => {
    if (isMine(conference)) log('end', `Conference ended: ${reason}`);
  });
  client.on('message', (m) => {
    if (!isMine(m.conference)) return;
    addChat(m);
  });
}

const isMine = (conference) => state.call && state.call.conference === conference;

// ---- incoming call banner ----

function showIncoming(call) {
  state.ringing = call;
  ui.incomingCaller.textContent = call.callerId ?? 'Someone';
  ui.incomingProfile.textContent = call.profile === 'video' ? 'video call' : 'audio call';
  ui.incomingConference.textContent = call.conference;
  ui.incomingMessage.textContent = call.message ? `“${call.message}”` : '';
  ui.incoming.hidden = false;
  ui.incomingAccept.focus();
  document.title = `📞 ${call.callerId ?? 'Call'} — Switchyard demo`;
}

function hideIncoming() {
  state.ringing = null;
  ui.incoming.hidden = true;
  document.title = 'Switchyard demo';
}

ui.incomingAccept.addEventListener('click', () => {
  const call = state.ringing;
  if (!call) return;
  hideIncoming();
  if (state.call && state.call.state !== 'ended') state.call.hangup();
  startCall(call, { own: false });
});
ui.incomingDecline.addEventListener('click', () => {
  const call = state.ringing;
  hideIncoming();
  if (call) {
    call.decline();
    log('info', `Declined ${call.callerId ?? 'the call'}`);
  }
});
ui.incomingBusy.addEventListener('click', () => {
  const call = state.ringing;
  hideIncoming();
  if (call) {
    call.busy();
    log('info', `Answered “busy” to ${call.callerId ?? 'the call'}`);
  }
});

// ---- the call ----

function startCall(call, { own }) {
  state.call = call;
  state.members.clear();
  renderMembers();
  ui.chatLog.replaceChildren();
  ui.callConference.textContent = call.conference;
  const video = call.profile === 'video';
  ui.media.hidden = !video;
  ui.media.classList.toggle('audio-only', !video);
  setCallState(call, 'accepting', own ? 'Joining…' : 'Answering…');
  const maxVideoBitrate = Number(ui.maxBitrate.value) || undefined;
  call
    .accept({
      type: video ? 'video' : 'audio',
      video_remote: ui.videoRemote,
      audio_remote: ui.audioRemote,
      video_local: video ? ui.videoLocal : null,
      maxVideoBitrate,
    })
    .catch((err) => log('error', `Call failed: ${err.code ?? ''} ${err.message}`));
  call.on('start', () => startClock(call));
  updateInviteButton();
}

function setCallState(call, s, label) {
  if (state.call !== call) return;
  ui.callState.dataset.state = s;
  ui.callState.textContent = label;
  const live = s === 'active' || s === 'accepting';
  ui.hangup.disabled = !live;
  ui.mute.disabled = !live;
  ui.chatInput.disabled = !live;
  ui.chatSend.disabled = !live;
}

function endCallUi(reason) {
  const call = state.call;
  setCallState(call, 'ended', `Call ended (${reason})`);
  stopClock();
  state.call = null;
  state.members.clear();
  renderMembers();
  ui.media.hidden = true;
  ui.mute.setAttribute('aria-pressed', 'false');
  ui.mute.textContent = 'Mute';
  updateInviteButton();
}

function startClock(call) {
  stopClock();
  const tick = () => (ui.callTimer.textContent = formatDuration(call.duration));
  tick();
  state.clockTimer = setInterval(tick, 1000);
}

function stopClock() {
  clearInterval(state.clockTimer);
  ui.callTimer.textContent = '';
}

function formatDuration(s) {
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

ui.hangup.addEventListener('click', () => state.call?.hangup());
ui.mute.addEventListener('click', () => {
  const call = state.call;
  if (!call) return;
  call.mute(!call.muted);
  ui.mute.setAttribute('aria-pressed', String(call.muted));
  ui.mute.textContent = call.muted ? 'Unmute' : 'Mute';
  renderMembers();
});

async function refreshMembers() {
  const call = state.call;
  if (!call) return;
  // Events can overtake the answer (another connection): what they said meanwhile wins.
  const meanwhile = new Map();
  state.membersMeanwhile = meanwhile;
  try {
    const data = await api(`conferences/${encodeURIComponent(call.conference)}/members`);
    if (state.call !== call) return;
    const list = Array.isArray(data) ? data : data?.members ?? [];
    const members = new Map(list.map((m) => [m.member_id, m]));
    for (const [id, what] of meanwhile) {
      if (what === 'out') members.delete(id);
      else if (state.members.has(id)) members.set(id, state.members.get(id));
    }
    state.members = members;
    renderMembers();
  } catch (err) {
    log('error', `Members: ${err.message}`);
  } finally {
    if (state.membersMeanwhile === meanwhile) state.membersMeanwhile = null;
  }
}

function renderMembers() {
  const list = [...state.members.values()].sort((a, b) => String(a.joined_at ?? '').localeCompare(String(b.joined_at ?? '')));
  ui.memberCount.textContent = String(list.length);
  ui.membersEmpty.hidden = list.length > 0;
  ui.membersEmpty.textContent = state.call ? 'Waiting for people to join…' : 'Not in a conference.';
  ui.members.replaceChildren(
    ...list.map((m) => {
      const me = m.user_id === state.userId;
      const muted = Boolean(m.muted) || (me && state.call?.muted);
      const talking = Boolean(m.talking) && !muted;
      return el('li', {
        class: `member${talking ? ' talking' : ''}${muted ? ' muted' : ''}`,
        dataTestid: 'member',
        dataUser: m.user_id,
        dataTalking: String(talking),
        dataMuted: String(Boolean(muted)),
      },
      el('span', { class: 'avatar', ariaHidden: 'true', text: initials(m.user_id) }),
      el('span', { class: 'name', text: me ? `${m.user_id} (you)` : m.user_id }),
      el('span', { class: 'indicators' },
        talking ? el('span', { class: 'badge badge-talking', dataTestid: 'talking', text: 'talking' }) : null,
        muted ? el('span', { class: 'badge badge-muted', dataTestid: 'muted', text: 'muted' }) : null,
        m.video ? el('span', { class: 'badge', text: 'video' }) : null));
    }),
  );
}

// ---- chat ----

function addChat(m) {
  const item = el('li', { class: `chat-message${m.self ? ' own' : ''}`, dataTestid: 'chat-message', dataFrom: m.from },
    el('span', { class: 'chat-meta' }, el('strong', { text: m.self ? 'you' : m.from }), ' ', el('time', { text: time(m.at) })),
    el('span', { class: 'chat-text', dataTestid: 'chat-text', text: m.text }));
  ui.chatLog.append(item);
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

ui.chatInput.addEventListener('input', () => {
  const n = countChars(ui.chatInput.value);
  ui.chatCounter.textContent = String(n);
  ui.chatCounter.parentElement.classList.toggle('over', state.client && n > state.client.maxMessageChars);
});

ui.chatForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = ui.chatInput.value;
  if (!text.trim() || !state.call) return;
  ui.chatSend.disabled = true;
  try {
    await state.call.sendMessage(text);
    ui.chatInput.value = '';
    ui.chatCounter.textContent = '0';
  } catch (err) {
    log('error', `Message not sent: ${err.message}`);
  } finally {
    ui.chatSend.disabled = !state.call;
    ui.chatInput.focus();
  }
});
