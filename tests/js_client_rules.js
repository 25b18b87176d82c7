// Drives django-ws.js under Node against a real server (tests/test_js_client.py): when it reconnects
// and when it stops, request(), the opened promise, addEventListener, and the `??` defaults.
// argv: <django-ws.js> <scenario> <ws base url, ending in "/"> [codes...]
// Prints one JSON line: what the scenario saw. A scenario that hangs is ended by the timer below.
"use strict";
const WS = require("ws");
const DjangoWebSocket = require(process.argv[2]);
const [scenario, base, ...rest] = process.argv.slice(3);

// A WebSocket class that counts the connections the client opens.
function counting(attempts) {
  return class extends WS {
    constructor(url, protocols) { super(url, protocols); attempts.push(url); }
  };
}

function once(socket, type) {
  return new Promise((resolve) => socket.addEventListener(type, resolve, {once: true}));
}

// A retry comes at once with baseDelay 0, so this is plenty to see that none came.
const GRACE = 300;
const grace = () => new Promise((resolve) => setTimeout(resolve, GRACE));
const settled = (promise) => promise.then((value) => ({value}), (error) => ({error: error.message}));

const scenarios = {
  // A handshake refused with 403 (login_required): one attempt, then the client stops.
  async refused() {
    const attempts = [];
    const socket = new DjangoWebSocket(base + "private", {WebSocket: counting(attempts), baseDelay: 0, maxDelay: 0});
    const opened = settled(socket.opened);
    const close = await once(socket, "close");
    await grace();
    return {attempts: attempts.length, code: close.code, stopped: socket.stopped, readyState: socket.readyState,
            opened: await opened};
  },

  // The same, with shouldReconnect saying yes twice: three attempts, each reported as refused.
  async refusedRetried() {
    const attempts = [], infos = [];
    const socket = new DjangoWebSocket(base + "private", {
      WebSocket: counting(attempts), baseDelay: 0, maxDelay: 0,
      shouldReconnect: (event, info) => { infos.push(info.refused); return infos.length < 3; },
    });
    while (!socket.stopped) await once(socket, "close");
    await grace();
    return {attempts: attempts.length, refused: infos, stopped: socket.stopped};
  },

  // The server closes with each code in turn: does the client come back?
  async codes() {
    const results = {};
    for (const arg of rest) {
      const [code, override] = arg.split(":");  // "4000:yes": with shouldReconnect returning true
      const attempts = [];
      const socket = new DjangoWebSocket(base + "requests", {
        WebSocket: counting(attempts), baseDelay: 0, maxDelay: 0,
        shouldReconnect: override ? () => true : undefined,
      });
      await socket.opened;
      socket.sendJSON({type: "close", code: Number(code)});
      const close = await once(socket, "close");
      const stopped = socket.stopped;
      if (!stopped) {
        await socket.opened;  // a fresh promise: the next open
        socket.close();
        await once(socket, "close");
      } else {
        await grace();
      }
      results[arg] = {received: close.code, stopped: stopped, attempts: attempts.length};
    }
    return results;
  },

  async request() {
    const socket = new DjangoWebSocket(base + "requests", {baseDelay: 0, WebSocket: WS});
    const json = [];
    socket.onjson = (data) => json.push(data);
    const early = socket.request({type: "add", a: 1, b: 2});  // before the open: queued, then sent
    const result = {early: await settled(early)};
    result.several = await Promise.all([5, 6, 7].map((n) => socket.request({type: "add", a: n, b: n})));
    result.nothing = await settled(socket.request({type: "nothing"}));
    result.unknown = await settled(socket.request({type: "nope"}));
    result.notAnObject = await settled(socket.request("add"));
    socket.sendJSON({plain: true});  // an ordinary message still reaches onjson; the replies did not
    while (!json.length) await once(socket, "json");
    result.json = json;
    // The handler closes instead of answering: the request fails when the connection closes.
    result.closedFirst = await settled(socket.request({type: "close", code: 4001}));
    socket.close();
    // A handler that never answers (echo): the request times out.
    const echo = new DjangoWebSocket(base + "echo", {requestTimeout: 100, WebSocket: WS});
    result.timeout = await settled(echo.request({type: "add", a: 1, b: 1}));
    result.perCall = await settled(echo.request({type: "add"}, {timeout: 50}));
    echo.close();
    return result;
  },

  async events() {
    const socket = new DjangoWebSocket(base + "requests", {WebSocket: WS});
    const seen = [];
    const listener = (data) => seen.push(["listener", data.echo.n]);
    socket.onjson = (data) => seen.push(["property", data.echo.n]);
    socket.addEventListener("json", listener);
    socket.addEventListener("json", listener);  // once per listener, as EventTarget
    socket.addEventListener("json", (data) => seen.push(["once", data.echo.n]), {once: true});
    const openEvent = await socket.opened;
    for (const n of [1, 2]) {
      socket.sendJSON({n});
      await once(socket, "json");
    }
    socket.removeEventListener("json", listener);
    socket.sendJSON({n: 3});
    await once(socket, "json");
    socket.close();
    const close = await once(socket, "close");
    return {seen, openType: openEvent.type, closeCode: close.code, stopped: socket.stopped,
            openedAfterClose: await settled(socket.opened)};
  },

  // No server: the options' defaults, and 0 taken as a value (`??`, not `||`).
  async defaults() {
    class NeverOpens {
      constructor() { this.readyState = 0; }
      close() { this.readyState = 3; this.onclose({code: 1000}); }
    }
    const zero = new DjangoWebSocket("ws://127.0.0.1:9/none", {WebSocket: NeverOpens, maxQueue: 0, baseDelay: 0,
                                                               requestTimeout: 0});
    let queueFull = null;
    try { zero.send("x"); } catch (error) { queueFull = error.message; }
    const plain = new DjangoWebSocket("ws://127.0.0.1:9/none", {WebSocket: NeverOpens});
    const result = {queueFull, zeroDelay: zero.nextDelay(), zero: [zero.baseDelay, zero.maxQueue, zero.requestTimeout],
                    defaults: [plain.baseDelay, plain.maxDelay, plain.maxQueue, plain.requestTimeout]};
    zero.close();
    plain.close();
    result.stopped = [zero.stopped, plain.stopped];
    let afterStop = null;
    try { zero.send("x"); } catch (error) { afterStop = error.message; }
    result.afterStop = afterStop;
    return result;
  },
};

const timer = setTimeout(() => { console.log(JSON.stringify({timeout: scenario})); process.exit(1); }, 20000);
scenarios[scenario]().then((result) => {
  console.log(JSON.stringify(result));
  clearTimeout(timer);
  process.exit(0);
}, (error) => {
  console.log(JSON.stringify({failed: String(error && error.stack || error)}));
  process.exit(1);
});
