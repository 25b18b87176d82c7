#!/usr/bin/env node
// One client process of bench/cluster.py: holds many WebSocket connections and reports group messages.
//
//   node bench/cluster_client.js --urls URL1,URL2,... --conns N [--local-address 127.0.0.5] [--batch 200]
//
// Opens --conns connections, spread round-robin over the URLs (one per edge), --batch handshakes at a
// time, from --local-address if given (each loopback source address has its own ephemeral ports, so
// several client processes never run out of them). Then it prints one JSON line per event on stdout:
//
//   {"event":"open","opened":N,"failed":F,"error":"..."}      once every handshake has settled
//   {"event":"done","k":K,"count":C,"first_ms":T,"last_ms":T,"duplicates":D}
//        when every open connection has received the message "k:K" (times: Unix epoch, milliseconds)
//
// and reads commands on stdin, one per line:
//
//   report K    print message K's counts now ("event":"report"), complete or not
//   quit        close everything, print {"event":"quit","closed_by_server":N} and exit
//
// A connection that receives the same message twice counts a duplicate; anything that is not "k:<n>"
// counts as malformed (reported with every message). `ws` is found through NODE_PATH.
'use strict';
const WebSocket = require('ws');
const readline = require('readline');

// Wall-clock milliseconds with sub-millisecond resolution, comparable with Python's time.time().
const wallMs = () => performance.timeOrigin + performance.now();

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    opts[argv[i].slice(2)] = argv[i + 1];
  }
  return opts;
}

function open(url, localAddress) {
  return new Promise((resolve, reject) => {
    const options = { perMessageDeflate: false, handshakeTimeout: 60000 };
    if (localAddress) options.localAddress = localAddress;
    const ws = new WebSocket(url, options);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

const emit = obj => process.stdout.write(JSON.stringify(obj) + '\n');

(async () => {
  const o = parseArgs(process.argv.slice(2));
  const urls = (o.urls || '').split(',').filter(Boolean);
  const conns = +(o.conns || 0), batch = +(o.batch || 200);
  if (!urls.length || !conns) {
    console.error('usage: cluster_client.js --urls URL1,URL2 --conns N [--local-address A] [--batch 200]');
    process.exit(2);
  }
  const socks = [];
  let failed = 0, error = null;
  for (let i = 0; i < conns; i += batch) {
    const part = [];
    for (let j = i; j < Math.min(conns, i + batch); j++) part.push(open(urls[j % urls.length], o['local-address']));
    for (const r of await Promise.allSettled(part)) {
      if (r.status === 'fulfilled') socks.push(r.value);
      else { failed++; error = error || String(r.reason && r.reason.message || r.reason); }
    }
  }
  const messages = new Map(); // k -> {count, first, last, duplicates, done}
  let malformed = 0, closed = 0, quitting = false;
  const counts = (event, k, m) => ({ event, k, count: m ? m.count : 0, first_ms: m ? m.first : null,
    last_ms: m ? m.last : null, duplicates: m ? m.duplicates : 0, malformed, closed_by_server: closed });
  for (const ws of socks) {
    const seen = new Set();
    ws.on('message', data => {
      const t = wallMs();
      const match = /^k:(\d+)/.exec(data.toString());
      if (!match) { malformed++; return; }
      const k = +match[1];
      let m = messages.get(k);
      if (!m) messages.set(k, m = { count: 0, first: t, last: t, duplicates: 0, done: false });
      if (seen.has(k)) { m.duplicates++; return; }
      seen.add(k);
      m.count++;
      m.last = t;
      if (m.count === socks.length && !m.done) { m.done = true; emit(counts('done', k, m)); }
    });
    ws.on('close', () => { if (!quitting) closed++; });
    ws.on('error', () => {});
  }
  emit({ event: 'open', opened: socks.length, failed, error });
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', line => {
    const [command, arg] = line.trim().split(/\s+/);
    if (command === 'report') emit(counts('report', +arg, messages.get(+arg)));
    else if (command === 'quit') {
      quitting = true;
      socks.forEach(ws => ws.terminate());
      emit({ event: 'quit', closed_by_server: closed, malformed });
      process.exit(0);
    }
  });
  // The runner going away (its stdin closing) ends this process too.
  lines.on('close', () => process.exit(0));
})().catch(e => { console.error(`cluster_client: ${e.message}`); process.exit(1); });
