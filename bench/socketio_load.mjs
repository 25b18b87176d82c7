// The load client of bench/socketio_bench.py: Socket.IO (socket.io-client) or plain WebSocket (ws) echo clients.
// argv: <kind: sio|ws> <url> <options JSON: path, transports> <command: echo|hold> <connections> [seconds]
//   echo: each connection sends a 32-byte text message and waits for its echo, again and again, for
//         <seconds>; prints {"round_trips": n, "seconds": s} (every echo checked: in order, unchanged)
//   hold: opens <connections> idle connections; prints {"held": n}, then waits for a line on stdin and exits
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const [kind, url, optionsJson, command, connectionsArg, secondsArg] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
const connections = Number(connectionsArg);
const fail = (why) => { process.stderr.write(why + "\n"); process.exit(1); };

function open() {
  return new Promise((resolve, reject) => {
    if (kind === "sio") {
      const { io } = require("socket.io-client");
      const socket = io(url, { ...options, forceNew: true, reconnection: false });
      socket.once("connect", () => resolve({ send: (m) => socket.send(m), on: (f) => socket.on("message", f) }));
      socket.once("connect_error", (err) => reject(err));
    } else {
      const WebSocket = require("ws");
      const ws = new WebSocket(url);
      ws.once("open", () => resolve({ send: (m) => ws.send(m), on: (f) => ws.on("message", (d) => f(d.toString())) }));
      ws.once("error", reject);
    }
  });
}

const clients = [];
for (let i = 0; i < connections; i += 50) {  // in batches: no thundering herd on the accept queue
  clients.push(...await Promise.all(Array.from({ length: Math.min(50, connections - i) }, open)).catch((e) => fail(String(e))));
}
if (command === "hold") {
  process.stdout.write(JSON.stringify({ held: clients.length }) + "\n");
  readline.createInterface({ input: process.stdin }).once("line", () => process.exit(0));
} else {
  const seconds = Number(secondsArg);
  let roundTrips = 0;
  let running = true;
  const started = process.hrtime.bigint();
  await Promise.all(clients.map((client, n) => new Promise((resolve) => {
    let i = 0;
    const next = () => client.send(`${n}:${String(i).padStart(28, "0")}`);
    client.on((data) => {
      if (data !== `${n}:${String(i).padStart(28, "0")}`) fail(`connection ${n}: expected echo ${i}, got ${data}`);
      roundTrips++;
      i++;
      if (running) next(); else resolve();
    });
    next();
  })).concat(new Promise((resolve) => setTimeout(() => { running = false; resolve(); }, seconds * 1000))));
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(JSON.stringify({ round_trips: roundTrips, seconds: elapsed }) + "\n");
  process.exit(0);
}
