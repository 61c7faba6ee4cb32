#!/usr/bin/env node
// Headless Chromium for the mod_sse browser tests, driven line by line from
// pytest (tests/browser.py) through the npm playwright-core package and
// Debian's /usr/bin/chromium (never `npx playwright install`).
//
//   node browser.mjs --profile DIR [--timeout MS] [--ignore-cert-errors]
//
// stdin:  one JSON command per line: {"id": 1, "op": "goto", ...}
// stdout: one JSON reply per line:   {"id": 1, "ok": true, "value": ...}
//                                or  {"id": 1, "ok": false, "error": "..."}
// The first line is {"ready": true, "version": "<chromium version>"}.
// Page console messages and errors go to stderr, prefixed with the page.
//
// Commands (page: index returned by "newpage"; 0 is opened at start):
//   goto {url, page}            navigate, wait for "load"
//   eval {expr, page}           evaluate an expression (awaited if a promise)
//   wait {expr, timeout, page}  wait until expr is truthy; returns its value
//   click {selector, page}      fill {selector, value, page}
//   screenshot {path, page}     full-page PNG
//   newpage {}                  another tab in the same profile
//   close {}                    close the browser and exit 0
//
// Hard limits: the whole process exits (status 3) after --timeout ms, and
// when stdin closes (the test went away) it closes the browser and exits.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const opts = { profile: null, timeout: 120000, ignoreCertErrors: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  switch (argv[i]) {
    case '--profile': opts.profile = argv[++i]; break;
    case '--timeout': opts.timeout = parseInt(argv[++i], 10); break;
    case '--ignore-cert-errors': opts.ignoreCertErrors = true; break;
    default:
      process.stderr.write(`browser.mjs: unknown argument ${argv[i]}\n`);
      process.exit(2);
  }
}
if (!opts.profile) {
  process.stderr.write('browser.mjs: --profile DIR is required\n');
  process.exit(2);
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let context = null;
let exiting = false;

async function shutdown(code) {
  if (exiting) return;
  exiting = true;
  const force = setTimeout(() => process.exit(code), 10000);
  force.unref();
  try {
    if (context) await context.close();
  } catch (e) { /* already gone */ }
  process.exit(code);
}

const hard = setTimeout(() => {
  process.stderr.write(`browser.mjs: hard timeout of ${opts.timeout} ms reached\n`);
  reply({ fatal: 'timeout' });
  shutdown(3);
}, opts.timeout);
hard.unref();

const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];
if (opts.ignoreCertErrors) args.push('--ignore-certificate-errors');

try {
  // launchPersistentContext: the profile (--user-data-dir) is the test's own.
  context = await chromium.launchPersistentContext(opts.profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args,
    ignoreHTTPSErrors: opts.ignoreCertErrors,
    viewport: { width: 1100, height: 900 },
    timeout: 30000,
  });
} catch (e) {
  reply({ fatal: `launch failed: ${e.message}` });
  process.exit(4);
}

const pages = [];
function track(page) {
  const n = pages.length;
  pages.push(page);
  page.on('console', (m) => process.stderr.write(`[page ${n} console.${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[page ${n} error] ${e.message}\n`));
  return n;
}
track(context.pages()[0] || await context.newPage());

const browser = context.browser();
reply({ ready: true, version: browser ? browser.version() : null });

async function run(cmd) {
  const page = pages[cmd.page || 0];
  if (!page) throw new Error(`no page ${cmd.page}`);
  switch (cmd.op) {
    case 'goto': {
      const res = await page.goto(cmd.url, { waitUntil: 'load', timeout: cmd.timeout || 15000 });
      return res ? res.status() : null;
    }
    case 'eval':
      return await page.evaluate(cmd.expr);
    case 'wait': {
      const h = await page.waitForFunction(cmd.expr, null,
        { timeout: cmd.timeout || 10000, polling: 20 });
      return await h.jsonValue();
    }
    case 'click':
      await page.click(cmd.selector, { timeout: cmd.timeout || 5000 });
      return null;
    case 'fill':
      await page.fill(cmd.selector, cmd.value, { timeout: cmd.timeout || 5000 });
      return null;
    case 'screenshot':
      await page.screenshot({ path: cmd.path, fullPage: true, timeout: cmd.timeout || 15000 });
      return cmd.path;
    case 'newpage':
      return track(await context.newPage());
    case 'close':
      reply({ id: cmd.id, ok: true, value: null });
      await shutdown(0);
      return null;
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

// Commands run one at a time, in order.
const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      reply({ id: null, ok: false, error: `bad command: ${e.message}` });
      return;
    }
    try {
      const value = await run(cmd);
      reply({ id: cmd.id, ok: true, value: value === undefined ? null : value });
    } catch (e) {
      reply({ id: cmd.id, ok: false, error: String(e && e.message || e) });
    }
  });
});
rl.on('close', () => { chain.then(() => shutdown(0)); });
