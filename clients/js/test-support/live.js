// Helpers for the Node tests against the live services (not a test file itself:
// `node --test test/` runs every .js under test/, so this lives outside it).
//
// Environment (set by tests/clients/test_js_client.py, or by hand):
//   WS_URL      the ws service's endpoint, e.g. ws://127.0.0.1:8001/ws/
//   WEB_URL     the web service's base URL, e.g. http://127.0.0.1:8000
//   TEST_USERS  JSON list of at least two existing users: [{"username": "...", "password": "..."}, ...]
//   WS_ORIGIN   the Origin header to send (default: the http(s) origin of WS_URL, which the ws
//               service trusts as its own; any other must be in DJANGO_CSRF_TRUSTED_ORIGINS)
//   CAPPED_WS_URL, REPLAY_MAX_MESSAGES  a second ws service whose WS_REPLAY_MAX_MESSAGES is that
//               (small) number, for the replay-continuation test

import net from "node:net";
import { WebSocket } from "ws";

/** The http(s) origin of a ws(s) URL: what a page served by the same server sends. */
export function pageOrigin(wsUrl) {
  const url = new URL(wsUrl);
  return `${url.protocol === "wss:" ? "https:" : "http:"}//${url.host}`;
}

export function liveEnv() {
  const missing = ["WS_URL", "WEB_URL", "TEST_USERS"].filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(`set ${missing.join(", ")} (see clients/js/test-support/live.js)`);
  }
  const users = JSON.parse(process.env.TEST_USERS);
  if (!Array.isArray(users) || users.length < 2 || !users.every((u) => u.username && u.password)) {
    throw new Error("TEST_USERS must be a JSON list of at least two {username, password} objects");
  }
  return {
    wsUrl: process.env.WS_URL,
    webUrl: process.env.WEB_URL.replace(/\/$/, ""),
    origin: process.env.WS_ORIGIN ?? pageOrigin(process.env.WS_URL),
    cappedWsUrl: process.env.CAPPED_WS_URL,
    replayMaxMessages: Number(process.env.REPLAY_MAX_MESSAGES),
    users,
  };
}

/** `name=value` pairs from Set-Cookie headers, merged into `jar`. */
function absorbCookies(jar, response) {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(";");
    const eq = pair.indexOf("=");
    jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
}

function cookieHeader(jar) {
  return [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
}

/**
 * Logs in through the web service's real login form (CSRF included) and
 * returns a session: its cookie header, and helpers for the JSON API.
 */
export async function login(env, { username, password }) {
  const jar = new Map();
  const form = await fetch(`${env.webUrl}/accounts/login/`, { redirect: "manual", signal: AbortSignal.timeout(10000) });
  if (form.status !== 200) throw new Error(`GET /accounts/login/: HTTP ${form.status}`);
  absorbCookies(jar, form);
  const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(await form.text())?.[1];
  if (!token) throw new Error("the login form has no CSRF token");
  const response = await fetch(`${env.webUrl}/accounts/login/`, {
    method: "POST",
    redirect: "manual",
    headers: {
      "Content-Type": "application/x-www-form-urlencoded",
      Cookie: cookieHeader(jar),
      Origin: env.webUrl,
      Referer: `${env.webUrl}/accounts/login/`,
    },
    body: new URLSearchParams({ username, password, csrfmiddlewaretoken: token }),
    signal: AbortSignal.timeout(10000),
  });
  await response.arrayBuffer();
  if (response.status !== 302) throw new Error(`login as ${username}: HTTP ${response.status}`);
  absorbCookies(jar, response);
  if (!jar.get("sessionid")) throw new Error(`login as ${username} set no session cookie`);

  const post = async (path, body = undefined) => {
    const headers = { Cookie: cookieHeader(jar), "X-CSRFToken": jar.get("csrftoken"), Origin: env.webUrl };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(`${env.webUrl}${path}`, {
      method: "POST",
      redirect: "manual",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    absorbCookies(jar, res);
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON (a redirect, an HTML error page)
    }
    return { status: res.status, json, text };
  };

  return {
    username,
    get cookie() {
      return `sessionid=${jar.get("sessionid")}`;
    },
    /** A fresh one-time ticket from POST /api/ws-ticket. */
    async ticket() {
      const res = await post("/api/ws-ticket");
      if (res.status !== 200) throw new Error(`POST /api/ws-ticket: HTTP ${res.status} ${res.text.slice(0, 200)}`);
      return res.json.ticket;
    },
    /** POST /api/topics/<topic>/messages: publishing over HTTP. */
    postMessage(topic, text) {
      return post(`/api/topics/${encodeURIComponent(topic)}/messages`, { text });
    },
    /** Logs out through the web service (POST /accounts/logout/). */
    logout() {
      return post("/accounts/logout/");
    },
  };
}

/**
 * A WebSocket constructor for WsClient that sends `Origin` and, optionally,
 * a Cookie header, as a browser would; it records every frame sent.
 */
export function browserLikeSocket({ origin, cookie = undefined, sent = undefined, created = undefined }) {
  return class BrowserLikeSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { origin, headers: cookie ? { Cookie: cookie } : {}, handshakeTimeout: 10000 });
      created?.push(url);
    }

    send(data, ...rest) {
      sent?.push(JSON.parse(data));
      return super.send(data, ...rest);
    }
  };
}

/**
 * A TCP relay in front of the ws service. `cut()` destroys every relayed
 * connection and refuses new ones (a network outage, as the client sees it:
 * close 1006 and failed attempts); `restore()` relays again.
 */
export class Outage {
  #server;
  #sockets = new Set();
  #down = false;
  refused = 0;

  constructor(targetUrl) {
    const target = new URL(targetUrl);
    this.targetHost = target.hostname;
    this.targetPort = Number(target.port);
    this.path = target.pathname;
    this.#server = net.createServer((client) => this.#relay(client));
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", resolve);
    });
    this.url = `ws://127.0.0.1:${this.#server.address().port}${this.path}`;
    return this;
  }

  #relay(client) {
    if (this.#down) {
      this.refused += 1;
      client.destroy();
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  }

  cut() {
    this.#down = true;
    for (const socket of this.#sockets) socket.destroy();
  }

  restore() {
    this.#down = false;
  }

  async stop() {
    this.cut();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** Resolves when `predicate()` is true, polling every 20 ms; rejects after `timeoutMs`. */
export async function until(predicate, { timeoutMs = 10000, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** A topic name no other test run uses. */
export function uniqueRoom(prefix) {
  return `room.${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
}
