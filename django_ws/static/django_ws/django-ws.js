/*
 * django-ws browser client: a WebSocket that comes back by itself.
 *
 *   var socket = new DjangoWebSocket("{% reverse_ws 'chat' room='lobby' %}");
 *   socket.onjson = function (msg) { ... };
 *   socket.sendJSON({text: "hi"});
 *
 * - Reconnects after any close except a deliberate socket.close(), waiting
 *   min(maxDelay, baseDelay * 2^attempt) times a random factor in [0.5, 1]
 *   ("equal jitter"), so a server restart does not bring every page back
 *   in the same instant.
 * - Messages sent while disconnected are queued (up to maxQueue) and sent,
 *   in order, as soon as the connection is open again.
 * - Handlers: onopen, onmessage(event), onjson(data), onclose(event), onerror(event).
 * - options.token: a token (django_ws.tokens.make_token, or a JWT) as a string,
 *   or a function that returns one or a Promise of one; a function is called
 *   before every (re)connect, so an expired token is replaced by a fresh one.
 *   It travels as the subprotocol "django-ws.token.<token>" (out of URLs and
 *   access logs) or, with options.tokenIn = "query", as ?access_token=
 *   (options.tokenParam). A token function that throws or rejects counts as a
 *   failed attempt: onerror({type: "error", error}), then the usual backoff.
 * No dependencies, no build step.
 */
(function (root) {
  "use strict";

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
    this.attempts = 0;
    this.queue = [];
    this.closedByUser = false;
    this.ws = null;
    this.onopen = this.onmessage = this.onjson = this.onclose = this.onerror = null;
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

  DjangoWebSocket.prototype._open = function (token) {
    var self = this;
    var url = this.url, protocols = this.protocols;
    if (token && this.tokenIn === "query") {
      url += (url.indexOf("?") === -1 ? "?" : "&") + encodeURIComponent(this.tokenParam) + "=" +
        encodeURIComponent(token);
    } else if (token) {
      // The server selects "django-ws.token" when the handler picks none of the others.
      protocols = [].concat(protocols || [], ["django-ws.token", "django-ws.token." + token]);
    }
    var ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = function (event) {
      self.attempts = 0;
      if (self.onopen) self.onopen(event);
      while (self.queue.length && ws.readyState === WebSocket.OPEN) ws.send(self.queue.shift());
    };
    ws.onmessage = function (event) {
      if (self.onmessage) self.onmessage(event);
      if (self.onjson && typeof event.data === "string") {
        var data;
        try { data = JSON.parse(event.data); } catch (e) { return; }
        self.onjson(data);
      }
    };
    ws.onerror = function (event) { if (self.onerror) self.onerror(event); };
    ws.onclose = function (event) {
      if (self.onclose) self.onclose(event);
      if (!self.closedByUser) self._scheduleReconnect();
    };
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
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
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
    get: function () { return this.ws ? this.ws.readyState : WebSocket.CONNECTING; }
  });

  root.DjangoWebSocket = DjangoWebSocket;
  if (typeof module !== "undefined" && module.exports) module.exports = DjangoWebSocket;
})(typeof window !== "undefined" ? window : this);
