// Drives the official socket.io-client under Node against a real server (tests/test_socketio.py).
// argv: <url with namespace> <options as JSON: path, transports, auth, query, reconnection, localAddress>
// Prints one JSON line per event: {"connect": transport}, {"upgrade": transport},
// {"connect_error": {message, data}}, {"message": text} or {"binary": base64} (and "position" when the
// event carried one), {"event": name, "args": [...]} for other server events ("close" among them),
// {"ack": id, "args": [...]}, {"disconnect": reason}, {"done": n} after a burst.
// Reads commands from stdin, one JSON object per line:
//   {"emit": name, "args": [...], "ack": id}   emit an event (with an acknowledgement callback when "ack" is set);
//                                              an argument {"$binary": base64} is sent as binary
//   {"burst": n, "prefix": p, "interval": ms, "untilUpgrade": k}
//                                              send n "message" events p0..p(n-1) (at once, or one every
//                                              interval ms, the k-th and later only once upgraded), then
//                                              say {"done": n}
//   {"connect": true} / {"disconnect": true}    connect again / disconnect this namespace
//   {"quit": true}                               exit
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const { io } = require("socket.io-client");  // found through NODE_PATH

const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const { localAddress, ...options } = JSON.parse(process.argv[3]);
if (localAddress) {
  // Connect from this address (127.x.y.z): a proxy that hashes addresses sees several clients.
  const http = require("node:http");
  options.agent = new http.Agent({ localAddress, keepAlive: true });
}
const socket = io(process.argv[2], { reconnection: false, ...options });

const decode = (value) => (value && typeof value === "object" && "$binary" in value)
  ? Buffer.from(value.$binary, "base64") : value;
const show = (value) => (Buffer.isBuffer(value) || value instanceof ArrayBuffer)
  ? { $binary: Buffer.from(value).toString("base64") } : value;

socket.on("connect", () => {
  say({ connect: socket.io.engine.transport.name });
  socket.io.engine.once("upgrade", (transport) => say({ upgrade: transport.name }));
});
socket.on("connect_error", (err) => say({ connect_error: { message: err.message, data: err.data ?? null } }));
socket.on("disconnect", (reason) => say({ disconnect: reason }));
socket.on("message", (data, position) => {
  const event = typeof data === "string" ? { message: data } : { binary: Buffer.from(data).toString("base64") };
  if (position !== undefined) event.position = position;
  say(event);
});
socket.onAny((name, ...args) => { if (name !== "message") say({ event: name, args: args.map(show) }); });

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.emit !== undefined) {
    const args = (command.args || []).map(decode);
    if (command.ack !== undefined) socket.emit(command.emit, ...args, (...reply) => say({ ack: command.ack, args: reply.map(show) }));
    else socket.emit(command.emit, ...args);
  } else if (command.burst !== undefined && command.interval) {
    let i = 0;  // one message every interval ms: a stream that lasts while the test does something else
    const send = () => {
      socket.send(`${command.prefix}${i++}`);
      if (i === command.burst) { clearInterval(timer); say({ done: command.burst }); }
      else if (i === command.untilUpgrade && socket.io.engine.transport.name !== "websocket") {
        // The rest waits for the upgrade: some messages are sent before it, some after.
        clearInterval(timer);
        socket.io.engine.once("upgrade", () => { timer = setInterval(send, command.interval); });
      }
    };
    let timer = setInterval(send, command.interval);
  } else if (command.burst !== undefined) {
    for (let i = 0; i < command.burst; i++) socket.send(`${command.prefix}${i}`);
    say({ done: command.burst });
  } else if (command.connect) socket.connect();
  else if (command.disconnect) socket.disconnect();
  else if (command.quit) { socket.disconnect(); process.exit(0); }
});
setTimeout(() => { say({ timeout: true }); process.exit(1); }, 120000);
