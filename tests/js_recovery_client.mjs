// Drives django-ws.js under Node, as an ES module, against a real server (tests/test_history.py).
// argv: <django-ws.mjs> <url> <baseDelay ms>
// Prints one JSON line per event: {"open"}, {"message": data} (what onmessage saw),
// {"json": data} (what onjson saw), {"resync": group}. Reads commands from stdin,
// one per line: "drop" closes the underlying socket (the client comes back by
// itself), "positions" prints them, "quit" closes for good.
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const WebSocketImpl = require("ws");  // found through NODE_PATH
const { default: DjangoWebSocket } = await import(process.argv[2]);

const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const socket = new DjangoWebSocket(process.argv[3], { WebSocket: WebSocketImpl, baseDelay: Number(process.argv[4]) });
socket.onopen = () => say({ open: true });
socket.onmessage = (event) => say({ message: event.data });
socket.onjson = (data) => say({ json: data });
socket.onresync = (group) => say({ resync: group });
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "drop") socket.ws.close();
  else if (line === "positions") say({ positions: socket.positions });
  else if (line === "quit") { socket.close(); process.exit(0); }
});
setTimeout(() => { say({ timeout: true }); process.exit(1); }, 60000);
