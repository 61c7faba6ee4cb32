#!/usr/bin/env node
// A text/event-stream body read by a reference parser: the npm
// `eventsource-parser` package (3.x), which the `eventsource` client is built on.
//
//   node parse-stream.mjs [--seed N] < body
//
// Reads the raw bytes of a stream body on stdin, decodes them as UTF-8 (an
// invalid byte is an error, as a stream must be UTF-8), and feeds them to the
// parser in pieces of 1 to 4096 bytes chosen by a generator seeded with N
// (default 1), so that lines and UTF-8 sequences are cut anywhere. Prints one
// JSON array of what the parser reported, in order:
//   {"kind":"event","id":..|null,"event":..|null,"data":..}
//   {"kind":"retry","value":N}
//   {"kind":"comment","value":..}
//   {"kind":"error","type":..,"message":..}
import { createParser } from 'eventsource-parser';

let seed = 1;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--seed' && i + 1 < argv.length) seed = parseInt(argv[++i], 10) >>> 0 || 1;
  else throw new Error(`unknown argument: ${argv[i]}`);
}
// xorshift32: the same pieces for the same seed.
function rand() {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed;
}

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const body = Buffer.concat(chunks);

const out = [];
const parser = createParser({
  onEvent: (e) => out.push({ kind: 'event', id: e.id ?? null, event: e.event ?? null, data: e.data }),
  onRetry: (ms) => out.push({ kind: 'retry', value: ms }),
  onComment: (c) => out.push({ kind: 'comment', value: c }),
  onError: (err) => out.push({ kind: 'error', type: err.type ?? null, message: String(err.message) }),
});
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
for (let i = 0; i < body.length; ) {
  const n = 1 + (rand() % 4096);
  parser.feed(decoder.decode(body.subarray(i, i + n), { stream: true }));
  i += n;
}
parser.feed(decoder.decode());
process.stdout.write(JSON.stringify(out) + '\n');
