// boxoffice web page: plain ES module, no framework, no build step.
// Flow: log in -> concerts -> waiting room -> dates -> seat map -> hold -> charge/pay -> history.
// The access token and the queue token live in sessionStorage (one tab = one session).

const API = '/api/v1';
const SEAT_REFRESH_MS = 3000;

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

const wonFmt = new Intl.NumberFormat('en-US');
export const won = (n) => `${wonFmt.format(n)} won`;

const dateFmt = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const fmtDate = (iso) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : dateFmt.format(d);
};

function fmtWait(seconds) {
  if (seconds <= 0) return 'less than a minute';
  if (seconds < 60) return `about ${seconds} s`;
  const m = Math.round(seconds / 60);
  if (m < 60) return `about ${m} min`;
  const h = Math.floor(m / 60);
  return `about ${h} h ${m % 60} min`;
}

function mmss(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// Parses "50,000", "50 000" or "50000" into an integer; NaN when it is not a whole number.
function parseWon(text) {
  const t = String(text).replace(/[\s,_]|won/gi, '');
  return /^\d{1,16}$/.test(t) ? Number(t) : NaN;
}

const uuid = () => (crypto.randomUUID ? crypto.randomUUID()
  : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join(''));

// ---------------------------------------------------------------- session state

const store = {
  get(k) { try { return JSON.parse(sessionStorage.getItem(`bx.${k}`)); } catch { return null; } },
  set(k, v) { if (v === null || v === undefined) sessionStorage.removeItem(`bx.${k}`); else sessionStorage.setItem(`bx.${k}`, JSON.stringify(v)); },
};

const state = {
  view: null,
  concerts: [],            // [{concertId,title,venue}]
  concert: null,           // the concert being booked
  schedules: [],
  schedule: null,          // the date whose seat map is open
  seats: new Map(),        // seatNo -> {price, available}
  seatButtons: [],         // index seatNo-1 -> button
  selectedSeat: null,
  myRes: new Map(),        // seatNo -> reservation of mine on the open schedule (HELD or CONFIRMED)
  hold: null,              // {reservationId, scheduleId, seatNo, price, expiresAt}
  clockSkew: 0,            // server time - local time, ms (from the Date header)
  balance: null,
  payKey: null,            // {reservationId, key}: reused when a payment is retried
  chargeKey: null,         // {amount, key}: reused when the same charge is retried
  pollTimer: null,
  seatTimer: null,
  countdownTimer: null,
  queueStartPos: 0,
  queueBestPos: 0,
};

const auth = () => store.get('auth');          // {accessToken, userId, name, expiresAt}
const queue = () => store.get('queue');        // {token, concertId}

// ---------------------------------------------------------------- errors

// One sentence for every error code of docs/openapi.yaml (ErrorCode).
const ERROR_TEXT = {
  VALIDATION: 'Please check what you entered.',
  UNAUTHORIZED: 'Your login has ended. Please log in again.',
  BAD_CREDENTIALS: 'That name and password do not match. Check them and try again.',
  ADMIN_KEY_INVALID: 'This needs a valid admin key.',
  ADMIN_DISABLED: 'The admin functions are switched off on this server.',
  QUEUE_TOKEN_INVALID: 'Your place in the waiting room was not found. Join the waiting room again.',
  TOKEN_NOT_YOURS: 'This waiting-room pass belongs to another account. Join the waiting room again.',
  QUEUE_NOT_ACTIVE: 'It is not your turn yet: booking opens when the waiting room lets you in.',
  TOKEN_EXPIRED: 'Your waiting-room pass has expired (it was idle too long, you left, or you already paid with it). Rejoin the waiting room to continue.',
  NOT_FOUND: 'That could not be found.',
  CONCERT_NOT_FOUND: 'This concert no longer exists.',
  SCHEDULE_NOT_FOUND: 'This date no longer exists. Pick another date.',
  SEAT_NOT_FOUND: 'There is no such seat on this date.',
  RESERVATION_NOT_FOUND: 'This reservation was not found.',
  ROUTE_NOT_FOUND: 'The server does not know this request. Reload the page.',
  METHOD_NOT_ALLOWED: 'The server does not allow this request. Reload the page.',
  NAME_TAKEN: 'That name is already taken. Choose another name, or log in if it is yours.',
  SEAT_UNAVAILABLE: 'Sorry, that seat was just taken by someone else. Please pick another seat.',
  SEAT_LIMIT: 'You already hold or own the most seats allowed for this date.',
  SALE_CLOSED: 'Tickets for this date are not on sale right now.',
  NOT_HELD: 'This seat is no longer held for you (it was released or cancelled).',
  HOLD_EXPIRED: 'Your hold expired; the seat was released. Pick a seat again.',
  ALREADY_PAID: 'This seat is already paid for. See your purchases.',
  PRICE_MISMATCH: 'The price of this seat has changed. Check the price and try again.',
  BALANCE_LIMIT: 'Your balance cannot go above 1,000,000,000,000 won.',
  INSUFFICIENT_BALANCE: 'Your balance is too low for this seat. Charge your balance, then pay again.',
  PAYLOAD_TOO_LARGE: 'That request was too large.',
  UNSUPPORTED_MEDIA_TYPE: 'The server could not read that request. Reload the page.',
  IDEMPOTENCY_KEY_REUSED: 'This attempt clashed with an earlier one. Please try again.',
  UNAVAILABLE: 'The service is busy right now. Please try again in a moment.',
  INTERNAL: 'Something went wrong on our side. Please try again.',
  NETWORK: 'Cannot reach the server. Check your connection and try again.',
};

const FIELD_TEXT = {
  name: 'Name', password: 'Password', amount: 'Amount', seatNo: 'Seat', scheduleId: 'Date',
  reservationId: 'Reservation', limit: 'Page size', before: 'Page',
};

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code);
    this.status = status; this.code = code; this.field = field;
  }
  get friendly() {
    if (this.code === 'VALIDATION') {
      const f = FIELD_TEXT[this.field] || this.field;
      return f ? `${f}: ${this.message}.` : `${ERROR_TEXT.VALIDATION} (${this.message})`;
    }
    return ERROR_TEXT[this.code] || `Unexpected error (${this.status}${this.code ? ` ${this.code}` : ''}).`;
  }
}

// Every API call goes through here: tokens, Idempotency-Key, JSON, error shape.
async function api(method, path, { body, queueToken = false, idem, authed = true } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const a = auth();
  if (authed && a) headers.Authorization = `Bearer ${a.accessToken}`;
  if (queueToken) { const q = queue(); if (q) headers['X-Queue-Token'] = q.token; }
  if (idem) headers['Idempotency-Key'] = idem;
  let res;
  try {
    res = await fetch(API + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', String(e));
  }
  const date = Date.parse(res.headers.get('Date') || '');
  if (!Number.isNaN(date)) {
    const skew = date - Date.now();
    state.clockSkew = Math.abs(skew) > 2000 ? skew : 0; // Date has 1 s resolution: ignore small skew
  }
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    const err = new ApiError(res.status, e.code || `HTTP_${res.status}`, e.message, e.field);
    if (err.code === 'UNAUTHORIZED' && authed) { expireLogin(); }
    throw err;
  }
  return { status: res.status, data };
}

// ---------------------------------------------------------------- notices

function notify(text, { kind = 'info', actions = [] } = {}) {
  const box = $('notice');
  box.className = `notice ${kind}`;
  // Errors interrupt; everything else waits its turn.
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  box.setAttribute('aria-live', kind === 'error' ? 'assertive' : 'polite');
  box.dataset.kind = kind;
  $('notice-text').textContent = text;
  const acts = $('notice-actions');
  acts.replaceChildren(...actions.map(([label, fn]) => el('button', { type: 'button', onclick: fn, text: label })));
  box.hidden = false;
}
function clearNotice() { $('notice').hidden = true; $('notice-text').textContent = ''; }

function showError(err, extra = {}) {
  if (!(err instanceof ApiError)) { console.error(err); err = new ApiError(0, 'INTERNAL', String(err)); }
  const actions = extra.actions || [];
  if ((err.code === 'TOKEN_EXPIRED' || err.code === 'QUEUE_TOKEN_INVALID' || err.code === 'TOKEN_NOT_YOURS'
       || err.code === 'QUEUE_NOT_ACTIVE') && state.concert) {
    actions.push(['Rejoin the waiting room', () => joinQueue(state.concert)]);
  }
  notify(extra.text || err.friendly, { kind: 'error', actions });
}

// ---------------------------------------------------------------- views

const TITLES = { auth: 'Log in', concerts: 'Concerts', queue: 'Waiting room', booking: 'Choose a date',
  done: 'Payment complete', account: 'Balance and purchases' };

function setTitle(t) { document.title = `${t} — boxoffice`; }

function show(view, { focus = true } = {}) {
  if (state.view !== view) {
    for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== `view-${view}`;
    state.view = view;
    document.body.dataset.view = view;
    setTitle(TITLES[view]);
    if (focus) {
      const h = document.querySelector(`#view-${view} h1`);
      if (h) { h.tabIndex = -1; h.focus({ preventScroll: false }); }
    }
  }
  if (view !== 'queue') stopPolling();
  if (view !== 'booking') { stopSeatRefresh(); }
  $('nav').hidden = !auth();
}

// ---------------------------------------------------------------- auth

function expireLogin() {
  stopPolling(); stopSeatRefresh(); stopCountdown();
  store.set('auth', null); store.set('queue', null);
  state.hold = null; state.balance = null;
  show('auth');
  notify(ERROR_TEXT.UNAUTHORIZED, { kind: 'error' });
}

async function login(name, password) {
  const { data } = await api('POST', '/sessions', { body: { name, password }, authed: false });
  store.set('auth', { accessToken: data.accessToken, userId: data.userId, name, expiresAt: data.expiresAt });
  $('nav-name').textContent = name;
  refreshBalance();
  await showConcerts();
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

async function withBusy(button, fn) {
  if (button.disabled) return;
  button.disabled = true; button.setAttribute('aria-busy', 'true');
  try { await fn(); } finally { button.disabled = false; button.removeAttribute('aria-busy'); }
}

function bindAuth() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const { name, password } = formValues(ev.target);
    if (!name || !password) { notify('Enter your name and password.', { kind: 'error' }); return; }
    withBusy($('login-submit'), async () => {
      try { clearNotice(); await login(name, password); } catch (e) { showError(e); }
    });
  });
  $('signup-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const { name, password } = formValues(ev.target);
    if (!name.trim()) { notify('Name: choose a name of 1 to 64 characters.', { kind: 'error' }); $('signup-name').focus(); return; }
    if (password.length < 8) { notify('Password: use at least 8 characters.', { kind: 'error' }); $('signup-password').focus(); return; }
    withBusy($('signup-submit'), async () => {
      try {
        clearNotice();
        await api('POST', '/users', { body: { name, password }, authed: false });
        await login(name, password);
        notify(`Welcome, ${name}! Your account is ready.`);
      } catch (e) { showError(e); }
    });
  });
  $('nav-logout').addEventListener('click', async () => {
    const q = queue();
    if (q) { try { await api('DELETE', '/queue/tokens/current', { queueToken: true }); } catch { /* already gone */ } }
    stopPolling(); stopSeatRefresh(); stopCountdown();
    store.set('auth', null); store.set('queue', null);
    state.hold = null; state.concert = null;
    show('auth');
    notify('You are logged out.');
  });
}

// ---------------------------------------------------------------- balance

async function refreshBalance() {
  try {
    const { data } = await api('GET', '/users/me/balance');
    setBalance(data.balance);
  } catch (e) { if (e.code !== 'UNAUTHORIZED') showError(e); }
}

function setBalance(b) {
  state.balance = b;
  for (const id of ['nav-balance', 'hold-balance', 'account-balance']) $(id).textContent = won(b);
  updatePayButton();
}

function bindCharge(formId, inputId, buttonId) {
  $(formId).addEventListener('submit', (ev) => {
    ev.preventDefault();
    const amount = parseWon($(inputId).value);
    if (!Number.isSafeInteger(amount) || amount < 1 || amount > 10_000_000) {
      notify('Amount: enter a whole number of won from 1 to 10,000,000.', { kind: 'error' });
      $(inputId).focus();
      return;
    }
    withBusy($(buttonId), async () => {
      // Same amount retried after a failure keeps its key, so a lost reply cannot charge twice.
      if (!state.chargeKey || state.chargeKey.amount !== amount) state.chargeKey = { amount, key: uuid() };
      try {
        const { data } = await api('POST', '/users/me/balance/charge', { body: { amount }, idem: state.chargeKey.key });
        state.chargeKey = null;
        setBalance(data.balance);
        notify(`Added ${won(amount)}. Your balance is now ${won(data.balance)}.`, { kind: 'success' });
      } catch (e) { showError(e); }
    });
  });
}

// ---------------------------------------------------------------- concerts

async function showConcerts() {
  show('concerts');
  try {
    const { data } = await api('GET', '/concerts', { authed: false });
    state.concerts = data.concerts;
    const list = $('concert-list');
    list.replaceChildren(...data.concerts.map((c) => el('li', { class: 'card concert' },
      el('h2', { text: c.title }),
      el('p', { class: 'muted', text: c.venue }),
      el('button', {
        type: 'button', class: 'primary', 'data-concert': c.concertId,
        'aria-label': `Get tickets for ${c.title}`, onclick: () => joinQueue(c), text: 'Get tickets',
      }))));
    $('concerts-empty').hidden = data.concerts.length > 0;
  } catch (e) { showError(e); }
}

// ---------------------------------------------------------------- waiting room

function stopPolling() { clearTimeout(state.pollTimer); state.pollTimer = null; }

async function joinQueue(concert) {
  clearNotice();
  state.concert = concert;
  store.set('concert', concert);
  const q = queue();
  // A token of another concert is left: one place per concert, and the page books one concert at a time.
  if (q && q.concertId !== concert.concertId) {
    try { await api('DELETE', '/queue/tokens/current', { queueToken: true }); } catch { /* expired already */ }
    store.set('queue', null);
  }
  try {
    const { data } = await api('POST', `/concerts/${concert.concertId}/queue/tokens`);
    store.set('queue', { token: data.token, concertId: concert.concertId });
    state.queueStartPos = 0;
    state.queueBestPos = 0;
    onQueueStatus(data);
  } catch (e) { showError(e); }
}

function onQueueStatus(t) {
  if (t.status === 'ACTIVE') {
    stopPolling();
    const wasWaiting = state.view === 'queue';
    showBooking();
    if (wasWaiting) notify("It's your turn! Choose a date and a seat.", { kind: 'success' });
    return;
  }
  show('queue');
  $('queue-concert').textContent = state.concert ? state.concert.title : '';
  const pos = t.position;
  // Progress through the line: 0 % at the position first seen, growing as the
  // position falls, never back (the best position seen counts).
  if (!state.queueStartPos) state.queueStartPos = pos;
  state.queueBestPos = state.queueBestPos ? Math.min(state.queueBestPos, pos) : pos;
  $('queue-state').textContent = 'You are waiting in line.';
  $('queue-position').textContent = wonFmt.format(pos);
  $('queue-ahead').textContent = wonFmt.format(Math.max(0, pos - 1));
  $('queue-eta').textContent = fmtWait(t.estimatedWaitSeconds);
  const p = $('queue-progress');
  p.max = state.queueStartPos;
  p.value = Math.max(0, state.queueStartPos - state.queueBestPos);
  p.setAttribute('aria-valuetext', `position ${pos}`);
  $('queue-next').textContent = `Checking again in ${Math.max(1, Math.round(t.pollAfterMs / 1000))} s.`;
  const live = `Position ${pos}, ${Math.max(0, pos - 1)} ahead of you.`;
  if ($('queue-live').textContent !== live) $('queue-live').textContent = live;
  setTitle(`Waiting room — position ${pos}`);
  stopPolling();
  state.pollTimer = setTimeout(pollQueue, t.pollAfterMs);
}

async function pollQueue() {
  state.pollTimer = null;
  if (state.view !== 'queue' || !queue()) return;
  try {
    const { data } = await api('GET', '/queue/status', { queueToken: true });
    if (state.view === 'queue') onQueueStatus(data);
  } catch (e) {
    if (e.code === 'TOKEN_EXPIRED' || e.code === 'QUEUE_TOKEN_INVALID' || e.code === 'TOKEN_NOT_YOURS') {
      store.set('queue', null);
      $('queue-state').textContent = 'You lost your place in line.';
      setTitle('Waiting room — place lost');
      showError(e);
    } else if (e.code !== 'UNAUTHORIZED') {
      // Transient (network, busy): keep trying, but do not hammer the server.
      showError(e, { text: `${e.friendly} Still trying to keep your place…` });
      state.pollTimer = setTimeout(pollQueue, 3000);
    }
  }
}

function bindQueue() {
  $('queue-leave').addEventListener('click', async () => {
    stopPolling();
    try { await api('DELETE', '/queue/tokens/current', { queueToken: true }); } catch { /* gone anyway */ }
    store.set('queue', null);
    await showConcerts();
    notify('You left the waiting room.');
  });
}

// Any booking call that finds the queue token gone stops the booking view.
function bookingError(e) {
  if (e.code === 'TOKEN_EXPIRED' || e.code === 'QUEUE_TOKEN_INVALID' || e.code === 'TOKEN_NOT_YOURS') {
    store.set('queue', null);
    stopSeatRefresh();
  }
  if (e.code === 'QUEUE_NOT_ACTIVE') stopSeatRefresh();
  showError(e);
}

// ---------------------------------------------------------------- dates

async function showBooking() {
  show('booking');
  $('booking-title').textContent = 'Choose a date';
  $('booking-concert').textContent = state.concert ? `${state.concert.title} — ${state.concert.venue}` : '';
  setTitle(`Choose a date — ${state.concert ? state.concert.title : ''}`);
  try {
    const { data } = await api('GET', `/concerts/${state.concert.concertId}/schedules`, { queueToken: true });
    state.schedules = data.schedules;
    const known = store.get('dates') || {};
    for (const s of data.schedules) known[s.scheduleId] = s.startsAt;
    store.set('dates', known);
    renderDates();
    await restoreHold();
    const open = state.hold ? data.schedules.find((s) => s.scheduleId === state.hold.scheduleId) : null;
    if (open) await openSchedule(open, { focus: false });
    else if (data.schedules.length === 1) await openSchedule(data.schedules[0], { focus: false });
  } catch (e) { bookingError(e); }
}

function renderDates() {
  $('dates-empty').hidden = state.schedules.length > 0;
  const list = $('date-list');
  const ids = state.schedules.map((s) => String(s.scheduleId)).join(',');
  if (list.dataset.ids === ids) { // same dates: only mark the open one (keeps focus and DOM)
    for (const b of list.querySelectorAll('[data-schedule]')) {
      b.setAttribute('aria-pressed', state.schedule && String(state.schedule.scheduleId) === b.dataset.schedule ? 'true' : 'false');
      const s = state.schedules.find((x) => String(x.scheduleId) === b.dataset.schedule);
      b.querySelector('.date-left').textContent = `${s.availableSeats} seats left`;
    }
    return;
  }
  list.dataset.ids = ids;
  $('date-list').replaceChildren(...state.schedules.map((s) => el('li', {},
    el('button', {
      type: 'button', class: 'date', 'data-schedule': s.scheduleId,
      'aria-pressed': state.schedule && state.schedule.scheduleId === s.scheduleId ? 'true' : 'false',
      onclick: () => openSchedule(s),
    }, el('span', { class: 'date-when', text: fmtDate(s.startsAt) }),
    el('span', { class: 'date-left', text: `${s.availableSeats} seats left` })))));
}

// ---------------------------------------------------------------- seat map

function stopSeatRefresh() { clearTimeout(state.seatTimer); state.seatTimer = null; }

function scheduleSeatRefresh(ms = SEAT_REFRESH_MS) {
  stopSeatRefresh();
  state.seatTimer = setTimeout(async () => {
    state.seatTimer = null;
    if (state.view !== 'booking' || !state.schedule) return;
    if (document.hidden) { scheduleSeatRefresh(); return; }
    await loadSeats();
  }, ms);
}

async function openSchedule(s, { focus = true } = {}) {
  if (focus) clearNotice(); // a user's click; an automatic open keeps e.g. "It's your turn!"

  if (!state.schedule || state.schedule.scheduleId !== s.scheduleId) {
    state.schedule = s;
    state.selectedSeat = null;
    $('seat-map').replaceChildren();
    state.seatButtons = [];
  }
  renderDates();
  $('seat-card').hidden = false;
  $('seats-title').textContent = `Seats on ${fmtDate(s.startsAt)}`;
  if (state.hold) {
    $('booking-title').textContent = 'Pay for your seat';
    setTitle(`Seat ${state.hold.seatNo} held — pay now`);
  } else {
    $('booking-title').textContent = 'Choose a seat';
    setTitle(`Choose a seat — ${fmtDate(s.startsAt)}`);
  }
  await loadSeats();
  if (focus) focusSeatMap();
}

async function loadMyReservations() {
  const { data } = await api('GET', '/users/me/reservations');
  return data.reservations;
}

async function loadSeats() {
  const s = state.schedule;
  try {
    const [{ data }, mine] = await Promise.all([
      api('GET', `/schedules/${s.scheduleId}/seats`, { queueToken: true }),
      loadMyReservations(),
    ]);
    if (state.schedule !== s) return;
    state.myRes = new Map();
    const now = Date.now() + state.clockSkew;
    for (const r of mine) {
      if (r.scheduleId !== s.scheduleId) continue;
      if (r.status === 'CONFIRMED' || (r.status === 'HELD' && Date.parse(r.expiresAt) > now)) state.myRes.set(r.seatNo, r);
    }
    renderSeats(data.seats);
    const free = data.seats.filter((x) => x.available).length;
    s.availableSeats = free;
    const btn = document.querySelector(`#date-list [data-schedule="${s.scheduleId}"] .date-left`);
    if (btn) btn.textContent = `${free} seats left`;
    scheduleSeatRefresh();
  } catch (e) {
    bookingError(e);
    if (state.seatTimer === null && e.code !== 'TOKEN_EXPIRED' && e.code !== 'QUEUE_NOT_ACTIVE'
        && e.code !== 'UNAUTHORIZED' && e.code !== 'QUEUE_TOKEN_INVALID' && e.code !== 'TOKEN_NOT_YOURS') {
      scheduleSeatRefresh(SEAT_REFRESH_MS * 2);
    }
  }
}

function seatInfo(no) {
  const seat = state.seats.get(no);
  const r = state.myRes.get(no);
  if (r && r.status === 'CONFIRMED') return { cls: 'owned', word: 'bought by you' };
  if (r) return { cls: 'mine', word: 'held by you' };
  return seat.available ? { cls: 'free', word: 'free' } : { cls: 'taken', word: 'held or sold' };
}

function renderSeats(seats) {
  const map = $('seat-map');
  const n = seats.length;
  map.dataset.size = n > 400 ? 'xl' : n > 100 ? 'l' : 'm';
  const rebuild = state.seatButtons.length !== n;
  state.seats = new Map(seats.map((x) => [x.seatNo, x]));
  if (rebuild) {
    const frag = document.createDocumentFragment();
    state.seatButtons = seats.map((x, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'seat';
      b.dataset.seat = x.seatNo;
      b.textContent = x.seatNo;
      b.tabIndex = i === 0 ? 0 : -1;
      frag.append(b);
      return b;
    });
    map.replaceChildren(frag);
  }
  let free = 0;
  for (const x of seats) {
    const b = state.seatButtons[x.seatNo - 1] || map.querySelector(`[data-seat="${x.seatNo}"]`);
    if (!b) continue;
    const { cls, word } = seatInfo(x.seatNo);
    if (cls === 'free') free += 1;
    const selected = state.selectedSeat === x.seatNo;
    const want = `seat ${cls}${selected ? ' selected' : ''}`;
    if (b.className !== want) b.className = want;
    const label = `Seat ${x.seatNo}, ${word}, ${won(x.price)}`;
    if (b.getAttribute('aria-label') !== label) b.setAttribute('aria-label', label);
    b.dataset.state = cls;
    b.setAttribute('aria-pressed', selected ? 'true' : 'false');
    // Taken seats stay focusable (aria-disabled) so keyboard users can still walk the grid.
    if (cls === 'free' || cls === 'mine') b.removeAttribute('aria-disabled'); else b.setAttribute('aria-disabled', 'true');
  }
  $('seat-summary').textContent = `${free} of ${seats.length} seats free.`;
  // The selected seat was taken meanwhile.
  if (state.selectedSeat && seatInfo(state.selectedSeat).cls !== 'free') {
    const no = state.selectedSeat;
    selectSeat(null);
    if (!state.myRes.has(no)) notify(`Seat ${no} was just taken by someone else. Please pick another seat.`, { kind: 'error' });
  }
  updateSeatChoice();
}

function focusSeatMap() {
  const b = state.seatButtons.find((x) => x.tabIndex === 0) || state.seatButtons[0];
  if (b) b.focus();
}

function selectSeat(no) {
  const prev = state.selectedSeat;
  state.selectedSeat = no;
  for (const k of [prev, no]) {
    const b = k && state.seatButtons[k - 1];
    if (!b) continue;
    b.classList.toggle('selected', k === no);
    b.setAttribute('aria-pressed', k === no ? 'true' : 'false');
  }
  updateSeatChoice();
}

function updateSeatChoice() {
  const text = $('seat-choice-text');
  const btn = $('hold-button');
  const no = state.selectedSeat;
  if (state.hold) {
    text.textContent = `You hold seat ${state.hold.seatNo}. Pay for it or release it before choosing another.`;
    btn.disabled = true;
    btn.textContent = 'Hold this seat';
    return;
  }
  if (!no) { text.textContent = 'Pick a free seat.'; btn.disabled = true; btn.textContent = 'Hold this seat'; return; }
  const seat = state.seats.get(no);
  text.textContent = `Seat ${no} — ${won(seat.price)}`;
  btn.textContent = `Hold seat ${no}`;
  btn.disabled = false;
}

function columns() {
  const cols = getComputedStyle($('seat-map')).gridTemplateColumns.split(' ').filter(Boolean).length;
  return Math.max(1, cols);
}

function bindSeatMap() {
  const map = $('seat-map');
  map.addEventListener('click', (ev) => {
    const b = ev.target.closest('.seat');
    if (!b) return;
    const no = Number(b.dataset.seat);
    for (const x of state.seatButtons) if (x.tabIndex === 0 && x !== b) x.tabIndex = -1;
    b.tabIndex = 0;
    const { cls } = seatInfo(no);
    if (cls === 'mine') { notify(`Seat ${no} is already held by you.`); return; }
    if (cls !== 'free') {
      notify(`Seat ${no} is ${cls === 'owned' ? 'already yours' : 'held or sold'}. Please pick a free seat.`, { kind: 'error' });
      return;
    }
    clearNotice();
    selectSeat(state.selectedSeat === no ? null : no);
  });
  // Roving tabindex: one Tab stop for the whole map, arrow keys inside it.
  map.addEventListener('keydown', (ev) => {
    const b = ev.target.closest('.seat');
    if (!b) return;
    const i = Number(b.dataset.seat) - 1;
    const n = state.seatButtons.length;
    let j = null;
    switch (ev.key) {
      case 'ArrowRight': j = i + 1; break;
      case 'ArrowLeft': j = i - 1; break;
      case 'ArrowDown': j = i + columns(); break;
      case 'ArrowUp': j = i - columns(); break;
      case 'Home': j = 0; break;
      case 'End': j = n - 1; break;
      case 'PageDown': j = i + columns() * 5; break;
      case 'PageUp': j = i - columns() * 5; break;
      default: return;
    }
    ev.preventDefault();
    j = Math.min(n - 1, Math.max(0, j));
    b.tabIndex = -1;
    const t = state.seatButtons[j];
    t.tabIndex = 0;
    t.focus();
  });
  $('hold-button').addEventListener('click', () => withBusy($('hold-button'), holdSeat).then(updateSeatChoice));
}

// ---------------------------------------------------------------- hold

async function holdSeat() {
  const no = state.selectedSeat;
  const s = state.schedule;
  if (!no || !s) return;
  try {
    const { data } = await api('POST', '/reservations', { body: { scheduleId: s.scheduleId, seatNo: no }, queueToken: true });
    selectSeat(null);
    setHold(data);
    notify(`Seat ${no} is held for you. Pay before the timer runs out.`, { kind: 'success' });
    loadSeats();
    $('pay-button').focus();
  } catch (e) {
    if (e.code === 'SEAT_UNAVAILABLE') {
      selectSeat(null);
      showError(e, { text: `Sorry, seat ${no} was just taken by someone else. Please pick another seat.` });
      loadSeats();
    } else if (e.code === 'SEAT_LIMIT') {
      showError(e);
    } else bookingError(e);
  }
}

// After a reload the page finds the user's live hold on this concert again.
async function restoreHold() {
  if (state.hold) return;
  try {
    const now = Date.now() + state.clockSkew;
    const mine = await loadMyReservations();
    const r = mine.find((x) => x.status === 'HELD' && x.concertId === state.concert.concertId && Date.parse(x.expiresAt) > now);
    if (r) setHold(r);
  } catch (e) { showError(e); }
}

function setHold(r) {
  state.hold = { reservationId: r.reservationId, scheduleId: r.scheduleId, seatNo: r.seatNo, price: r.price, expiresAt: r.expiresAt };
  store.set('hold', state.hold);
  const when = store.get('dates') && store.get('dates')[r.scheduleId];
  $('hold-what').textContent = `Seat ${r.seatNo}${when ? `, ${fmtDate(when)}` : ''} — ${won(r.price)}`;
  $('hold-card').hidden = false;
  $('booking-title').textContent = 'Pay for your seat';
  setTitle(`Seat ${r.seatNo} held — pay now`);
  const short = state.balance === null ? 0 : Math.max(0, r.price - state.balance);
  $('hold-charge-amount').value = wonFmt.format(short || r.price);
  refreshBalance();
  startCountdown();
  updateSeatChoice();
  updatePayButton();
}

function clearHold() {
  stopCountdown();
  state.hold = null;
  store.set('hold', null);
  $('hold-card').hidden = true;
  if (state.schedule) $('booking-title').textContent = 'Choose a seat';
  updateSeatChoice();
}

function updatePayButton() {
  const h = state.hold;
  if (!h) return;
  const b = $('pay-button');
  b.textContent = `Pay ${won(h.price)}`;
}

function stopCountdown() { clearInterval(state.countdownTimer); state.countdownTimer = null; }

function startCountdown() {
  stopCountdown();
  let announced = null;
  const tick = () => {
    const h = state.hold;
    if (!h) { stopCountdown(); return; }
    const left = Date.parse(h.expiresAt) - (Date.now() + state.clockSkew);
    const cd = $('hold-countdown');
    cd.textContent = mmss(left);
    cd.classList.toggle('urgent', left <= 60_000);
    // Tell screen-reader users at a few milestones, not every second.
    const mark = left <= 10_000 ? '10 s' : left <= 60_000 ? '1 min' : null;
    if (mark && mark !== announced) { announced = mark; $('hold-live').textContent = `${mark} left to pay for seat ${h.seatNo}.`; }
    if (left <= 0) holdExpired();
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

function holdExpired() {
  const h = state.hold;
  clearHold();
  notify(`Your hold expired; the seat was released (seat ${h ? h.seatNo : ''}). Pick a seat again.`, { kind: 'error' });
  setTitle('Hold expired — choose a seat');
  // The server frees the seat at its expiry instant; give it a moment, then redraw the map.
  if (state.view === 'booking' && state.schedule) { stopSeatRefresh(); setTimeout(loadSeats, 300); }
}

function bindHold() {
  $('pay-button').addEventListener('click', () => withBusy($('pay-button'), pay));
  $('release-button').addEventListener('click', () => withBusy($('release-button'), async () => {
    const h = state.hold;
    if (!h) return;
    try {
      await api('DELETE', `/reservations/${h.reservationId}`);
      clearHold();
      notify(`Seat ${h.seatNo} released.`);
    } catch (e) {
      clearHold();
      showError(e);
    }
    if (state.schedule) loadSeats();
  }));
}

async function pay() {
  const h = state.hold;
  if (!h) return;
  if (!state.payKey || state.payKey.reservationId !== h.reservationId) state.payKey = { reservationId: h.reservationId, key: uuid() };
  try {
    const { data } = await api('POST', '/payments', {
      body: { reservationId: h.reservationId, amount: h.price }, queueToken: true, idem: state.payKey.key,
    });
    state.payKey = null;
    clearHold();
    store.set('queue', null); // paying used up the queue token
    setBalance(data.balance);
    showDone(data, h);
  } catch (e) {
    switch (e.code) {
      case 'INSUFFICIENT_BALANCE': {
        const bal = state.balance ?? 0;
        const short = Math.max(1, h.price - bal);
        $('hold-charge-amount').value = wonFmt.format(short);
        showError(e, { text: `Your balance is ${won(bal)}, ${won(short)} short of the price ${won(h.price)}. Charge at least ${won(short)}, then pay again.` });
        refreshBalance();
        $('hold-charge-amount').focus();
        break;
      }
      case 'HOLD_EXPIRED':
      case 'NOT_HELD':
        clearHold();
        showError(e);
        if (state.schedule) loadSeats();
        break;
      case 'ALREADY_PAID':
        clearHold();
        showError(e, { actions: [['See your purchases', showAccount]] });
        break;
      default:
        bookingError(e);
    }
  }
}

// ---------------------------------------------------------------- done + history

async function showDone(p, h) {
  show('done');
  const when = store.get('dates') && store.get('dates')[h.scheduleId];
  const title = state.concert ? state.concert.title : 'your concert';
  $('done-text').replaceChildren(
    el('p', { class: 'big', text: `Seat ${h.seatNo} is yours.` }),
    el('p', { text: `${title}${when ? `, ${fmtDate(when)}` : ''}.` }),
    el('p', { text: `Paid ${won(p.amount)} on ${fmtDate(p.paidAt)} (payment #${p.paymentId}). Balance now ${won(p.balance)}.` }),
  );
  notify(`Payment complete: seat ${h.seatNo} is yours.`, { kind: 'success' });
  await renderHistory($('done-history'));
}

async function showAccount() {
  show('account');
  refreshBalance();
  await renderHistory($('account-history'));
}

async function renderHistory(container) {
  const list = el('ol', { class: 'history', 'data-testid': 'history' });
  const more = el('button', { type: 'button', hidden: true, text: 'Load more' });
  const empty = el('p', { class: 'muted', text: 'No purchases yet.', hidden: true });
  container.replaceChildren(list, empty, more);
  let before = null;
  let reservations = null;
  const concertTitle = (id) => { const c = state.concerts.find((x) => x.concertId === id); return c ? c.title : null; };
  const page = async () => {
    try {
      const q = before ? `?limit=10&before=${before}` : '?limit=10';
      const [{ data }, res] = await Promise.all([
        api('GET', `/users/me/payments${q}`),
        reservations ? Promise.resolve(reservations) : loadMyReservations(),
      ]);
      reservations = res;
      if (!state.concerts.length) {
        try { state.concerts = (await api('GET', '/concerts', { authed: false })).data.concerts; } catch { /* titles optional */ }
      }
      const dates = store.get('dates') || {};
      for (const p of data.payments) {
        const r = reservations.find((x) => x.reservationId === p.reservationId);
        const what = r ? `${concertTitle(r.concertId) || `Concert ${r.concertId}`} — seat ${r.seatNo}${dates[r.scheduleId] ? `, ${fmtDate(dates[r.scheduleId])}` : ''}`
          : `Reservation #${p.reservationId}`;
        list.append(el('li', { class: 'card payment', 'data-payment': p.paymentId },
          el('p', { class: 'payment-what', text: what }),
          el('p', { class: 'muted', text: `Paid ${won(p.amount)} · ${fmtDate(p.paidAt)} · payment #${p.paymentId} · balance after ${won(p.balance)}` })));
      }
      before = data.nextBefore;
      more.hidden = before === null;
      empty.hidden = list.children.length > 0;
    } catch (e) { showError(e); }
  };
  more.addEventListener('click', () => withBusy(more, page));
  await page();
}

// ---------------------------------------------------------------- start

function bindNav() {
  $('nav-concerts').addEventListener('click', () => { clearNotice(); showConcerts(); });
  $('nav-account').addEventListener('click', () => { clearNotice(); showAccount(); });
  $('brand-link').addEventListener('click', (ev) => { ev.preventDefault(); if (auth()) showConcerts(); else show('auth'); });
  $('notice-close').addEventListener('click', clearNotice);
  $('done-again').addEventListener('click', () => { if (state.concert) joinQueue(state.concert); else showConcerts(); });
  $('done-concerts').addEventListener('click', () => { clearNotice(); showConcerts(); });
  bindCharge('hold-charge-form', 'hold-charge-amount', 'hold-charge-submit');
  bindCharge('account-charge-form', 'account-charge-amount', 'account-charge-submit');
}

async function start() {
  bindAuth(); bindNav(); bindQueue(); bindSeatMap(); bindHold();
  const a = auth();
  if (!a || Date.parse(a.expiresAt) <= Date.now()) { store.set('auth', null); show('auth'); return; }
  $('nav-name').textContent = a.name;
  refreshBalance();
  const q = queue();
  state.concert = store.get('concert');
  if (q && state.concert && state.concert.concertId === q.concertId) {
    // Resume: ask where we stand (WAITING -> waiting room, ACTIVE -> booking).
    try {
      const { data } = await api('GET', '/queue/status', { queueToken: true });
      onQueueStatus(data);
      return;
    } catch (e) {
      store.set('queue', null);
      if (e.code !== 'UNAUTHORIZED') showError(e);
    }
  }
  if (auth()) await showConcerts();
}

start();
