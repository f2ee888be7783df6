/**
 * A client for the /ws/ protocol (docs/protocol.md): one dependency-free ES
 * module, usable in browsers as it is (`<script type="module">`) and in Node
 * with any WebSocket implementation passed as `WebSocketImpl`.
 *
 *   import { WsClient } from "./ws-client.js";
 *   const client = new WsClient({ url: "wss://example.org/ws/", backoff: { baseMs: 500, capMs: 15000 } });
 *   client.on("message", (m) => console.log(m.topic, m.id, m.author.username, m.text));
 *   client.subscribe("room.lobby");
 *   client.connect();
 *   const ack = await client.publish("room.lobby", "hi");  // {type: "ack", topic, id, ref}
 *
 * Behaviour
 * - Reconnects after any close except 4401/4403, waiting
 *   `random() * min(capMs, baseMs * 2 ** attempt)` ms ("full jitter"), where
 *   `attempt` counts the reconnects since the last `welcome` (0 for the first).
 *   After a close with 1012 (service restart), for `restartWindowMs` (30 s),
 *   an attempt that fails before its socket opened (nothing listens yet, or a
 *   proxy answered 502/503/504: a browser reports both as 1006 without `open`)
 *   waits under `restartCapMs` (2 s, still full jitter) instead of the
 *   growing ceiling, so clients are back within about 2 s of the new process
 *   listening; any other failure (a timeout, 1013, 4013, 4029: a server that
 *   is there but busy) grows the ceiling as usual. A `welcome` ends the window.
 *   A close with 4401 (not authenticated, session revoked) or 4403 (forbidden)
 *   is terminal: the client emits `stopped` and does not retry until
 *   `connect()` is called again.
 * - Remembers every subscribed topic and the highest message id seen in it.
 *   After each `welcome` it subscribes again with `since` = that id, so the
 *   server replays exactly what was missed. A replay that stops at the
 *   server's limit (`more_history`) is continued with `since` = the highest
 *   id seen until it has caught up.
 * - `subscribe(topic, {recent: N})` shows history on joining: the server
 *   replays the topic's newest N messages (at most its WS_REPLAY_MAX_MESSAGES)
 *   before live ones; reconnects then resume with `since` as above.
 * - Emits each (topic, id) at most once (`duplicate` is emitted for the rest).
 * - Every request carries a `ref` unique to this client; its reply and any
 *   `error` answering it echo that `ref`, and only that matches them (an
 *   `error` without a known `ref` reaches the `error` event only).
 * - `ticketProvider` (optional) is awaited before every connection attempt:
 *   a string is sent as `?ticket=` (tickets are single-use, so a new one is
 *   needed each time), `null` connects without one (the browser's session
 *   cookie authenticates); if it throws, the attempt counts as failed and is
 *   retried with backoff.
 *
 * Events (`on(type, fn)` returns a function that removes the listener):
 *   open          the socket opened (authentication not yet confirmed)
 *   welcome       the server's welcome frame; the connection is usable
 *   subscribed    a subscribed frame          unsubscribed  an unsubscribed frame
 *   more_history  a replay stopped at the server's limit (continued automatically)
 *   message       a message frame, once per (topic, id)
 *   duplicate     a message frame already seen (not re-emitted as message)
 *   presence      a presence reply            presence_diff a presence_diff frame
 *   notification  a notification frame        ack           an ack frame
 *   pong          a pong frame                whoami        a whoami reply
 *   typing        another user is typing in a subscribed topic
 *   error         an error frame from the server, or a client-side problem
 *                 ({type: "error", code: "client_…", detail, error?})
 *   frame         every frame received, before the specific event
 *   close         {code, reason, wasClean}: the socket closed
 *   reconnecting  {attempt, delayMs, code, reason}: a retry is scheduled
 *   stopped       {code, reason, byClient}: terminal (4401/4403) or close()
 */

export const TERMINAL_CLOSE_CODES = Object.freeze([4401, 4403]);
export const DEFAULT_BACKOFF = Object.freeze({ baseMs: 500, capMs: 30000, restartCapMs: 2000, restartWindowMs: 30000 });
export const CLOSE_SERVICE_RESTART = 1012;

/**
 * Frames of optional server features (presence): a server without the feature
 * sends none of them, and the client's call for it rejects with the server's
 * `unknown_type` error.
 */
const OPTIONAL_FRAME_TYPES = ["presence", "presence_diff"];
const EVENT_FRAME_TYPES = new Set([
  "welcome",
  "subscribed",
  "unsubscribed",
  "more_history",
  "message",
  "ack",
  "notification",
  "error",
  "pong",
  "whoami",
  "typing",
  ...OPTIONAL_FRAME_TYPES,
]);
const WS_OPEN = 1;
/** Error codes after which a refused subscribe is still repeated on the next reconnect. */
const TRANSIENT_ERRORS = new Set(["unavailable", "rate_limited", "internal"]);
const MAX_EXPONENT = 64;

/** An error raised by the client itself (not a server error frame). */
export class WsClientError extends Error {
  /**
   * @param {string} code  e.g. "not_connected", "timeout", "connection_lost", "stopped", or a server error code
   * @param {string} message
   * @param {object} [frame]  the server error frame, when there is one
   */
  constructor(code, message, frame = undefined) {
    super(message);
    this.name = "WsClientError";
    this.code = code;
    this.frame = frame;
  }
}

/**
 * The delay before reconnect number `attempt` (0-based): full jitter,
 * `random() * min(capMs, baseMs * 2 ** attempt)`, so it lies in
 * `[0, min(capMs, baseMs * 2 ** attempt))` when `random()` is in [0, 1).
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const { baseMs, capMs } = backoff;
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`attempt must be an integer >= 0, not ${attempt}`);
  }
  if (!(Number.isFinite(baseMs) && baseMs > 0 && Number.isFinite(capMs) && capMs >= baseMs)) {
    throw new RangeError(`backoff needs 0 < baseMs <= capMs (finite), got ${baseMs} and ${capMs}`);
  }
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, MAX_EXPONENT));
  const r = random();
  if (!(r >= 0 && r <= 1)) {
    throw new RangeError(`random() must return a number in [0, 1], got ${r}`);
  }
  return r * ceiling;
}

/**
 * The backoff for the next retry: `backoff` itself, or, when the server is
 * away (the socket never opened) within the restart window of a 1012, the
 * same with its ceiling lowered to `restartCapMs` (never below `baseMs`).
 */
export function retryBackoff(backoff, { serverAway, restarting }) {
  const { baseMs, capMs, restartCapMs = DEFAULT_BACKOFF.restartCapMs } = backoff;
  if (!(serverAway && restarting)) return { baseMs, capMs };
  return { baseMs, capMs: Math.max(baseMs, Math.min(capMs, restartCapMs)) };
}

/** Resolves a relative or http(s) URL to ws(s), against the page's location when there is one. */
export function toWebSocketUrl(url) {
  const base = globalThis.location?.href;
  const parsed = base === undefined ? new URL(url) : new URL(url, base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`not a WebSocket URL: ${url}`);
  }
  return parsed.toString();
}

function withTicket(url, ticket) {
  if (ticket === null || ticket === undefined) return url;
  const parsed = new URL(url);
  parsed.searchParams.set("ticket", ticket);
  return parsed.toString();
}

function rethrowLater(error) {
  // A listener's bug must not break the client, nor be swallowed.
  setTimeout(() => {
    throw error;
  }, 0);
}

export class WsClient {
  #url;
  #WebSocket;
  #protocols;
  #ticketProvider;
  #backoff;
  #random;
  #requestTimeoutMs;
  #connectTimeoutMs;
  #dedupWindow;

  #listeners = new Map();
  #state = "idle";
  #socket = null;
  #generation = 0;
  #attempt = 0;
  #welcomed = false;
  #opened = false;
  /** `performance.now()` until which a 1012's restart window lasts (-Infinity: none). */
  #restartUntil = -Infinity;
  #user = null;
  #reconnectTimer = null;
  #connectTimer = null;
  #refCounter = 0;
  /**
   * topic -> {lastId: number|null, floor: number, seen: Set<number>, status: "idle"|"pending"|"subscribed",
   * recent: number|null (asked for while nothing has been seen: the newest messages to replay),
   * ref: the ref of the last subscribe sent (its reply or error settles the topic's subscribe() promises)}
   */
  #topics = new Map();
  /** pending requests: {ref(): the ref they wait for, replyType, resolve, reject, timer, persistent, topic, armed} */
  #waiters = new Set();
  #duplicates = 0;

  /**
   * @param {object} options
   * @param {string} options.url  ws(s):// URL of the endpoint; relative or http(s) URLs are resolved against the page
   * @param {Function} [options.WebSocketImpl]  a WebSocket constructor (default: globalThis.WebSocket)
   * @param {string|string[]} [options.protocols]  subprotocols passed to the constructor
   * @param {() => Promise<string|null>} [options.ticketProvider]  a fresh one-time ticket per attempt, or null
   * @param {{baseMs: number, capMs: number, restartCapMs?: number, restartWindowMs?: number}} [options.backoff]
   * @param {() => number} [options.random]  source of jitter in [0, 1) (default Math.random)
   * @param {number} [options.requestTimeoutMs]  how long publish/presence/subscribe wait for their reply
   * @param {number} [options.connectTimeoutMs]  how long an attempt may take from socket creation to welcome
   * @param {number} [options.dedupWindow]  message ids remembered per topic besides the high-water mark
   */
  constructor({
    url,
    WebSocketImpl = globalThis.WebSocket,
    protocols = undefined,
    ticketProvider = undefined,
    backoff = DEFAULT_BACKOFF,
    random = Math.random,
    requestTimeoutMs = 10000,
    connectTimeoutMs = 15000,
    dedupWindow = 1000,
  } = {}) {
    if (typeof url !== "string" || url === "") throw new TypeError("url is required");
    if (typeof WebSocketImpl !== "function") {
      throw new TypeError("no WebSocket implementation: pass WebSocketImpl (in Node 20, e.g. the ws package)");
    }
    if (ticketProvider !== undefined && typeof ticketProvider !== "function") {
      throw new TypeError("ticketProvider must be an async function");
    }
    backoffDelay(0, backoff, () => 0); // validates the backoff settings
    const { restartCapMs = DEFAULT_BACKOFF.restartCapMs, restartWindowMs = DEFAULT_BACKOFF.restartWindowMs } = backoff;
    if (!(restartCapMs >= 0 && restartWindowMs >= 0)) {
      throw new RangeError(`backoff needs restartCapMs >= 0 and restartWindowMs >= 0, got ${restartCapMs} and ${restartWindowMs}`);
    }
    this.#url = toWebSocketUrl(url);
    this.#WebSocket = WebSocketImpl;
    this.#protocols = protocols;
    this.#ticketProvider = ticketProvider;
    this.#backoff = { baseMs: backoff.baseMs, capMs: backoff.capMs, restartCapMs, restartWindowMs };
    this.#random = random;
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#dedupWindow = dedupWindow;
  }

  // -- read-only state ------------------------------------------------------

  /** "idle" | "connecting" | "open" | "waiting" | "stopped" */
  get state() {
    return this.#state;
  }

  /** True between a welcome and the next close. */
  get connected() {
    return this.#welcomed && this.#socket !== null && this.#socket.readyState === WS_OPEN;
  }

  /** The user from the last welcome ({id, username}), or null while not connected. */
  get user() {
    return this.#user;
  }

  /** How many reconnects were tried since the last welcome. */
  get attempt() {
    return this.#attempt;
  }

  /** How many duplicate messages were dropped. */
  get duplicates() {
    return this.#duplicates;
  }

  /** The subscribed topics, in subscription order. */
  get topics() {
    return [...this.#topics.keys()];
  }

  /**
   * The highest message id seen in `topic` (or the topic's last_id at subscription, or where a
   * `recent` replay starts), or null.
   */
  lastId(topic) {
    return this.#topics.get(topic)?.lastId ?? null;
  }

  // -- events ---------------------------------------------------------------

  /** Adds a listener; returns a function that removes it. */
  on(type, listener) {
    if (typeof listener !== "function") throw new TypeError("listener must be a function");
    let set = this.#listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  /**
   * The next `type` event for which `filter(event)` is true, within `timeoutMs`
   * (rejects with a WsClientError "timeout" otherwise).
   */
  waitFor(type, { filter = () => true, timeoutMs = this.#requestTimeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const remove = this.on(type, (event) => {
        if (!filter(event)) return;
        clearTimeout(timer);
        remove();
        resolve(event);
      });
      timer = setTimeout(() => {
        remove();
        reject(new WsClientError("timeout", `no ${type} event within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  #emit(type, event) {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(event);
      } catch (error) {
        rethrowLater(error);
      }
    }
  }

  // -- lifecycle --------------------------------------------------------------

  /** Starts connecting (and keeps reconnecting). Also restarts a stopped client. */
  connect() {
    if (this.#state === "connecting" || this.#state === "open" || this.#state === "waiting") return;
    this.#attempt = 0;
    this.#openSocket();
  }

  /**
   * Stops for good: closes the socket with 1000, cancels any retry, rejects
   * pending requests and emits `stopped`. Subscriptions are kept, so a later
   * `connect()` resumes them. Resolves when the socket has closed.
   */
  close() {
    this.#generation += 1; // cancels an attempt waiting for its ticket
    this.#clearTimers();
    const wasStopped = this.#state === "stopped";
    this.#state = "stopped";
    this.#welcomed = false;
    this.#user = null;
    this.#markTopicsIdle();
    this.#rejectWaiters(() => true, () => new WsClientError("stopped", "the client was closed"));
    if (!wasStopped) this.#emit("stopped", { code: 1000, reason: "closed by client", byClient: true });
    const socket = this.#socket;
    this.#socket = null;
    if (socket === null) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (event) => {
        clearTimeout(timer);
        socket.onclose = null;
        socket.onerror = () => {};
        this.#emit("close", { code: event?.code ?? 1006, reason: event?.reason ?? "", wasClean: !!event?.wasClean });
        resolve();
      };
      const timer = setTimeout(() => {
        if (typeof socket.terminate === "function") socket.terminate();
        done(undefined);
      }, 5000);
      socket.onopen = null;
      socket.onmessage = null;
      socket.onerror = () => {};
      socket.onclose = done;
      try {
        socket.close(1000, "client closed");
      } catch {
        done(undefined);
      }
    });
  }

  async #openSocket() {
    const generation = ++this.#generation;
    this.#state = "connecting";
    let ticket = null;
    if (this.#ticketProvider !== undefined) {
      try {
        ticket = await this.#ticketProvider();
      } catch (error) {
        if (generation !== this.#generation) return;
        this.#emitClientError("client_ticket_failed", `ticketProvider failed: ${error?.message ?? error}`, error);
        this.#afterDisconnect({ code: 0, reason: "ticket provider failed", wasClean: false });
        return;
      }
      if (generation !== this.#generation) return; // close() was called meanwhile
    }
    let socket;
    try {
      const url = withTicket(this.#url, ticket);
      socket = this.#protocols === undefined ? new this.#WebSocket(url) : new this.#WebSocket(url, this.#protocols);
    } catch (error) {
      this.#emitClientError("client_socket_failed", `could not create the WebSocket: ${error?.message ?? error}`, error);
      this.#afterDisconnect({ code: 0, reason: "socket creation failed", wasClean: false });
      return;
    }
    this.#socket = socket;
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = null;
      if (this.#socket !== socket || this.#welcomed) return;
      this.#emitClientError("client_connect_timeout", `no welcome within ${this.#connectTimeoutMs} ms`);
      this.#abandon(socket, { code: 0, reason: "connect timeout", wasClean: false });
    }, this.#connectTimeoutMs);
    this.#opened = false;
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      this.#opened = true;
      this.#emit("open", {});
    };
    socket.onmessage = (event) => {
      if (this.#socket === socket) this.#onFrame(event.data);
    };
    socket.onerror = () => {
      // Always followed by a close event, which carries the code.
    };
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#afterDisconnect({ code: event.code, reason: event.reason ?? "", wasClean: !!event.wasClean });
    };
  }

  /** Gives up on a socket without waiting for its close handshake. */
  #abandon(socket, info) {
    this.#socket = null;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = () => {};
    try {
      if (typeof socket.terminate === "function") socket.terminate();
      else socket.close(4000, info.reason);
    } catch {
      // Already closing.
    }
    this.#afterDisconnect(info);
  }

  #afterDisconnect(info) {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#welcomed = false;
    this.#user = null;
    this.#markTopicsIdle();
    this.#rejectWaiters(
      (waiter) => !waiter.persistent,
      () => new WsClientError("connection_lost", `the connection closed (${info.code}) before the reply`),
    );
    for (const waiter of this.#waiters) this.#disarm(waiter);
    if (info.code !== 0) this.#emit("close", info);
    if (this.#state === "stopped") return;
    if (TERMINAL_CLOSE_CODES.includes(info.code)) {
      this.#state = "stopped";
      this.#clearTimers();
      this.#rejectWaiters(() => true, () => new WsClientError("stopped", `the server closed with ${info.code}`));
      this.#emit("stopped", { code: info.code, reason: info.reason, byClient: false });
      return;
    }
    if (info.code === CLOSE_SERVICE_RESTART) this.#restartUntil = performance.now() + this.#backoff.restartWindowMs;
    // Code 0 is this client's own connect timeout: the server is there but slow.
    const serverAway = !this.#opened && info.code !== 0;
    const restarting = performance.now() < this.#restartUntil;
    const attempt = this.#attempt;
    this.#attempt += 1;
    const delayMs = backoffDelay(attempt, retryBackoff(this.#backoff, { serverAway, restarting }), this.#random);
    this.#state = "waiting";
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#state === "waiting") this.#openSocket();
    }, delayMs);
    this.#emit("reconnecting", { attempt, delayMs, code: info.code, reason: info.reason });
  }

  #clearTimers() {
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#connectTimer);
    this.#reconnectTimer = null;
    this.#connectTimer = null;
  }

  // -- frames in --------------------------------------------------------------

  #onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch (error) {
      this.#emitClientError("client_bad_json", "the server sent a frame that is not JSON", error);
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") {
      this.#emitClientError("client_bad_frame", "the server sent a frame without a string type");
      return;
    }
    this.#emit("frame", frame);
    switch (frame.type) {
      case "welcome":
        this.#onWelcome(frame);
        return;
      case "subscribed":
        this.#onSubscribed(frame);
        break;
      case "message":
        this.#onMessage(frame);
        return;
      case "more_history":
        this.#onMoreHistory(frame);
        break;
      case "error":
        this.#onError(frame);
        return;
      default:
        break;
    }
    this.#settleWaiters(frame);
    if (EVENT_FRAME_TYPES.has(frame.type)) this.#emit(frame.type, frame);
  }

  #onWelcome(frame) {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#welcomed = true;
    this.#state = "open";
    this.#attempt = 0;
    this.#restartUntil = -Infinity;
    this.#user = frame.user ?? null;
    for (const [topic, sub] of this.#topics) this.#sendSubscribe(topic, sub);
    this.#emit("welcome", frame);
  }

  #onSubscribed(frame) {
    const sub = this.#topics.get(frame.topic);
    if (sub === undefined) return;
    sub.status = "subscribed";
    const last = frame.last_id;
    if (!Number.isSafeInteger(last)) return;
    const recent = sub.recent;
    sub.recent = null; // asked once: later subscribes (reconnects) resume with since
    if (sub.lastId === null && recent !== null) {
      // The newest `recent` messages up to last_id are being replayed: resume from before them.
      const start = Math.max(0, last - recent);
      sub.lastId = start;
      sub.floor = Math.max(sub.floor, start);
    } else if (sub.lastId === null) {
      // Nothing seen yet: everything up to last_id predates this subscription.
      sub.lastId = last;
      sub.floor = Math.max(sub.floor, last);
    } else if (last < sub.lastId) {
      // The topic's history is older than what was seen: it was reset.
      sub.lastId = last;
      sub.floor = last;
      sub.seen.clear();
    }
  }

  #onMoreHistory(frame) {
    // The server holds the topic's live messages until a replay reaches the
    // newest one: continuing from the highest id seen loses and repeats nothing.
    const sub = this.#topics.get(frame.topic);
    if (sub === undefined || !this.connected) return;
    const since = sub.lastId ?? frame.since;
    if (!Number.isSafeInteger(since)) return;
    sub.ref = this.#nextRef();
    this.#socket.send(JSON.stringify({ type: "subscribe", topic: frame.topic, since, ref: sub.ref }));
  }

  #onMessage(frame) {
    const sub = this.#topics.get(frame.topic);
    if (sub === undefined) return; // a late delivery after unsubscribe
    const id = frame.id;
    if (!Number.isSafeInteger(id)) {
      this.#emitClientError("client_bad_frame", "a message frame without an integer id");
      return;
    }
    if (sub.lastId === null || id > sub.lastId) sub.lastId = id;
    if (id <= sub.floor || sub.seen.has(id)) {
      this.#duplicates += 1;
      this.#emit("duplicate", frame);
      return;
    }
    sub.seen.add(id);
    if (sub.seen.size > this.#dedupWindow) {
      for (const old of sub.seen) {
        if (sub.seen.size <= this.#dedupWindow) break;
        sub.seen.delete(old);
        sub.floor = Math.max(sub.floor, old);
      }
    }
    this.#emit("message", frame);
  }

  #onError(frame) {
    // An error frame echoing a request's `ref` fails that request at once;
    // anything else only reaches the `error` event.
    if (typeof frame.ref === "string") {
      for (const waiter of [...this.#waiters]) {
        if (waiter.ref() === frame.ref) {
          this.#finish(waiter);
          waiter.reject(new WsClientError(frame.code ?? "error", frame.detail ?? "server error", frame));
        }
      }
      // A refused subscribe is not repeated after a reconnect, unless the refusal was transient;
      // then the topic is kept (idle: the next subscribe() or reconnect sends it again).
      for (const [topic, sub] of this.#topics) {
        if (sub.ref !== frame.ref) continue;
        if (TRANSIENT_ERRORS.has(frame.code)) sub.status = "idle";
        else this.#topics.delete(topic);
      }
    }
    this.#emit("error", frame);
  }

  #emitClientError(code, detail, error = undefined) {
    this.#emit("error", { type: "error", code, detail, error });
  }

  // -- frames out -------------------------------------------------------------

  /**
   * Sends a raw frame (an object) if the connection is usable; returns
   * whether it was sent. The typed methods below are usually what you want.
   */
  send(frame) {
    if (!this.connected) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Subscribes to `topic` now and after every reconnect. `since` (optional)
   * asks for the stored messages with a greater id; `recent` (optional, for a
   * topic not followed yet) for its newest `recent` messages, to show history
   * on joining. Resolves with the `subscribed` frame (waiting for a connection
   * if there is none yet).
   */
  subscribe(topic, { since = undefined, recent = undefined } = {}) {
    if (typeof topic !== "string" || topic === "") return Promise.reject(new TypeError("topic is required"));
    if (recent !== undefined && !(Number.isSafeInteger(recent) && recent >= 0)) {
      return Promise.reject(new RangeError(`recent must be an integer >= 0, not ${recent}`));
    }
    if (recent !== undefined && since !== undefined) {
      return Promise.reject(new TypeError("give since or recent, not both"));
    }
    let sub = this.#topics.get(topic);
    if (sub !== undefined && sub.status === "subscribed" && since === undefined) {
      return Promise.resolve({ type: "subscribed", topic, last_id: sub.lastId });
    }
    if (sub === undefined) {
      sub = { lastId: null, floor: 0, seen: new Set(), status: "idle", recent: null };
      this.#topics.set(topic, sub);
    }
    if (recent !== undefined && recent > 0 && sub.lastId === null) sub.recent = recent;
    if (Number.isSafeInteger(since) && since >= 0 && (sub.lastId === null || since < sub.lastId)) {
      sub.lastId = since;
      sub.floor = Math.min(sub.floor, since);
    }
    const promise = this.#expect({
      topic,
      replyType: "subscribed",
      ref: () => this.#topics.get(topic)?.ref,
      persistent: true,
    });
    if (this.connected && (sub.status === "idle" || since !== undefined)) this.#sendSubscribe(topic, sub);
    else if (this.connected) this.#armAll((w) => w.persistent && w.topic === topic);
    return promise;
  }

  /**
   * Stops receiving `topic` and forgets its position. While connected, resolves with the server's
   * `unsubscribed` frame, or rejects with its error (`not_subscribed` if the server had no such
   * subscription); while not connected, resolves at once.
   */
  unsubscribe(topic) {
    this.#topics.delete(topic);
    this.#rejectWaiters(
      (w) => w.topic === topic && w.persistent,
      () => new WsClientError("unsubscribed", `unsubscribed from ${topic}`),
    );
    if (!this.connected) return Promise.resolve({ type: "unsubscribed", topic });
    return this.#request({ type: "unsubscribe", topic }, "unsubscribed");
  }

  /** Publishes `text` to `topic`; resolves with the ack ({type: "ack", topic, id, ref}). */
  publish(topic, text) {
    return this.#request({ type: "publish", topic, text }, "ack");
  }

  /** A protocol-level ping: resolves with the `pong` frame. */
  ping() {
    return this.#request({ type: "ping" }, "pong");
  }

  /** The authenticated user as the server sees it: resolves with the `whoami` frame ({user}). */
  whoami() {
    return this.#request({ type: "whoami" }, "whoami");
  }

  /**
   * Tells the other subscribers of `topic` that this user is typing. The server sends no reply
   * (and drops indicators within its throttle interval), so this returns the request's `ref`
   * (null when not connected): a refusal (say, `not_subscribed`) arrives as an `error` event
   * echoing it.
   */
  typing(topic) {
    if (!this.connected) return null;
    const ref = this.#nextRef();
    this.send({ type: "typing", topic, ref });
    return ref;
  }

  /**
   * One page of the users subscribed to `topic` right now: resolves with the presence frame
   * ({users: [...], next?, diffs?}). A long list comes in pages that each fit one frame: pass a
   * reply's `next` as `options.after` for the following page, or use `presenceAll`.
   */
  presence(topic, { after } = {}) {
    const frame = { type: "presence", topic };
    if (after !== undefined) frame.after = after;
    return this.#request(frame, "presence");
  }

  /** Every user subscribed to `topic`: follows the `next` cursors, at most `maxPages` requests. */
  async presenceAll(topic, { maxPages = 1000 } = {}) {
    const users = [];
    let after;
    for (let page = 0; page < maxPages; page += 1) {
      const reply = await this.presence(topic, after === undefined ? {} : { after });
      users.push(...reply.users);
      if (typeof reply.next !== "string") break;
      after = reply.next;
    }
    return users;
  }

  #sendSubscribe(topic, sub) {
    sub.ref = this.#nextRef();
    const frame = { type: "subscribe", topic, ref: sub.ref };
    if (sub.lastId !== null) frame.since = sub.lastId;
    else if (sub.recent !== null) frame.recent = sub.recent;
    sub.status = "pending";
    this.#socket.send(JSON.stringify(frame));
    this.#armAll((w) => w.persistent && w.topic === topic);
  }

  // -- request bookkeeping ----------------------------------------------------

  /** A ref unique to this client: a counter and a random part (refs of other tabs never collide). */
  #nextRef() {
    this.#refCounter += 1;
    return `${this.#refCounter.toString(36)}.${Math.floor(this.#random() * 2 ** 32).toString(36)}`;
  }

  /** Sends `frame` with a fresh ref; resolves with the `replyType` frame echoing it, rejects with its error. */
  #request(frame, replyType) {
    if (!this.connected) return Promise.reject(new WsClientError("not_connected", "not connected"));
    const ref = this.#nextRef();
    const promise = this.#expect({ replyType, ref: () => ref });
    this.send({ ...frame, ref });
    return promise;
  }

  #expect({ replyType, ref, persistent = false, topic = undefined }) {
    return new Promise((resolve, reject) => {
      const waiter = {
        replyType,
        ref,
        resolve,
        reject,
        persistent,
        topic,
        timer: null,
        armed: false,
      };
      this.#waiters.add(waiter);
      // Persistent waiters (subscribe) start their clock when the frame is sent.
      if (!persistent) this.#arm(waiter);
    });
  }

  #arm(waiter) {
    if (waiter.armed) return;
    waiter.armed = true;
    waiter.timer = setTimeout(() => {
      this.#finish(waiter);
      waiter.reject(new WsClientError("timeout", `no reply within ${this.#requestTimeoutMs} ms`));
    }, this.#requestTimeoutMs);
  }

  #armAll(predicate) {
    for (const waiter of this.#waiters) if (predicate(waiter)) this.#arm(waiter);
  }

  #disarm(waiter) {
    clearTimeout(waiter.timer);
    waiter.timer = null;
    waiter.armed = false;
  }

  #finish(waiter) {
    this.#disarm(waiter);
    this.#waiters.delete(waiter);
  }

  #settleWaiters(frame) {
    if (typeof frame.ref !== "string") return;
    for (const waiter of [...this.#waiters]) {
      if (waiter.replyType === frame.type && waiter.ref() === frame.ref) {
        this.#finish(waiter);
        waiter.resolve(frame);
      }
    }
  }

  #rejectWaiters(predicate, makeError) {
    for (const waiter of [...this.#waiters]) {
      if (predicate(waiter)) {
        this.#finish(waiter);
        waiter.reject(makeError());
      }
    }
  }

  #markTopicsIdle() {
    for (const sub of this.#topics.values()) sub.status = "idle";
  }
}
