// Browser tests: real headless Chromium over WebDriver against a real boxoffice server.
// Each test starts its own server (fresh temp database) and browser(s), and saves a
// screenshot of its last page as $BOXOFFICE_TEST_OUTPUT/browser-<test>.png.
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdirSync, existsSync, rmSync } from 'node:fs';
import { Server, Driver, Key, OUT, sleep, waitFor } from './lib.mjs';

const TEST_TIMEOUT_MS = 45000;

// Opens the page and checks the module ran (the log-in view is shown).
async function open(b, server) {
  await b.get(`${server.base}/`);
  await b.exec(`window.__bxErrors = []; addEventListener('error', (e) => __bxErrors.push(String(e.message)));
                addEventListener('unhandledrejection', (e) => __bxErrors.push(String(e.reason)));
                addEventListener('securitypolicyviolation',
                  (e) => __bxErrors.push('CSP blocked ' + e.blockedURI + ' (' + e.violatedDirective + ')'));`);
  await b.waitVisible('#view-auth');
  assert.match(await b.title(), /Log in — boxoffice/);
}

async function login(b, user) {
  await b.type('#login-name', user.name);
  await b.type('#login-password', user.password);
  await b.click('#login-submit');
  await b.waitVisible('#view-concerts');
}

async function joinConcert(b, concert) {
  await b.click(`[data-concert="${concert.concertId}"]`);
}

async function pickSeat(b, concert, seatNo) {
  await b.waitVisible('#view-booking');
  await b.click(`[data-schedule="${concert.scheduleId}"]`);
  await b.waitVisible(`.seat[data-seat="${seatNo}"][data-state="free"]`);
  await b.click(`.seat[data-seat="${seatNo}"]`);
  await b.waitText('#hold-button', new RegExp(`Hold seat ${seatNo}`));
  await b.click('#hold-button');
  await b.waitVisible('#hold-card');
  await b.waitText('#hold-what', new RegExp(`Seat ${seatNo}`));
}

async function noPageErrors(b) {
  const errs = await b.pageErrors();
  assert.deepEqual(errs, [], `page errors: ${errs.join('; ')}`);
}

// ---------------------------------------------------------------- tests

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('full-purchase', async (ctx) => {
  const server = await ctx.server([]);
  const concert = await server.concert({ title: 'Spring Gala', seats: 50, price: 50000 });
  const b = await ctx.browser();
  await open(b, server);

  // Sign up through the page; the form is submitted with Enter (keyboard).
  await b.type('#signup-name', 'mina');
  await b.type('#signup-password', 'correct horse');
  await (await b.find('#signup-password')).keys(Key.ENTER);
  await b.waitVisible('#view-concerts');
  assert.match(await b.text('#notice-text'), /Welcome, mina/);
  assert.match(await b.title(), /^Concerts — boxoffice$/);
  assert.equal(await b.text('#nav-balance'), '0 won');

  // Log out and in again (the login form), then the concert and the queue: ACTIVE at once.
  await b.click('#nav-logout');
  await b.waitVisible('#view-auth');
  await login(b, { name: 'mina', password: 'correct horse' });
  await b.waitText('#concert-list', /Spring Gala/);
  await joinConcert(b, concert);
  await b.waitVisible('#view-booking');
  assert.match(await b.title(), /Choose a (date|seat)/);

  // Seat just taken: seat 8 is chosen, someone else holds it first, then "Hold" is pressed.
  await b.click(`[data-schedule="${concert.scheduleId}"]`);
  await b.click('.seat[data-seat="8"][data-state="free"]');
  await b.waitText('#hold-button', /Hold seat 8/);
  const rival = await server.user('rival', 'rival-password');
  const { accessToken } = await server.api('POST', '/sessions', rival);
  const rivalAuth = { Authorization: `Bearer ${accessToken}` };
  const { token } = await server.api('POST', `/concerts/${concert.concertId}/queue/tokens`, undefined, rivalAuth);
  await server.api('POST', '/reservations', { scheduleId: concert.scheduleId, seatNo: 8 }, { ...rivalAuth, 'X-Queue-Token': token });
  try { await (await b.find('#hold-button')).click(); } catch { /* the map refresh may have got there first */ }
  await b.waitText('#notice-text', /Seat 8 was just taken by someone else/i);
  await b.waitVisible('.seat[data-seat="8"][data-state="taken"]');

  // Date, seat, hold: the countdown runs.
  await pickSeat(b, concert, 7);
  const c1 = await b.text('#hold-countdown');
  assert.match(c1, /^0[45]:\d\d$/, `countdown ${c1}`);
  assert.equal(await (await b.find('#hold-countdown')).displayed(), true);
  await waitFor(async () => (await b.text('#hold-countdown')) !== c1, { timeout: 3000, what: 'countdown ticking' });
  assert.match(await b.title(), /Seat 7 held/);
  await b.waitVisible('.seat[data-seat="7"][data-state="mine"]');
  const label = await (await b.find('.seat[data-seat="7"]')).attr('aria-label');
  assert.equal(label, 'Seat 7, held by you, 50,000 won');
  await ctx.shot(b, 'full-purchase-hold');

  // Paying with an empty balance: the clear "balance short" message.
  await b.click('#pay-button');
  await b.waitText('#notice-text', /50,000 won short/);
  assert.equal(await (await b.find('#notice')).attr('role'), 'alert');

  // Charge (the field was prefilled with the shortfall), then pay.
  assert.equal(await (await b.find('#hold-charge-amount')).prop('value'), '50,000');
  await b.click('#hold-charge-submit');
  await b.waitText('#hold-balance', /^50,000 won$/);
  await b.waitText('#nav-balance', /^50,000 won$/);
  await b.click('#pay-button');

  // Confirmation and history.
  await b.waitVisible('#view-done');
  assert.match(await b.title(), /Payment complete/);
  assert.match(await b.text('#done-text'), /Seat 7 is yours/);
  assert.match(await b.text('#done-text'), /Paid 50,000 won/);
  await b.waitVisible('#done-history .payment');
  const items = await b.findAll('#done-history .payment');
  assert.equal(items.length, 1);
  assert.match(await items[0].text(), /Spring Gala — seat 7/);
  assert.match(await items[0].text(), /Paid 50,000 won/);
  assert.equal(await b.text('#nav-balance'), '0 won');

  // The account page shows the same history.
  await b.click('#nav-account');
  await b.waitVisible('#account-history .payment');
  assert.match(await b.text('#account-history'), /seat 7/);
  await noPageErrors(b);
  await b.click('#nav-concerts');
  await b.click('#nav-account');
  await b.waitVisible('#account-history .payment');
  await ctx.shot(b);
});

// The page works under the Content-Security-Policy it is served with: its script ran
// (open() waits for the log-in view), its stylesheet applied, nothing was blocked.
test('page-under-csp', async (ctx) => {
  const server = await ctx.server([]);
  const b = await ctx.browser();
  await open(b, server);
  const csp = await b.exec(`return fetch('/').then((r) => r.headers.get('content-security-policy'))`);
  assert.match(csp || '', /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  const rules = await b.exec(`return [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0)`);
  assert.ok(rules > 10, `stylesheet not applied (${rules} rules)`);
  const font = await b.exec(`return getComputedStyle(document.body).fontFamily`);
  assert.ok(!/^"?Times/.test(font), `body font is the browser default: ${font}`);
  await login(b, await server.user('csp', 'csp-password'));
  await noPageErrors(b);
});

test('two-browsers', async (ctx) => {
  // --waiting-idle 6 makes the WAITING pollAfterMs 2 s (waiting_idle/3), so the test is quick.
  const server = await ctx.server(['--active-max', '1', '--waiting-idle', '6']);
  const concert = await server.concert({ title: 'Sold Out Show', seats: 50, price: 30000 });
  const ua = await server.user('first', 'first-password', 100000);
  const ub = await server.user('second', 'second-password', 100000);
  const a = await ctx.browser();
  const b = await ctx.browser();
  await open(a, server);
  await open(b, server);
  await login(a, ua);
  await login(b, ub);

  await joinConcert(a, concert);
  await a.waitVisible('#view-booking');

  await joinConcert(b, concert);
  await b.waitVisible('#view-queue');
  assert.equal(await b.text('#queue-position'), '1');
  assert.equal(await b.text('#queue-ahead'), '0');
  assert.match(await b.text('#queue-state'), /waiting in line/);
  assert.match(await b.title(), /^Waiting room — position 1 — boxoffice$/);
  assert.notEqual(await b.text('#queue-eta'), '–');
  await ctx.shot(b, 'two-browsers-waiting');

  // The first buys a seat; paying expires its queue token and frees the slot.
  await pickSeat(a, concert, 3);
  await a.click('#pay-button');
  await a.waitVisible('#view-done');

  // The second is admitted by its own polling.
  const t0 = Date.now();
  await b.waitVisible('#view-booking', 15000);
  const waited = Date.now() - t0;
  await b.waitText('#notice-text', /your turn/);
  await b.click(`[data-schedule="${concert.scheduleId}"]`);
  await b.waitVisible('.seat[data-seat="3"][data-state="taken"]');
  assert.equal(await (await b.find('.seat[data-seat="3"]')).attr('aria-label'), 'Seat 3, held or sold, 30,000 won');
  ctx.note(`second browser admitted ${waited} ms after the first paid`);
  await noPageErrors(a);
  await noPageErrors(b);
  await ctx.shot(a, 'two-browsers-first');
  await ctx.shot(b);
});

test('hold-expires', async (ctx) => {
  const server = await ctx.server(['--hold-ttl', '3']);
  const concert = await server.concert({ title: 'Short Hold', seats: 50, price: 50000 });
  const u = await server.user('sam', 'sam-password', 0);
  const b = await ctx.browser();
  await open(b, server);
  await login(b, u);
  await joinConcert(b, concert);
  await pickSeat(b, concert, 12);
  assert.match(await b.text('#hold-countdown'), /^00:0[0-3]$/);
  await b.waitVisible('.seat[data-seat="12"][data-state="mine"]');

  await b.waitText('#notice-text', /Your hold expired; the seat was released/, 8000);
  assert.equal(await (await b.find('#hold-card')).displayed(), false);
  await b.waitVisible('.seat[data-seat="12"][data-state="free"]', 8000);
  assert.equal(await (await b.find('.seat[data-seat="12"]')).attr('aria-label'), 'Seat 12, free, 50,000 won');
  assert.match(await b.text('#seat-summary'), /^50 of 50 seats free/);
  await noPageErrors(b);
  await ctx.shot(b);
});

test('phone-keyboard-1000-seats', async (ctx) => {
  // Phone width, keyboard only, a 1,000-seat date.
  const server = await ctx.server([]);
  const concert = await server.concert({ title: 'Stadium Night', seats: 1000, price: 12000 });
  const u = await server.user('kim', 'kim-password', 50000);
  const b = await ctx.browser({ width: 375, height: 800, mobile: true });
  await open(b, server);
  const focus = (css) => b.exec(`document.querySelector(${JSON.stringify(css)}).focus()`);

  // Log in with keys only: type, Tab, type, Enter.
  await focus('#login-name');
  await b.activeKeys(u.name);
  await b.activeKeys(Key.TAB);
  assert.equal(await b.activeId(), 'login-password');
  await b.activeKeys(u.password + Key.ENTER);
  await b.waitVisible('#view-concerts');
  await focus(`[data-concert="${concert.concertId}"]`);
  await b.activeKeys(Key.ENTER);
  await b.waitVisible('#view-booking');
  // Only one date: the page opens its seat map straight away.
  await b.waitVisible('.seat[data-seat="1000"]');
  const t0 = Date.now();
  assert.equal((await b.findAll('.seat')).length, 1000);
  assert.equal(await b.exec('return window.innerWidth'), 375);
  const noHScroll = await b.exec('return document.documentElement.scrollWidth <= window.innerWidth');
  assert.equal(noHScroll, true, 'page scrolls sideways at 375 px');

  // One Tab stop for the map; arrows move inside it.
  await focus('.seat[tabindex="0"]');
  assert.equal(await b.activeId(), '1');
  await b.activeKeys(Key.RIGHT + Key.RIGHT + Key.DOWN);
  const cols = await b.exec("return getComputedStyle(document.getElementById('seat-map')).gridTemplateColumns.split(' ').length");
  const target = 3 + cols;
  assert.equal(await b.activeId(), String(target));
  await b.activeKeys(Key.ENTER);
  await b.waitText('#hold-button', new RegExp(`Hold seat ${target}`));
  await b.activeKeys(Key.TAB);
  assert.equal(await b.activeId(), 'hold-button');
  await b.activeKeys(Key.ENTER);
  await b.waitVisible('#hold-card');
  assert.equal(await b.activeId(), 'pay-button');
  await ctx.shot(b, 'phone-keyboard-1000-seats-hold');
  await b.activeKeys(Key.ENTER);
  await b.waitVisible('#view-done');
  assert.match(await b.text('#done-text'), new RegExp(`Seat ${target} is yours`));
  const focusOutline = await b.exec(`const x = document.getElementById('done-again'); x.focus();
    return getComputedStyle(x).outlineStyle + ' ' + getComputedStyle(x).outlineWidth;`);
  assert.match(focusOutline, /solid 3px/);
  ctx.note(`1,000-seat map used with keys, ${cols} columns at 375 px (${Date.now() - t0} ms)`);
  await noPageErrors(b);
  await ctx.shot(b);
});

// ---------------------------------------------------------------- runner

async function runOne(t) {
  rmSync(path.join(OUT, `browser-${t.name}.png`), { force: true }); // no stale picture from an earlier run
  const cleanups = [];
  let lastBrowser = null;
  let driver = null;
  let failed = false;
  const notes = [];
  const ctx = {
    async server(flags) {
      const s = new Server(t.name, flags);
      cleanups.push(() => s.stop());
      ctx.servers = [...(ctx.servers || []), s];
      return s.start();
    },
    async browser(opts) {
      if (!driver) {
        driver = await Driver.start(t.name);
        cleanups.push(() => driver.stop());
      }
      lastBrowser = await driver.browser(opts);
      return lastBrowser;
    },
    async shot(b, name = t.name) {
      const file = path.join(OUT, `browser-${name}.png`);
      await b.fullScreenshot(file);
      if (name === t.name) ctx.shotTaken = true;
      return file;
    },
    note(s) { notes.push(s); },
  };
  const t0 = Date.now();
  let err = null;
  try {
    await Promise.race([
      t.fn(ctx),
      sleep(TEST_TIMEOUT_MS).then(() => { throw new Error(`test timed out after ${TEST_TIMEOUT_MS} ms`); }),
    ]);
  } catch (e) {
    failed = true; err = e;
    for (const s of ctx.servers || []) s.keepLog = true;
  }
  // A failed test still leaves a picture of where it stopped.
  if (lastBrowser && !ctx.shotTaken) {
    try { await ctx.shot(lastBrowser); } catch { /* browser gone */ }
  }
  for (const c of cleanups.reverse()) { try { await c(); } catch (e) { console.error(`  cleanup: ${e.message}`); } }
  const ms = Date.now() - t0;
  if (failed) {
    console.log(`FAIL ${t.name} (${ms} ms): ${err && err.stack ? err.stack.split('\n').slice(0, 4).join('\n     ') : err}`);
  } else {
    console.log(`ok   ${t.name} (${ms} ms)${notes.length ? ` — ${notes.join('; ')}` : ''}`);
  }
  const png = path.join(OUT, `browser-${t.name}.png`);
  if (existsSync(png)) console.log(`     screenshot: ${png}`);
  return !failed;
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const only = process.argv.slice(2);
  let passed = 0; let failed = 0;
  for (const t of tests) {
    if (only.length && !only.includes(t.name)) continue;
    if (await runOne(t)) passed += 1; else failed += 1;
  }
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); console.log('browser: 0 passed, 1 failed'); process.exit(1); });
