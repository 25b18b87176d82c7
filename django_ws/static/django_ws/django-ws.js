/*
 * django-ws client: a WebSocket that comes back by itself, and misses nothing of its groups.
 *
 *   var socket = new DjangoWebSocket("{% reverse_ws 'chat' room='lobby' %}");
 *   socket.onjson = function (msg) { ... };
 *   socket.onresync = function (group) { ... reload what the page shows of group ... };
 *   socket.sendJSON({text: "hi"});
 *
 * - Reconnects after any close except a deliberate socket.close(), waiting
 *   min(maxDelay, baseDelay * 2^attempt) times a random factor in [0.5, 1]
 *   ("equal jitter"), so a server restart does not bring every page back
 *   in the same instant.
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
 * - Handlers: onopen, onmessage(event), onjson(data), onresync(group), onclose(event), onerror(event).
 * - options.token: a token (django_ws.tokens.make_token, or a JWT) as a string,
 *   or a function that returns one or a Promise of one; a function is called
 *   before every (re)connect, so an expired token is replaced by a fresh one.
 *   It travels as the subprotocol "django-ws.token.<token>" (out of URLs and
 *   access logs) or, with options.tokenIn = "query", as ?access_token=
 *   (options.tokenParam). A token function that throws or rejects counts as a
 *   failed attempt: onerror({type: "error", error}), then the usual backoff.
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
  var OPEN = 1, CONNECTING = 0;

  function DjangoWebSocket(url, options) {
    options = options || {};
    this.url = url;
    this.protocols = options.protocols;
    this.baseDelay = options.baseDelay || 500;      // ms
    this.maxDelay = options.maxDelay || 30000;      // ms
    this.maxQueue = options.maxQueue || 1000;       // messages
    this.token = options.token;                     // string, or function returning a string or Promise
    this.tokenIn = options.tokenIn || "protocol";   // "protocol" or "query"
    this.tokenParam = options.tokenParam || "access_token";
    this.recover = options.recover !== false;
    this.WebSocket = options.WebSocket || null;
    // group -> [epoch, offset]: the last position seen in each group with history.
    this.positions = {};
    this.attempts = 0;
    this.queue = [];
    this.closedByUser = false;
    this.ws = null;
    this.onopen = this.onmessage = this.onjson = this.onresync = this.onclose = this.onerror = null;
    this._connect();
  }

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
      if (!self.closedByUser) self._open(token);
    }, function (error) { self._tokenFailed(error); });
  };

  DjangoWebSocket.prototype._tokenFailed = function (error) {
    if (this.onerror) this.onerror({type: "error", error: error});
    if (!this.closedByUser) this._scheduleReconnect();
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
      if (this.onerror) this.onerror({type: "error", error: error});
      return;
    }
    var url = this._url(token);
    ws = protocols ? new Impl(url, protocols) : new Impl(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = function (event) {
      self.attempts = 0;
      if (self.onopen) self.onopen(event);
      while (self.queue.length && ws.readyState === OPEN) ws.send(self.queue.shift());
    };
    ws.onmessage = function (event) {
      var data = self.recover ? self._unwrap(event.data) : event.data;
      if (data === null) return;  // a resync signal, not a message
      if (self.onmessage) self.onmessage(data === event.data ? event : {type: "message", data: data, target: ws});
      if (self.onjson && typeof data === "string") {
        var content;
        try { content = JSON.parse(data); } catch (e) { return; }
        self.onjson(content);
      }
    };
    ws.onerror = function (event) { if (self.onerror) self.onerror(event); };
    ws.onclose = function (event) {
      if (self.onclose) self.onclose(event);
      if (!self.closedByUser) self._scheduleReconnect();
    };
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
      if (this.onresync) this.onresync(fields.resync);
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
    setTimeout(function () { if (!self.closedByUser) self._connect(); }, delay);
  };

  DjangoWebSocket.prototype.send = function (data) {
    if (this.ws && this.ws.readyState === OPEN) {
      this.ws.send(data);
    } else {
      if (this.queue.length >= this.maxQueue) throw new Error("django-ws: send queue full (" + this.maxQueue + ")");
      this.queue.push(data);
    }
  };

  DjangoWebSocket.prototype.sendJSON = function (data) { this.send(JSON.stringify(data)); };

  DjangoWebSocket.prototype.close = function (code, reason) {
    this.closedByUser = true;
    if (this.ws) this.ws.close(code || 1000, reason || "");
  };

  Object.defineProperty(DjangoWebSocket.prototype, "readyState", {
    get: function () { return this.ws ? this.ws.readyState : CONNECTING; }
  });

  DjangoWebSocket.DjangoWebSocket = DjangoWebSocket;
  DjangoWebSocket.default = DjangoWebSocket;
  return DjangoWebSocket;
});
