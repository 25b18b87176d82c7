// Drives django-ws.js under Node against a real server (tests/test_tokens.py).
// argv: <django-ws.js> <url> <tokenIn> <token 1> <token 2> ...
// Connects with a token function that returns the next token as a Promise,
// asks whoami, drops the socket (not a user close, so the client reconnects),
// and prints one JSON line: the users the server saw and the token calls made.
// A token "REJECT" makes that call's Promise reject (the token service is down).
"use strict";
global.WebSocket = require("ws");
const DjangoWebSocket = require(process.argv[2]);
const [url, tokenIn, ...tokens] = process.argv.slice(3);

let calls = 0, errors = 0;
const seen = [];
const socket = new DjangoWebSocket(url, {
  baseDelay: 50,
  tokenIn: tokenIn,
  token: () => new Promise((resolve, reject) => setTimeout(() => {
    const token = tokens[calls++];
    if (token === "REJECT") reject(new Error("token service unavailable")); else resolve(token);
  }, 10)),
});
socket.onerror = (event) => { if (event.error) errors++; };
const wanted = tokens.filter((t) => t !== "REJECT").length;
socket.onopen = () => socket.sendJSON({});
socket.onjson = (data) => {
  seen.push({user: data.user, protocol: socket.ws.protocol, query: data.query});
  if (seen.length < wanted) {
    socket.ws.close();  // the connection drops: the client comes back with a fresh token
  } else {
    console.log(JSON.stringify({seen: seen, calls: calls, errors: errors}));
    socket.close();
  }
};
setTimeout(() => { console.log(JSON.stringify({timeout: true, seen: seen, calls: calls})); process.exit(1); }, 20000);
socket.onclose = () => { if (socket.closedByUser) process.exit(0); };
