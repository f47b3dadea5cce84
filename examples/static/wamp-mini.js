// wamp-mini.js: just enough WAMP v2 (wamp.2.json) for the ratchetpy example pages.
//
// Subscribe, publish and call, with reconnection and re-subscription after a restart. It has
// no dependencies, so the examples work offline. Real applications should use AutobahnJS
// (npm "autobahn-browser"), which ratchetpy's tests drive in a real browser as well.
//
//   const wamp = new WampMini("ws://host:port/ws", "realm1", {
//     onStatus(online, text) { ... },
//   });
//   wamp.subscribe("com.example.news", (args, kwargs) => { ... });
//   wamp.publish("com.example.news", ["hello"]).then(...);   // resolves when acknowledged
//   wamp.call("com.example.add", [1, 2]).then(([result]) => ...);
(function (global) {
  "use strict";

  const HELLO = 1, WELCOME = 2, ABORT = 3, GOODBYE = 6, ERROR = 8, PUBLISH = 16,
    PUBLISHED = 17, SUBSCRIBE = 32, SUBSCRIBED = 33, EVENT = 36, CALL = 48, RESULT = 50;

  function WampMini(url, realm, options) {
    this.url = url;
    this.realm = realm;
    this.options = options || {};
    this.sessionId = null;
    this._socket = null;
    this._nextId = 1;
    this._pending = new Map();        // request id -> {resolve, reject, topic?}
    this._handlers = new Map();       // topic -> [handler, ...]
    this._waiting = new Map();        // topic -> [{resolve, reject}] until first subscribed
    this._subscriptions = new Map();  // subscription id -> topic
    this._delay = 500;                // reconnect backoff, doubled up to 10 s
    this._connect();
  }

  WampMini.prototype._status = function (online, text) {
    if (this.options.onStatus) this.options.onStatus(online, text);
  };

  WampMini.prototype._connect = function () {
    const self = this;
    self._status(false, "connecting…");
    const socket = new WebSocket(self.url, ["wamp.2.json"]);
    self._socket = socket;
    socket.onopen = function () {
      socket.send(JSON.stringify([HELLO, self.realm,
        {roles: {subscriber: {}, publisher: {}, caller: {}}}]));
    };
    socket.onmessage = function (event) { self._receive(JSON.parse(event.data)); };
    socket.onclose = function () {
      self.sessionId = null;
      self._subscriptions.clear();
      for (const request of self._pending.values()) request.reject(new Error("disconnected"));
      self._pending.clear();
      self._status(false, "disconnected, retrying in " + (self._delay / 1000) + " s");
      setTimeout(function () { self._connect(); }, self._delay);
      self._delay = Math.min(self._delay * 2, 10000);
    };
  };

  WampMini.prototype._send = function (message) {
    if (this.sessionId === null) return Promise.reject(new Error("not connected"));
    const self = this;
    return new Promise(function (resolve, reject) {
      self._pending.set(message[1], {resolve: resolve, reject: reject, topic: message[3]});
      self._socket.send(JSON.stringify(message));
    });
  };

  WampMini.prototype._request = function (type, options, uri, args, kwargs) {
    const message = [type, this._nextId++, options, uri];
    if (args || kwargs) message.push(args || []);
    if (kwargs) message.push(kwargs);
    return this._send(message);
  };

  WampMini.prototype._receive = function (message) {
    const type = message[0];
    if (type === WELCOME) {
      this.sessionId = message[1];
      this._delay = 500;
      this._status(true, "connected");
      for (const topic of this._handlers.keys()) this._resubscribe(topic);
      if (this.options.onJoin) this.options.onJoin(this.sessionId);
    } else if (type === EVENT) {
      const topic = this._subscriptions.get(message[1]);
      for (const handler of this._handlers.get(topic) || []) {
        handler(message[4] || [], message[5] || {}, {topic: topic, publication: message[2]});
      }
    } else if (type === SUBSCRIBED || type === PUBLISHED || type === RESULT || type === ERROR) {
      const requestId = type === ERROR ? message[2] : message[1];
      const request = this._pending.get(requestId);
      if (!request) return;
      this._pending.delete(requestId);
      if (type === ERROR) {
        const error = new Error(message[4] + (message[5] && message[5][0] ? ": " + message[5][0] : ""));
        error.uri = message[4];
        request.reject(error);
      } else if (type === SUBSCRIBED) {
        this._subscriptions.set(message[2], request.topic);
        request.resolve(message[2]);
      } else if (type === RESULT) {
        request.resolve(message[3] || []);
      } else {
        request.resolve(message[2]);
      }
    } else if (type === ABORT || type === GOODBYE) {
      if (type === GOODBYE) this._socket.send(JSON.stringify([GOODBYE, {}, "wamp.close.goodbye_and_out"]));
      this._status(false, "session ended: " + message[2]);
    }
  };

  WampMini.prototype._subscribe = function (topic) {
    const self = this;
    return this._request(SUBSCRIBE, {}, topic).catch(function (error) {
      self._status(self.sessionId !== null, "cannot subscribe to " + topic + ": " + error.message);
      throw error;
    });
  };

  // After (re)joining: subscribe again; settle the promises of subscribe() calls made
  // while offline. A refusal is reported through onStatus, never left unhandled.
  WampMini.prototype._resubscribe = function (topic) {
    const self = this;
    this._subscribe(topic).then(function (id) {
      for (const waiter of self._waiting.get(topic) || []) waiter.resolve(id);
      self._waiting.delete(topic);
    }, function (error) {
      for (const waiter of self._waiting.get(topic) || []) waiter.reject(error);
      self._waiting.delete(topic);
    });
  };

  // Calls handler(args, kwargs, details) for each event; survives reconnections. The promise
  // resolves once the router has confirmed the subscription (after joining, if offline now).
  WampMini.prototype.subscribe = function (topic, handler) {
    const handlers = this._handlers.get(topic);
    if (handlers) { handlers.push(handler); return Promise.resolve(); }
    this._handlers.set(topic, [handler]);
    if (this.sessionId !== null) return this._subscribe(topic);
    const self = this;
    return new Promise(function (resolve, reject) {
      const waiters = self._waiting.get(topic) || [];
      waiters.push({resolve: resolve, reject: reject});
      self._waiting.set(topic, waiters);
    });
  };

  WampMini.prototype.publish = function (topic, args, kwargs) {
    return this._request(PUBLISH, {acknowledge: true}, topic, args, kwargs);
  };

  WampMini.prototype.call = function (procedure, args, kwargs) {
    return this._request(CALL, {}, procedure, args, kwargs);
  };

  global.WampMini = WampMini;
})(window);
