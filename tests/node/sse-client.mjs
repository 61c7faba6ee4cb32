#!/usr/bin/env node
// A conforming SSE client for the mod_sse integration tests, built on the npm
// `eventsource` package (3.x), i.e. the same parsing rules as a browser.
//
//   node sse-client.mjs --url URL [--count N] [--timeout MS]
//                       [--types a,b,...] [--last-event-id ID]
//
// Prints one JSON object per line on stdout, flushed as it happens:
//   {"kind":"open","n":1}                                 each time the stream opens
//   {"kind":"event","type":..,"data":..,"lastEventId":..}  each event received
//   {"kind":"error","message":..,"code":..}               errors / stream ends
//   {"kind":"done","count":N}                             N events received (exit 0)
//   {"kind":"timeout","count":k}                          timeout first (exit 2)
// Events of type "message" and of every type listed with --types (plus
// "sse-gap") are collected. --last-event-id is sent as a Last-Event-ID header
// on the first connection only; later reconnections send the client's own
// last id, exactly as a browser does.
import { EventSource } from 'eventsource';

function parseArgs(argv) {
  const opts = { count: 1, timeout: 10000, types: [], lastEventId: null, url: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--url': opts.url = next(); break;
      case '--count': opts.count = parseInt(next(), 10); break;
      case '--timeout': opts.timeout = parseInt(next(), 10); break;
      case '--types': opts.types = next().split(',').filter((t) => t.length > 0); break;
      case '--last-event-id': opts.lastEventId = next(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!opts.url) throw new Error('--url is required');
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const opts = parseArgs(process.argv.slice(2));
let received = 0;
let opens = 0;
let finished = false;

const init = {};
if (opts.lastEventId !== null) {
  let first = true;
  init.fetch = (input, reqInit) => {
    const headers = { ...(reqInit && reqInit.headers ? reqInit.headers : {}) };
    if (first && !('Last-Event-ID' in headers)) headers['Last-Event-ID'] = opts.lastEventId;
    first = false;
    return fetch(input, { ...reqInit, headers });
  };
}

const es = new EventSource(opts.url, init);

function finish(kind, code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  es.close();
  emit({ kind, count: received });
  // Let stdout drain before exiting.
  process.stdout.write('', () => process.exit(code));
}

const timer = setTimeout(() => finish('timeout', 2), opts.timeout);

es.addEventListener('open', () => {
  opens += 1;
  emit({ kind: 'open', n: opens });
});

es.addEventListener('error', (ev) => {
  emit({ kind: 'error', message: ev && ev.message ? String(ev.message) : '', code: ev && ev.code !== undefined ? ev.code : null, readyState: es.readyState });
  if (es.readyState === es.CLOSED) finish('closed', 3);
});

function onEvent(ev) {
  if (finished) return;
  received += 1;
  emit({ kind: 'event', type: ev.type, data: ev.data, lastEventId: ev.lastEventId });
  if (received >= opts.count) finish('done', 0);
}

const types = new Set(['message', 'sse-gap', ...opts.types]);
for (const t of types) es.addEventListener(t, onEvent);
