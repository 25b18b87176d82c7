/*
 * django-ws client: a WebSocket that comes back by itself, knows when to stop, and misses nothing of its groups.
 * docs/client.rst describes every option, event and method.
 *
 *   var socket = new DjangoWebSocket("{% reverse_ws 'chat' room='lobby' %}");
 *   socket.onjson = function (msg) { ... };          // or socket.addEventListener("json", ...)
 *   socket.onresync = function (group) { ... reload what the page shows of group ... };
 *   socket.sendJSON({text: "hi"});
 *   socket.request({type: "move", to: "e4"}).then(function (reply) { ... });  // an @on_type method's return value
 *
 * - Reconnects after a close, waiting min(maxDelay, baseDelay * 2^attempt)
 *   times a random factor in [0.5, 1] ("equal jitter"), so a server restart
 *   does not bring every page back in the same instant. It stops instead
 *   (socket.stopped) after a deliberate socket.close(); after a close before
 *   the first open ever (a refused handshake: browsers report 401/403/404 as
 *   1006 with no open event); and after a close with 1003, 1008, 1009 or
 *   4000-4999 (the server, or the application, says coming back will not
 *   help). options.shouldReconnect(event, info) overrides both rules: true
 *   reconnects, false stops, anything else leaves the rule to decide.
 * - Recovery (docs/protocol.rst, "Positions and recovery"): the client asks
 *   for positions (?dws=1), keeps the last position of each group with
 *   history, and presents them when it reconnects (&dws_since=...). The
 *   server replays what was sent to those groups meanwhile, before anything
 *   newer; when it cannot (the gap is older than the history keeps, or the
 *   server restarted), it says so and onresync(group) is called.
 *   onmessage and onjson see the application's data only, as a plain
 *   WebSocket would. options.recover = false turns all of this off.
 * - Messages sent while disconnected are queued (up to maxQueue) and sent,
 *   in order, as soon as the connection is open again.
 * - Events: open, message(event), json(data), resync(group), close(event), error(event): as on* properties
 *   (onjson = fn) or with addEventListener(type, fn) / removeEventListener(type, fn); a listener gets what
 *   the on* property gets.
 * - socket.opened: a Promise resolved once the socket is open (at the next open after a close), and
 *   rejected if the client stops before that.
 * - socket.request(data): sends data (an object with a "type") with a "dws_request" id and returns a
 *   Promise of the reply, the value the handler's @on_type method returned (docs/client.rst).
 * - socket.presence(group): who is in a group the handler shares with this client (self.send_presence,
 *   docs/presence.rst): {users: {key: {info, connections}}, onjoin(key, info), onleave(key), onsync(users)}.
 *   The handler sends a snapshot, then the changes; a snapshot after a reconnect is told as the differences.
 * - options.token: a token (django_ws.tokens.make_token, or a JWT) as a string,
 *   or a function that returns one or a Promise of one; a function is called
 *   before every (re)connect, so an expired token is replaced by a fresh one.
 *   It travels as the subprotocol "django-ws.token.<token>" (out of URLs and
 *   access logs) or, with options.tokenIn = "query", as ?access_token=
 *   (options.tokenParam). A token function that throws or rejects counts as a
 *   failed attempt: onerror({type: "error", error}), then the usual backoff.
 *   The server closes the connection (1008 "token expired") when the token it
 *   opened with expires: a token function is also called ahead of that, and
 *   the fresh token sent over the open connection ({"dws_token": token}), so
 *   the connection stays open; a close for "token expired" reconnects.
 * - options.WebSocket: the WebSocket class to use; by default the global one
 *   (browsers, Node 22+). In older Node: new DjangoWebSocket(url, {WebSocket: require("ws")}).
 * No dependencies, no build step. A script tag defines window.DjangoWebSocket;
 * require("django-ws") and import DjangoWebSocket from "django-ws" work in Node.
 */
(function (root, factory) {
  "use strict";
  if (typeof module !== "undefined" && module.exports) module.exports = factory();
  else root.DjangoWebSocket = factory();
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  // The server refuses more (docs/protocol.rst): the most recently updated ones are kept.
  var MAX_POSITIONS = 100;
  var OPEN = 1, CONNECTING = 0, CLOSED = 3;
  var EVENTS = ["open", "message", "json", "resync", "close", "error"];

  function pick(value, fallback) { return value === undefined || value === null ? fallback : value; }

  // Closes after which coming back would not help, unless options.shouldReconnect says otherwise:
  // 1003 (data the server cannot take), 1008 (policy), 1009 (too big) and the application's 4000-4999.
  function isFinalCode(code) {
    return code === 1003 || code === 1008 || code === 1009 || (code >= 4000 && code <= 4999);
  }

  // A token's expiry (ms since the epoch) from its own claims: "exp" of a JWT, "e" of make_token's
  // (its signed payload is base64url JSON before "~"); null when it does not say.
  var REFRESH_AT = 0.6;
  function tokenExpiry(token) {
    if (typeof token !== "string" || typeof atob !== "function") return null;
    var jwt = token.indexOf("~") === -1 && token.split(".").length === 3;
    var part = jwt ? token.split(".")[1] : token.split("~")[0];
    if (!part || part.charAt(0) === ".") return null;  // empty, or compressed
    try {
      var text = atob(part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4));
      var claims = JSON.parse(text);
      var seconds = jwt ? claims.exp : claims.e;
      return typeof seconds === "number" ? seconds * 1000 : null;
    } catch (e) {
      return null;
    }
  }

  function DjangoWebSocket(url, options) {
    options = options || {};
    this.url = url;
    this.protocols = options.protocols;
    // `??`, not `||`: 0 is a value (baseDelay: 0 retries at once, maxQueue: 0 queues nothing).
    this.baseDelay = pick(options.baseDelay, 500);        // ms
    this.maxDelay = pick(options.maxDelay, 30000);        // ms
    this.maxQueue = pick(options.maxQueue, 1000);         // messages
    this.requestTimeout = pick(options.requestTimeout, 30000);  // ms; 0: none
    this.token = options.token;                           // string, or function returning a string or Promise
    this.tokenIn = pick(options.tokenIn, "protocol");     // "protocol" or "query"
    this.tokenParam = pick(options.tokenParam, "access_token");
    this.recover = options.recover !== false;
    this.WebSocket = pick(options.WebSocket, null);
    this.shouldReconnect = pick(options.shouldReconnect, null);
    // group -> [epoch, offset]: the last position seen in each group with history.
    this.positions = {};
    this.attempts = 0;
    this.queue = [];
    this.closedByUser = false;
    // True once the client has given up for good (see the header); readyState is then CLOSED.
    this.stopped = false;
    this.everOpened = false;
    this.ws = null;
    this.onopen = this.onmessage = this.onjson = this.onresync = this.onclose = this.onerror = null;
    this._listeners = {};
    this._requests = {};   // dws_request id -> {resolve, reject, timer}
    this._nextRequest = 0;
    this._timer = null;
    this._armOpened();
    this._connect();
  }

  // -- events: the on* property first, then the listeners, each with the same arguments --

  DjangoWebSocket.prototype.addEventListener = function (type, listener, options) {
    if (typeof listener !== "function") return;
    var list = this._listeners[type] || (this._listeners[type] = []);
    for (var i = 0; i < list.length; i++) if (list[i].fn === listener) return;  // as EventTarget: once per listener
    list.push({fn: listener, once: !!(options && options.once)});
  };

  DjangoWebSocket.prototype.removeEventListener = function (type, listener) {
    var list = this._listeners[type];
    if (!list) return;
    for (var i = 0; i < list.length; i++) if (list[i].fn === listener) { list.splice(i, 1); return; }
  };

  DjangoWebSocket.prototype._emit = function (type, arg) {
    var handler = this["on" + type];
    if (typeof handler === "function") handler.call(this, arg);
    var list = (this._listeners[type] || []).slice();
    for (var i = 0; i < list.length; i++) {
      if (list[i].once) this.removeEventListener(type, list[i].fn);
      list[i].fn.call(this, arg);
    }
  };

  // -- the opened promise: one per time the socket is down --

  DjangoWebSocket.prototype._armOpened = function () {
    var self = this;
    this.opened = new Promise(function (resolve, reject) { self._openedSettle = [resolve, reject]; });
    // A page that never looks at `opened` must not get an "unhandled rejection" when the client stops.
    this.opened.catch(function () {});
  };

  DjangoWebSocket.prototype._stop = function (why) {
    this.stopped = true;
    if (this._timer !== null) { clearTimeout(this._timer); this._timer = null; }
    if (this._openedSettle) {
      var error = new Error("django-ws: the client stopped before the socket opened (" + why + ")");
      this._openedSettle[1](error);
      this._openedSettle = null;
    }
  };

  DjangoWebSocket.prototype._connect = function () {
    var self = this;
    if (this.token === undefined || this.token === null) { this._open(null); return; }
    var pending;
    try {
      pending = typeof this.token === "function" ? this.token() : this.token;
    } catch (error) {
      this._tokenFailed(error);
      return;
    }
    Promise.resolve(pending).then(function (token) {
      if (!self.stopped) self._open(token);
    }, function (error) { self._tokenFailed(error); });
  };

  DjangoWebSocket.prototype._tokenFailed = function (error) {
    this._emit("error", {type: "error", error: error});
    if (!this.stopped) this._scheduleReconnect();
  };

  DjangoWebSocket.prototype._implementation = function () {
    var Impl = this.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
    if (!Impl) throw new Error("django-ws: no WebSocket here; pass one: new DjangoWebSocket(url, {WebSocket: require(\"ws\")})");
    return Impl;
  };

  DjangoWebSocket.prototype._url = function (token) {
    var params = [];
    if (token && this.tokenIn === "query") params.push(encodeURIComponent(this.tokenParam) + "=" + encodeURIComponent(token));
    if (this.recover) {
      params.push("dws=1");
      if (Object.keys(this.positions).length) params.push("dws_since=" + encodeURIComponent(JSON.stringify(this.positions)));
    }
    if (!params.length) return this.url;
    return this.url + (this.url.indexOf("?") === -1 ? "?" : "&") + params.join("&");
  };

  DjangoWebSocket.prototype._open = function (token) {
    var self = this;
    var protocols = this.protocols;
    if (token && this.tokenIn !== "query") {
      // The server selects "django-ws.token" when the handler picks none of the others.
      protocols = [].concat(protocols || [], ["django-ws.token", "django-ws.token." + token]);
    }
    var Impl, ws;
    try {
      Impl = this._implementation();
    } catch (error) {
      this._emit("error", {type: "error", error: error});
      this._stop("no WebSocket implementation");
      return;
    }
    var url = this._url(token);
    ws = protocols ? new Impl(url, protocols) : new Impl(url);
    this._tokenUsed = token;
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    var opened = false;
    ws.onopen = function (event) {
      opened = true;
      self.everOpened = true;
      self.attempts = 0;
      if (self._openedSettle) { self._openedSettle[0](event); self._openedSettle = null; }
      self._emit("open", event);
      while (self.queue.length && ws.readyState === OPEN) ws.send(self.queue.shift());
      self._planRefresh(ws, self._tokenUsed);
    };
    ws.onmessage = function (event) {
      var data = self.recover ? self._unwrap(event.data) : event.data;
      if (data === null) return;  // a resync signal, not a message
      if (typeof data === "string" && self._reply(data)) return;  // the answer to a request()
      if (typeof data === "string" && self._presenceMessage(data)) return;  // a group's presence (send_presence)
      self._emit("message", data === event.data ? event : {type: "message", data: data, target: ws});
      if (typeof data === "string" && (self.onjson || self._listeners.json && self._listeners.json.length)) {
        var content;
        try { content = JSON.parse(data); } catch (e) { return; }
        self._emit("json", content);
      }
    };
    ws.onerror = function (event) { self._emit("error", event); };
    ws.onclose = function (event) {
      if (self._refreshTimer) { clearTimeout(self._refreshTimer); self._refreshTimer = null; }
      if (self.ws === ws) self._closed(event, opened);
    };
  };

  // The server closes a connection with 1008 "token expired" when its token expires (docs/protocol.rst,
  // "Fresh tokens"): ahead of that (REFRESH_AT of its remaining life), ask the token option for a fresh one
  // and send it over the open connection as {"dws_token": ...}. Only a token function can give a fresh one.
  DjangoWebSocket.prototype._planRefresh = function (ws, token) {
    var self = this;
    var expires = tokenExpiry(token);
    if (expires === null || typeof this.token !== "function") return;
    var delay = Math.max(0, (expires - Date.now()) * REFRESH_AT);
    this._refreshTimer = setTimeout(function () {
      self._refreshTimer = null;
      var pending;
      try { pending = self.token(); } catch (error) { self._emit("error", {type: "error", error: error}); return; }
      Promise.resolve(pending).then(function (fresh) {
        if (self.ws !== ws || ws.readyState !== OPEN || !fresh) return;
        ws.send(JSON.stringify({dws_token: fresh}));
        self._planRefresh(ws, fresh);
      }, function (error) { self._emit("error", {type: "error", error: error}); });
    }, delay);
  };

  // The rules of the header: decided before onclose runs, so a handler can read socket.stopped.
  DjangoWebSocket.prototype._closed = function (event, opened) {
    var refused = !opened && !this.everOpened;
    var reconnect;
    if (this.closedByUser) {
      reconnect = false;
    } else {
      var verdict = this.shouldReconnect ? this.shouldReconnect(event, {refused: refused, attempts: this.attempts}) : undefined;
      // A token that expired is no reason to stop when the token function can give a fresh one.
      var renewable = event.reason === "token expired" && typeof this.token === "function";
      reconnect = typeof verdict === "boolean" ? verdict : !(refused || (isFinalCode(event.code) && !renewable));
    }
    var why = this.closedByUser ? "closed by the page" : refused ? "refused" : "close code " + event.code;
    if (opened) this._armOpened();  // `opened` now waits for the next open...
    if (!reconnect) this._stop(why);  // ...which will not come: it rejects
    this._failRequests("django-ws: the connection closed (" + (event.code) + ") before the reply came");
    this._emit("close", event);
    if (reconnect && !this.stopped) this._scheduleReconnect();
  };

  // The envelope of docs/protocol.rst: a header line (JSON, or empty), then the message untouched.
  DjangoWebSocket.prototype._unwrap = function (data) {
    var header, payload, cut;
    if (typeof data === "string") {
      cut = data.indexOf("\n");
      if (cut === -1) return data;  // not an envelope: the server did not select positions
      header = data.slice(0, cut);
      payload = data.slice(cut + 1);
    } else {
      var bytes = new Uint8Array(data);
      cut = bytes.indexOf(10);
      if (cut === -1) return data;
      header = new TextDecoder().decode(bytes.subarray(0, cut));
      payload = data.slice(cut + 1);
    }
    if (!header) return payload;
    var fields = JSON.parse(header);
    if (fields.resync !== undefined) {
      this._keep(fields.resync, fields.e, fields.o);
      this._emit("resync", fields.resync);
      return null;
    }
    this._keep(fields.g, fields.e, fields.o);
    return payload;
  };

  DjangoWebSocket.prototype._keep = function (group, epoch, offset) {
    var positions = this.positions;
    delete positions[group];  // re-inserted last: the oldest-updated go first past MAX_POSITIONS
    positions[group] = [epoch, offset];
    var groups = Object.keys(positions);
    for (var i = 0; i < groups.length - MAX_POSITIONS; i++) delete positions[groups[i]];
  };

  DjangoWebSocket.prototype.nextDelay = function () {
    var ceiling = Math.min(this.maxDelay, this.baseDelay * Math.pow(2, this.attempts));
    return ceiling / 2 + Math.random() * ceiling / 2;
  };

  DjangoWebSocket.prototype._scheduleReconnect = function () {
    var self = this;
    var delay = this.nextDelay();
    this.attempts += 1;
    this._timer = setTimeout(function () {
      self._timer = null;
      if (!self.stopped) self._connect();
    }, delay);
  };

  DjangoWebSocket.prototype.send = function (data) {
    if (this.stopped) throw new Error("django-ws: the client has stopped; make a new DjangoWebSocket");
    if (this.ws && this.ws.readyState === OPEN) {
      this.ws.send(data);
    } else {
      if (this.queue.length >= this.maxQueue) throw new Error("django-ws: send queue full (" + this.maxQueue + ")");
      this.queue.push(data);
    }
  };

  DjangoWebSocket.prototype.sendJSON = function (data) { this.send(JSON.stringify(data)); };

  // -- request(): {..., "dws_request": id} out, {"dws_reply": id, "data": ...} or {..., "error": ...} back --

  DjangoWebSocket.prototype.request = function (data, options) {
    var self = this;
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      return Promise.reject(new TypeError("django-ws: request() takes an object, such as {type: \"move\", ...}"));
    }
    var id = ++this._nextRequest;
    var message = {};
    for (var key in data) if (Object.prototype.hasOwnProperty.call(data, key)) message[key] = data[key];
    message.dws_request = id;
    var timeout = pick(options && options.timeout, this.requestTimeout);
    return new Promise(function (resolve, reject) {
      var entry = {resolve: resolve, reject: reject, timer: null};
      if (timeout > 0) {
        entry.timer = setTimeout(function () {
          delete self._requests[id];
          reject(new Error("django-ws: no reply to request " + id + " within " + timeout + " ms"));
        }, timeout);
      }
      self._requests[id] = entry;
      try {
        self.sendJSON(message);
      } catch (error) {
        self._settle(id);
        reject(error);
      }
    });
  };

  DjangoWebSocket.prototype._settle = function (id) {
    var entry = this._requests[id];
    if (!entry) return null;
    delete this._requests[id];
    if (entry.timer !== null) clearTimeout(entry.timer);
    return entry;
  };

  // True if `data` was the reply to a pending request (and so is no message of the application's).
  DjangoWebSocket.prototype._reply = function (data) {
    if (data.indexOf("\"dws_reply\"") === -1) return false;
    var content;
    try { content = JSON.parse(data); } catch (e) { return false; }
    if (content === null || typeof content !== "object" || typeof content.dws_reply !== "number") return false;
    var entry = this._settle(content.dws_reply);
    if (!entry) return true;  // timed out, or its connection closed: late, dropped
    if (content.error !== undefined) {
      var error = new Error("django-ws: " + content.error);
      error.reply = content;
      entry.reject(error);
    } else {
      entry.resolve(content.data);
    }
    return true;
  };

  // -- presence: the people in a group, as the handler shares them (docs/presence.rst) --

  function Presence(group) {
    this.group = group;
    this.users = {};  // user key -> {info, connections}
    this.onjoin = null;
    this.onleave = null;
    this.onsync = null;
  }

  Presence.prototype._call = function (name, a, b) {
    if (typeof this[name] === "function") this[name](a, b);
  };

  Presence.prototype._apply = function (content) {
    var key, users = this.users;
    if (content.users !== undefined) {  // a snapshot: told as the differences from what was known
      var fresh = content.users || {};
      for (key in users) {
        if (Object.prototype.hasOwnProperty.call(users, key) && !Object.prototype.hasOwnProperty.call(fresh, key)) {
          delete users[key];
          this._call("onleave", key);
        }
      }
      for (key in fresh) {
        if (!Object.prototype.hasOwnProperty.call(fresh, key)) continue;
        var known = users[key];
        users[key] = fresh[key];
        if (!known || JSON.stringify(known.info) !== JSON.stringify(fresh[key].info)) this._call("onjoin", key, fresh[key].info);
      }
      this._call("onsync", users);
      return;
    }
    var joined = content.joined || {}, left = content.left || [];
    for (var i = 0; i < left.length; i++) {
      if (Object.prototype.hasOwnProperty.call(users, left[i])) {
        delete users[left[i]];
        this._call("onleave", left[i]);
      }
    }
    for (key in joined) {
      if (!Object.prototype.hasOwnProperty.call(joined, key)) continue;
      var entry = users[key] || (users[key] = {info: {}, connections: 1});
      entry.info = joined[key];
      this._call("onjoin", key, joined[key]);
    }
  };

  // The presence object of `group`, made at the first call: the handler's send_presence() messages fill it.
  DjangoWebSocket.prototype.presence = function (group) {
    var all = this._presences || (this._presences = {});
    return all[group] || (all[group] = new Presence(group));
  };

  // True if `data` was a presence message (send_presence), which is no message of the application's.
  DjangoWebSocket.prototype._presenceMessage = function (data) {
    if (data.indexOf("\"dws_presence\"") === -1) return false;
    var content;
    try { content = JSON.parse(data); } catch (e) { return false; }
    if (content === null || typeof content !== "object" || typeof content.dws_presence !== "string") return false;
    this.presence(content.dws_presence)._apply(content);
    return true;
  };

  DjangoWebSocket.prototype._failRequests = function (why) {
    for (var id in this._requests) {
      if (Object.prototype.hasOwnProperty.call(this._requests, id)) this._settle(Number(id)).reject(new Error(why));
    }
  };

  DjangoWebSocket.prototype.close = function (code, reason) {
    this.closedByUser = true;
    var ws = this.ws;
    var open = ws && (ws.readyState === OPEN || ws.readyState === CONNECTING);
    if (open) {
      ws.close(pick(code, 1000), pick(reason, ""));  // onclose follows, and stops the client
    } else if (!this.stopped) {
      this._stop("closed by the page");  // between attempts: no close event will come
      this._failRequests("django-ws: closed by the page");
    }
  };

  Object.defineProperty(DjangoWebSocket.prototype, "readyState", {
    get: function () {
      if (this.stopped && !(this.ws && this.ws.readyState !== CLOSED)) return CLOSED;
      return this.ws ? this.ws.readyState : CONNECTING;
    }
  });

  DjangoWebSocket.DjangoWebSocket = DjangoWebSocket;
  DjangoWebSocket.default = DjangoWebSocket;
  return DjangoWebSocket;
});
