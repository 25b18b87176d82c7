#!/usr/bin/env node
// The benchmark's load client: closed-loop WebSocket load on the `ws` package.
//
//   node bench/loadgen.js echo      --url URL [--conns 50] [--size 64] [--seconds 10] [--warmup 1] [--count N]
//   node bench/loadgen.js broadcast --url URL [--receivers 1000] [--messages 100] [--window 4] [--size 64] [--timeout 60]
//   node bench/loadgen.js hold      --url URL [--conns 10000] [--seconds 8] [--batch 200]
//   node bench/loadgen.js chat      --url URL_WITH_{room} [--rooms 20] [--members 25] [--window 1] [--seconds 10] [--warmup 1]
//
// echo       every connection sends a text frame and waits for the same frame back, one in flight;
//            round trips/s and latency; a reply that is not the frame sent counts as a mismatch.
//            With --count N, no warm-up and no clock: every connection makes exactly N round trips,
//            then all close (bench/instructions.py counts the server's instructions around such runs).
// broadcast  --receivers connections open the URL, one more sends --messages frames (--window in
//            flight); the server must deliver each to every connection on the URL, the sender included.
// hold       opens --conns connections --batch at a time, holds them --seconds, then one round trip each.
// chat       --rooms rooms of --members connections each (URL with {room} replaced by the room's name).
//            In each room, --window messages are in flight, sent by the members in turn; the server
//            must deliver each to every member of the room, the sender included. A message is done
//            when its last member got it: messages/s and latency from the send to that last delivery.
//            Every member checks that each sender's messages arrive complete and in order, and that
//            nothing from another room reaches it.
//
// `ws` is looked up through NODE_PATH (the runner sets it). Output: one JSON object on the last line.
'use strict';
const WebSocket = require('ws');

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const sleep = ms => new Promise(r => setTimeout(r, ms));

function parseArgs(argv) {
  const opts = {};
  for (let i = 1; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    opts[argv[i].slice(2)] = argv[i + 1];
  }
  return { mode: argv[0], opts };
}

function percentiles(latencies) {
  const s = Float64Array.from(latencies).sort();
  const at = p => (s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] * 1000) / 1000 : null);
  return { p50_ms: at(50), p90_ms: at(90), p99_ms: at(99), max_ms: s.length ? Math.round(s[s.length - 1] * 1000) / 1000 : null };
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 15000 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

// Opens urls[i] for every i, `batch` handshakes at a time; failures are counted, not thrown.
async function openAll(urls, batch) {
  const socks = new Array(urls.length).fill(null);
  let failed = 0, firstError = null;
  for (let i = 0; i < urls.length; i += batch) {
    const part = urls.slice(i, i + batch);
    const settled = await Promise.allSettled(part.map(open));
    settled.forEach((r, k) => {
      if (r.status === 'fulfilled') socks[i + k] = r.value;
      else { failed++; firstError = firstError || String(r.reason && r.reason.message || r.reason); }
    });
  }
  return { socks, failed, open_error: firstError };
}

async function echo(o) {
  const conns = +(o.conns || 50), size = +(o.size || 64), seconds = +(o.seconds || 10), warmup = +(o.warmup || 1);
  const count = +(o.count || 0);
  const { socks, failed, open_error } = await openAll(new Array(conns).fill(o.url), +(o.batch || 200));
  const live = socks.filter(Boolean);
  const pad = 'x'.repeat(Math.max(0, size - 14));
  let counting = false, stopped = false, done = 0, total = 0, mismatches = 0, closed = 0, seq = 0;
  const lat = [];
  for (const ws of live) {
    let pending = null, sentAt = 0;
    const send = () => {
      if (stopped) return;
      pending = `e:${(seq++).toString(36).padStart(10, '0')}:${pad}`;
      sentAt = now();
      ws.send(pending);
    };
    ws.on('message', data => {
      if (data.toString() !== pending) mismatches++;
      else {
        total++;
        if (counting) { done++; lat.push(now() - sentAt); }
      }
      ws.go();
    });
    ws.on('close', () => { if (!stopped) closed++; });
    ws.on('error', () => {});
    ws.go = send;
  }
  let start;
  if (count) {
    counting = true;
    start = now();
    await new Promise(resolve => {
      let left = live.length;
      if (!left) resolve();
      for (const ws of live) {
        let mine = 0;
        const go = ws.go;
        ws.go = () => { if (++mine > count) { if (--left === 0) resolve(); } else go(); };
        ws.on('close', () => { if (mine <= count && --left === 0) resolve(); });
      }
      live.forEach(ws => ws.go());
    });
  } else {
    live.forEach(ws => ws.go());
    await sleep(warmup * 1000);
    counting = true;
    start = now();
    await sleep(seconds * 1000);
  }
  counting = false;
  const elapsed = (now() - start) / 1000;
  stopped = true;
  live.forEach(ws => ws.terminate());
  return { mode: 'echo', conns, opened: live.length, open_failed: failed, open_error, size, seconds: elapsed, all_round_trips: total,
    round_trips: done, rate_per_s: Math.round(done / elapsed), mismatches, closed_by_server: closed, ...percentiles(lat) };
}

async function broadcast(o) {
  const receivers = +(o.receivers || 1000), messages = +(o.messages || 100), window = +(o.window || 4);
  const size = +(o.size || 64), timeout = +(o.timeout || 60);
  const { socks, failed, open_error } = await openAll(new Array(receivers).fill(o.url), +(o.batch || 200));
  const live = socks.filter(Boolean);
  const sender = await open(o.url);
  await sleep(500); // joins made during the handshakes reach the group
  const pad = 'x'.repeat(Math.max(0, size - 32));
  const expected = live.length * messages;
  const lat = [];
  let deliveries = 0, malformed = 0, closed = 0, finish;
  const finished = new Promise(r => { finish = r; });
  for (const ws of live) {
    ws.on('message', data => {
      const m = /^b:(\d+):([0-9.]+):/.exec(data.toString());
      if (!m) { malformed++; return; }
      deliveries++;
      lat.push(now() - parseFloat(m[2]));
      if (deliveries >= expected) finish();
    });
    ws.on('close', () => closed++);
    ws.on('error', () => {});
  }
  let sent = 0;
  const sendNext = () => { if (sent < messages) sender.send(`b:${sent++}:${now().toFixed(3)}:${pad}`); };
  sender.on('message', sendNext); // its own copy back: the next one goes out
  const start = now();
  for (let i = 0; i < window; i++) sendNext();
  const timer = setTimeout(finish, timeout * 1000);
  await finished;
  clearTimeout(timer);
  const elapsed = (now() - start) / 1000;
  live.forEach(ws => ws.terminate());
  sender.terminate();
  return { mode: 'broadcast', receivers, opened: live.length, open_failed: failed, open_error, messages, sent,
    deliveries, expected, lost: expected - deliveries, malformed, closed_by_server: closed, seconds: elapsed,
    deliveries_per_s: Math.round(deliveries / elapsed), ...percentiles(lat) };
}

async function hold(o) {
  const conns = +(o.conns || 10000), seconds = +(o.seconds || 8);
  const t0 = now();
  const { socks, failed, open_error } = await openAll(new Array(conns).fill(o.url), +(o.batch || 200));
  const openSeconds = (now() - t0) / 1000;
  const live = socks.filter(Boolean);
  let closed = 0;
  live.forEach(ws => { ws.on('close', () => closed++); ws.on('error', () => {}); });
  await sleep(seconds * 1000);
  const alive = live.filter(ws => ws.readyState === WebSocket.OPEN);
  const lat = [];
  const answers = await Promise.all(alive.map((ws, i) => new Promise(resolve => {
    const msg = `h:${i}`, t = now();
    const timer = setTimeout(() => resolve(false), 30000);
    ws.once('message', d => { clearTimeout(timer); lat.push(now() - t); resolve(d.toString() === msg); });
    ws.send(msg);
  })));
  live.forEach(ws => ws.terminate());
  return { mode: 'hold', conns, opened: live.length, open_failed: failed, open_error, open_seconds: openSeconds,
    held_seconds: seconds, closed_while_held: closed, alive: alive.length,
    answered: answers.filter(Boolean).length, ...percentiles(lat) };
}

async function chat(o) {
  const rooms = +(o.rooms || 20), members = +(o.members || 25), window = +(o.window || 1);
  const seconds = +(o.seconds || 10), warmup = +(o.warmup || 1), size = +(o.size || 64);
  const drain = +(o.drain || 15);
  const names = Array.from({ length: rooms }, (_, r) => `r${r}`);
  const urls = names.flatMap(name => new Array(members).fill(o.url.replace('{room}', name)));
  const { socks, failed, open_error } = await openAll(urls, +(o.batch || 200));
  if (failed) throw new Error(`${failed} of ${urls.length} connections failed to open: ${open_error}`);
  await sleep(500); // joins made at connect reach their groups
  const pad = 'x'.repeat(Math.max(0, size - 24));
  let counting = false, stopping = false, sent = 0, completed = 0, counted = 0;
  let deliveries = 0, gaps = 0, reordered = 0, misrouted = 0, malformed = 0, closed = 0;
  const lat = [];
  const state = names.map(() => ({ turn: 0, seq: new Array(members).fill(0), inflight: new Map() }));
  let idle;
  const allIdle = new Promise(r => { idle = r; });
  let inflightTotal = 0;
  const sendIn = r => {
    if (stopping) return;
    const room = state[r], sender = room.turn++ % members, seq = ++room.seq[sender];
    const key = `${sender}:${seq}`;
    room.inflight.set(key, { t: now(), left: members, counting });
    inflightTotal++;
    sent++;
    socks[r * members + sender].send(`${r}:${key}:${pad}`);
  };
  socks.forEach((ws, i) => {
    const r = Math.floor(i / members), last = new Array(members).fill(0);
    ws.on('message', data => {
      const m = /^(\d+):(\d+):(\d+):/.exec(data.toString());
      if (!m) { malformed++; return; }
      if (+m[1] !== r) { misrouted++; return; }
      const sender = +m[2], seq = +m[3];
      if (seq <= last[sender]) reordered++;
      else if (seq > last[sender] + 1) gaps += seq - last[sender] - 1;
      if (seq > last[sender]) last[sender] = seq;
      deliveries++;
      const room = state[r], key = `${sender}:${seq}`, msg = room.inflight.get(key);
      if (!msg) return;
      if (--msg.left === 0) {
        room.inflight.delete(key);
        inflightTotal--;
        completed++;
        if (msg.counting && counting) { counted++; lat.push(now() - msg.t); }
        sendIn(r);
        if (stopping && inflightTotal === 0) idle();
      }
    });
    ws.on('close', () => { if (!stopping) closed++; });
    ws.on('error', () => {});
  });
  for (let r = 0; r < rooms; r++) for (let w = 0; w < window; w++) sendIn(r);
  await sleep(warmup * 1000);
  counting = true;
  const start = now();
  await sleep(seconds * 1000);
  counting = false;
  const elapsed = (now() - start) / 1000;
  stopping = true;
  if (inflightTotal > 0) await Promise.race([allIdle, sleep(drain * 1000)]);
  let lost = 0;
  for (const room of state) for (const msg of room.inflight.values()) lost += msg.left;
  socks.forEach(ws => ws.terminate());
  return { mode: 'chat', rooms, members, window, connections: socks.length, seconds: elapsed, sent, completed,
    messages: counted, messages_per_s: Math.round(counted / elapsed), deliveries, lost, gaps, reordered, misrouted,
    malformed, closed_by_server: closed, ...percentiles(lat) };
}

(async () => {
  const { mode, opts } = parseArgs(process.argv.slice(2));
  const scenarios = { echo, broadcast, hold, chat };
  if (!opts.url || !scenarios[mode]) {
    console.error('usage: loadgen.js echo|broadcast|hold|chat --url ws://HOST:PORT/PATH [options]; see its header');
    process.exit(2);
  }
  console.log(JSON.stringify(await scenarios[mode](opts)));
  process.exit(0);
})().catch(e => { console.error(`loadgen: ${e.message}`); process.exit(1); });
