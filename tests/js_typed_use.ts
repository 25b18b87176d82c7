// A typical use of django-ws.js, type-checked against django-ws.d.ts by tests/test_js_client.py (tsc --strict).
// Every `@ts-expect-error` line must be an error: a declaration too loose to catch it fails the test.
import DjangoWebSocket, { DjangoWebSocketOptions, ReconnectInfo } from "django-ws-edge";
import { DjangoWebSocket as Named } from "django-ws-edge";

interface ChatLine { type: "message"; author: string; text: string }

const options: DjangoWebSocketOptions = {
  baseDelay: 0,
  maxQueue: 0,
  requestTimeout: 5000,
  token: () => fetch("/ws-token/").then((r) => r.json()).then((d: { token: string }) => d.token),
  shouldReconnect: (event: CloseEvent, info: ReconnectInfo) => (info.refused ? false : event.code === 4001 ? true : undefined),
};
const socket = new DjangoWebSocket("wss://example.com/socket/chat/lobby", options);
const same: Named = socket;

socket.onjson = (data) => console.log(data);
socket.addEventListener("json", (data) => console.log(data));
socket.addEventListener("close", (event) => console.log(event.code, event.reason, socket.stopped));
socket.addEventListener("resync", (group) => console.log(group.toUpperCase()));
socket.addEventListener("open", () => undefined, { once: true });
const onClose = (event: CloseEvent) => console.log(event.wasClean);
socket.addEventListener("close", onClose);
socket.removeEventListener("close", onClose);

async function main(): Promise<void> {
  const openEvent: Event = await socket.opened;
  console.log(openEvent.type);
  const sum = await socket.request<number>({ type: "add", a: 1, b: 2 });
  const doubled: number = sum * 2;
  const line = await socket.request<ChatLine>({ type: "say", text: "hi" }, { timeout: 1000 });
  console.log(doubled, line.author, same.readyState);
  socket.sendJSON({ type: "say", text: "hi" });
  socket.send(new Uint8Array([1, 2, 3]));
  socket.close(4000, "bye");
}
main();

// @ts-expect-error: request() takes an object with a "type"
socket.request("add");
// @ts-expect-error: maxQueue is a number
new DjangoWebSocket("ws://x", { maxQueue: "10" });
// @ts-expect-error: no such event
socket.addEventListener("jsno", () => undefined);
// @ts-expect-error: a resync listener gets the group's name, a string
socket.addEventListener("resync", (group: number) => group);
// @ts-expect-error: stopped is read-only
socket.stopped = false;
