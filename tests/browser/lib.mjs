// Helpers for the browser tests: a tiny WebDriver client over Node's fetch, and
// starting/stopping boxoffice and chromedriver. No npm packages.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const WEB_ROOT = path.join(REPO, 'web');
export const BIN = process.env.BOXOFFICE_BIN || path.join(REPO, 'build/boxoffice');
export const OUT = path.resolve(process.env.BOXOFFICE_TEST_OUTPUT || 'test-output');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const CHROMEDRIVER = process.env.CHROMEDRIVER_BIN || '/usr/bin/chromedriver';
export const ADMIN_KEY = 'browser-test-admin-key';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every child and temp dir is registered here, so a crash still cleans up.
const children = new Set();
const tempDirs = new Set();
export function tempDir(prefix) {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}
export function removeTemp(d) { try { rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ } tempDirs.delete(d); }
function killGroup(child, sig) { try { process.kill(-child.pid, sig); } catch { try { child.kill(sig); } catch { /* gone */ } } }
process.on('exit', () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const d of tempDirs) { try { rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ } }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function startChild(cmd, args, logFile, env = process.env) {
  const fd = openSync(logFile, 'a');
  // Own process group, so stopping it also stops what it started (chromium under chromedriver).
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, env });
  closeSync(fd);
  children.add(child);
  child.exited = new Promise((r) => child.on('exit', (code, sig) => { children.delete(child); r({ code, sig }); }));
  return child;
}

async function stopChild(child, graceMs = 3000) {
  if (!children.has(child)) return;
  killGroup(child, 'SIGTERM');
  const t = await Promise.race([child.exited, sleep(graceMs).then(() => 'timeout')]);
  if (t === 'timeout') { killGroup(child, 'SIGKILL'); await child.exited; }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function waitFor(fn, { timeout = 10000, interval = 100, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await sleep(interval);
  }
}

// ------------------------------------------------------------------ boxoffice

export class Server {
  constructor(name, flags = []) { this.name = name; this.flags = flags; }

  async start() {
    if (!existsSync(BIN)) throw new Error(`boxoffice binary not found at ${BIN} (set BOXOFFICE_BIN)`);
    this.dir = tempDir('bx-browser-');
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    this.log = path.join(this.dir, 'server.log');
    this.proc = startChild(BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--db', `sqlite:${this.dir}/bx.db`,
      '--admin-key', ADMIN_KEY, '--web-root', WEB_ROOT, '--threads', '2',
      '--pwhash-ops', '1', '--pwhash-mem-kib', '8', ...this.flags], this.log);
    await waitFor(async () => (await fetch(`${this.base}/healthz`)).ok, { timeout: 10000, what: 'boxoffice /healthz' });
    return this;
  }

  async stop() {
    if (this.proc) await stopChild(this.proc);
    if (this.dir) {
      if (this.keepLog) { try { writeFileSync(path.join(OUT, `browser-${this.name}-server.log`), readFileSync(this.log)); } catch { /* ignore */ } }
      removeTemp(this.dir);
    }
  }

  async api(method, p, body, headers = {}) {
    const res = await fetch(`${this.base}/api/v1${p}`, {
      method, headers: { 'Content-Type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${p} -> ${res.status} ${text}`);
    return data;
  }

  // A concert with one date on sale now.
  async concert({ title = 'Browser Test Live', venue = 'Test Hall', seats = 50, price = 50000 } = {}) {
    const admin = { 'X-Admin-Key': ADMIN_KEY };
    const { concertId } = await this.api('POST', '/admin/concerts', { title, venue }, admin);
    const startsAt = new Date(Date.now() + 30 * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
    const { scheduleId } = await this.api('POST', `/admin/concerts/${concertId}/schedules`, { startsAt, seats, price }, admin);
    return { concertId, scheduleId, title, price, seats };
  }

  // A user made through the API, optionally with money on the balance.
  async user(name, password, charge = 0) {
    await this.api('POST', '/users', { name, password });
    if (charge > 0) {
      const { accessToken } = await this.api('POST', '/sessions', { name, password });
      await this.api('POST', '/users/me/balance/charge', { amount: charge }, { Authorization: `Bearer ${accessToken}` });
    }
    return { name, password };
  }
}

// ------------------------------------------------------------------ WebDriver

export const Key = { ENTER: '\uE007', TAB: '\uE004', RIGHT: '\uE014', DOWN: '\uE015', LEFT: '\uE012', UP: '\uE013', SHIFT: '\uE008' };
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

export class Driver {
  static async start(name) {
    const d = new Driver();
    d.name = name;
    d.port = await freePort();
    d.dir = tempDir('bx-chromedriver-');
    d.proc = startChild(CHROMEDRIVER, [`--port=${d.port}`, '--allowed-ips=127.0.0.1'], path.join(d.dir, 'chromedriver.log'));
    d.base = `http://127.0.0.1:${d.port}`;
    await waitFor(async () => {
      const r = await fetch(`${d.base}/status`);
      return r.ok && (await r.json()).value.ready;
    }, { timeout: 10000, what: 'chromedriver /status' });
    return d;
  }

  async stop() {
    for (const b of this.browsers || []) await b.quit();
    if (this.proc) await stopChild(this.proc);
    removeTemp(this.dir);
  }

  // mobile: the page is laid out at exactly width x height CSS px with a phone viewport
  // (headless Chromium does not make windows narrower than 500 px).
  async browser({ width = 1280, height = 900, mobile = false } = {}) {
    const profile = tempDir('bx-chromium-');
    const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-features=Translate,MediaRouter', '--password-store=basic', '--lang=en-US',
      `--user-data-dir=${profile}`, `--window-size=${width},${height}`];
    const res = await wd(`${this.base}/session`, 'POST', {
      capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': { binary: CHROMIUM, args } } },
    });
    const b = new Browser(`${this.base}/session/${res.sessionId}`, profile);
    (this.browsers ||= []).push(b);
    if (mobile) await b.emulate(width, height);
    else await b.setSize(width, height);
    return b;
  }
}

async function wd(url, method = 'GET', body) {
  const res = await fetch(url, {
    method, headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const v = data.value || {};
    const err = new Error(`WebDriver ${method} ${url.replace(/^.*\/session\/[^/]+/, '')}: ${v.error || res.status}: ${(v.message || '').split('\n')[0]}`);
    err.wdError = v.error;
    throw err;
  }
  return data.value;
}

export class Browser {
  constructor(url, profile) { this.url = url; this.profile = profile; }
  cmd(method, p, body) { return wd(this.url + p, method, body); }

  async quit() {
    if (this.closed) return;
    this.closed = true;
    try { await this.cmd('DELETE', ''); } catch { /* already gone */ }
    removeTemp(this.profile);
  }

  get(url) { return this.cmd('POST', '/url', { url }); }
  title() { return this.cmd('GET', '/title'); }
  setSize(width, height) { return this.cmd('POST', '/window/rect', { width, height }); }
  exec(script, ...args) { return this.cmd('POST', '/execute/sync', { script, args }); }

  async find(css) {
    const v = await this.cmd('POST', '/element', { using: 'css selector', value: css });
    return new Elem(this, v[ELEMENT], css);
  }
  async findAll(css) {
    const v = await this.cmd('POST', '/elements', { using: 'css selector', value: css });
    return v.map((x) => new Elem(this, x[ELEMENT], css));
  }
  // Waits until the element exists and is displayed.
  async waitVisible(css, timeout = 10000) {
    return waitFor(async () => {
      const e = await this.find(css);
      return (await e.displayed()) ? e : null;
    }, { timeout, what: `visible ${css}` });
  }
  async text(css) { return (await this.find(css)).text(); }
  async waitText(css, re, timeout = 10000) {
    return waitFor(async () => {
      const t = await (await this.find(css)).text();
      return re.test(t) ? t : null;
    }, { timeout, what: `${css} text ${re}` });
  }
  // Finds and clicks; if the page re-rendered the element in between, finds it again.
  async click(css) {
    for (let i = 0; ; i++) {
      const e = await this.waitVisible(css);
      try { await e.click(); return e; } catch (err) {
        if (err.wdError !== 'stale element reference' || i >= 5) throw err;
      }
    }
  }
  async type(css, text) { const e = await this.waitVisible(css); await e.clear(); await e.keys(text); return e; }
  async activeKeys(text) {
    const v = await this.cmd('GET', '/element/active');
    return new Elem(this, v[ELEMENT], ':focus').keys(text);
  }
  async activeId() { return this.exec('return document.activeElement && (document.activeElement.id || document.activeElement.dataset.seat || document.activeElement.textContent);'); }

  async screenshot(file) {
    const b64 = await this.cmd('GET', '/screenshot');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Buffer.from(b64, 'base64'));
    return file;
  }
  cdp(cmd, params = {}) { return this.cmd('POST', '/goog/cdp/execute', { cmd, params }); }
  async emulate(width, height) {
    this.mobile = { width, height };
    await this.cdp('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: true });
    await this.cdp('Emulation.setTouchEmulationEnabled', { enabled: true });
  }
  // The whole page, also what is below the fold, from the top, without resizing the window.
  async fullScreenshot(file) {
    const { data } = await this.cdp('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Buffer.from(data, 'base64'));
    return file;
  }
  // The browser's console and page errors are kept by the page helper below.
  async pageErrors() { return this.exec('return window.__bxErrors || []'); }
}

export class Elem {
  constructor(b, id, css) { this.b = b; this.id = id; this.css = css; }
  cmd(method, p, body) { return this.b.cmd(method, `/element/${this.id}${p}`, body); }
  click() { return this.cmd('POST', '/click', {}); }
  clear() { return this.cmd('POST', '/clear', {}); }
  keys(text) { return this.cmd('POST', '/value', { text }); }
  text() { return this.cmd('GET', '/text'); }
  attr(name) { return this.cmd('GET', `/attribute/${name}`); }
  prop(name) { return this.cmd('GET', `/property/${name}`); }
  displayed() { return this.cmd('GET', '/displayed'); }
  enabled() { return this.cmd('GET', '/enabled'); }
}
