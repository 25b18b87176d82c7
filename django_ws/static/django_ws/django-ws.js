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
    this.attempts = 0;
    this.queue = [];
    this.closedByUser = false;
    this.ws = null;
    this.onopen = this.onmessage = this.onjson = this.onclose = this.onerror = null;
    this._connect();
  }

  DjangoWebSocket.prototype._connect = function () {
    var self = this;
    var ws = this.protocols ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
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
