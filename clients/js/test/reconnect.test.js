// Reconnecting to the live ws service. The client reaches the server through
// a TCP relay (Outage in ../test-support/live.js) that the test can cut: every
// relayed connection is destroyed and new ones are refused until restore(),
// which is what a network outage or a crashed proxy looks like to a client.
// The server behind it is the real one; nothing about it is simulated.
// Environment: see ../test-support/live.js (WS_URL, WEB_URL, TEST_USERS).
// Sockets through the relay send the relay's own origin: the relay passes the
// Host header through unchanged, and the server trusts only exact origins.

import assert from "node:assert/strict";
import test from "node:test";

import { WsClient } from "../src/ws-client.js";
import { Outage, browserLikeSocket, liveEnv, login, pageOrigin, uniqueRoom, until } from "../test-support/live.js";

const env = liveEnv();

async function outage(t) {
  const relay = await new Outage(env.wsUrl).start();
  t.after(() => relay.stop());
  return relay;
}

test("after an outage the client reconnects with backoff, a new ticket, and since: it gets exactly what it missed", {
  timeout: 60000,
}, async (t) => {
  const room = uniqueRoom("recover");
  const relay = await outage(t);
  const alice = await login(env, env.users[0]);
  const bob = await login(env, env.users[1]);

  const tickets = [];
  const sent = [];
  const backoff = { baseMs: 50, capMs: 400 };
  const a = new WsClient({
    url: relay.url,
    WebSocketImpl: browserLikeSocket({ origin: pageOrigin(relay.url), sent }),
    ticketProvider: async () => {
      const ticket = await alice.ticket();
      tickets.push(ticket);
      return ticket;
    },
    backoff,
  });
  t.after(() => a.close());
  const b = new WsClient({ url: env.wsUrl, WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: bob.cookie }) });
  t.after(() => b.close());

  const received = [];
  const retries = [];
  const closes = [];
  a.on("message", (m) => received.push(m));
  a.on("reconnecting", (r) => retries.push(r));
  a.on("close", (c) => closes.push(c));
  const welcomes = [a.waitFor("welcome"), b.waitFor("welcome")];
  a.connect();
  b.connect();
  await Promise.all(welcomes);
  await Promise.all([a.subscribe(room), b.subscribe(room)]);
  const first = await b.publish(room, "before the outage");
  await until(() => received.length === 1, { what: "the first message" });

  relay.cut();
  await until(() => retries.length >= 3, { what: "three scheduled reconnects while the relay refuses" });
  assert.ok(closes.length >= 1 && closes[0].code === 1006, `first close: ${JSON.stringify(closes[0])}`);
  assert.equal(a.connected, false);

  // Published while alice is away: over WebSocket by bob, and over HTTP.
  const missedOverWs = [await b.publish(room, "missed 1"), await b.publish(room, "missed 2")];
  const overHttp = await bob.postMessage(room, "missed over HTTP");
  assert.equal(overHttp.status, 201, overHttp.text);

  const welcomed = a.waitFor("welcome", { timeoutMs: 10000 });
  relay.restore();
  await welcomed;
  assert.equal(a.attempt, 0, "attempts reset after a welcome");
  await until(() => received.length === 4, { what: "the three missed messages" });
  await new Promise((resolve) => setTimeout(resolve, 200)); // anything extra would show up now

  assert.deepEqual(
    received.map((m) => [m.id, m.text]),
    [
      [first.id, "before the outage"],
      [missedOverWs[0].id, "missed 1"],
      [missedOverWs[1].id, "missed 2"],
      [overHttp.json.id, "missed over HTTP"],
    ],
  );
  assert.equal(a.lastId(room), overHttp.json.id);
  const subscribes = sent.filter((f) => f.type === "subscribe");
  const { ref, ...resubscribe } = subscribes.at(-1);
  assert.deepEqual(resubscribe, { type: "subscribe", topic: room, since: first.id });
  assert.equal(typeof ref, "string");
  assert.equal(new Set(subscribes.map((f) => f.ref)).size, subscribes.length, "each subscribe has its own ref");

  // Each delay was drawn from [0, min(cap, base * 2 ** attempt)], attempts counting up from 0.
  retries.forEach((r, i) => {
    assert.equal(r.attempt, i);
    assert.ok(r.delayMs >= 0 && r.delayMs <= Math.min(backoff.capMs, backoff.baseMs * 2 ** i), JSON.stringify(r));
  });
  // One-time tickets: a fresh one for every attempt that reached the provider.
  assert.equal(tickets.length, retries.length + 1);
  assert.equal(new Set(tickets).size, tickets.length);
  assert.ok(relay.refused >= retries.length - 1);
});

test("retry delays follow the backoff exactly with a fixed random(), and reset after a welcome", {
  timeout: 60000,
}, async (t) => {
  const relay = await outage(t);
  const alice = await login(env, env.users[0]);
  const created = [];
  const retries = [];
  const a = new WsClient({
    url: relay.url,
    WebSocketImpl: browserLikeSocket({ origin: pageOrigin(relay.url), cookie: alice.cookie, created }),
    backoff: { baseMs: 40, capMs: 300 },
    random: () => 0.5,
  });
  t.after(() => a.close());
  a.on("reconnecting", (r) => retries.push(r));
  const welcome = a.waitFor("welcome");
  a.connect();
  await welcome;

  relay.cut();
  await until(() => retries.length >= 6, { what: "six scheduled reconnects" });
  const welcomed = a.waitFor("welcome", { timeoutMs: 10000 });
  relay.restore();
  await welcomed;
  // random() = 0.5: half of min(300, 40 * 2 ** attempt).
  const expected = [20, 40, 80, 150, 150, 150];
  assert.deepEqual(
    retries.slice(0, 6).map((r) => [r.attempt, r.delayMs]),
    expected.map((delay, attempt) => [attempt, delay]),
  );
  const before = retries.length;

  relay.cut();
  await until(() => retries.length > before, { what: "a reconnect after the second cut" });
  assert.deepEqual(
    [retries[before].attempt, retries[before].delayMs],
    [0, 20],
  );
  const again = a.waitFor("welcome", { timeoutMs: 10000 });
  relay.restore();
  await again;
  assert.ok(created.length >= 8);
});

test("close() while waiting to retry stops for good", { timeout: 30000 }, async (t) => {
  const relay = await outage(t);
  const alice = await login(env, env.users[0]);
  const created = [];
  const a = new WsClient({
    url: relay.url,
    WebSocketImpl: browserLikeSocket({ origin: pageOrigin(relay.url), cookie: alice.cookie, created }),
    backoff: { baseMs: 20, capMs: 40 },
  });
  const welcome = a.waitFor("welcome");
  a.connect();
  await welcome;
  const subscribed = a.subscribe(uniqueRoom("close"));
  await subscribed;
  relay.cut();
  await a.waitFor("reconnecting");
  const pending = a.subscribe(uniqueRoom("pending"));
  const stopped = a.waitFor("stopped");
  await a.close();
  assert.equal((await stopped).byClient, true);
  await assert.rejects(pending, { code: "stopped" });
  const count = created.length;
  relay.restore();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(created.length, count, "no attempt after close()");
  assert.equal(a.state, "stopped");
});

test("subscribe with recent shows the newest messages; a reconnect resumes with since, repeating none", {
  timeout: 60000,
}, async (t) => {
  const room = uniqueRoom("recent");
  const relay = await outage(t);
  const alice = await login(env, env.users[0]);
  const bob = await login(env, env.users[1]);
  const sent = [];
  const a = new WsClient({
    url: relay.url,
    WebSocketImpl: browserLikeSocket({ origin: pageOrigin(relay.url), sent }),
    ticketProvider: () => alice.ticket(),
    backoff: { baseMs: 50, capMs: 400 },
  });
  t.after(() => a.close());
  const b = new WsClient({ url: env.wsUrl, WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: bob.cookie }) });
  t.after(() => b.close());
  const welcomes = [a.waitFor("welcome"), b.waitFor("welcome")];
  a.connect();
  b.connect();
  await Promise.all(welcomes);
  for (let i = 1; i <= 5; i += 1) await b.publish(room, `old ${i}`);

  const received = [];
  a.on("message", (m) => m.topic === room && received.push(m.text));
  const subscribed = await a.subscribe(room, { recent: 3 });
  assert.equal(subscribed.last_id, 5);
  await until(() => received.length === 3, { what: "the three newest messages" });
  assert.deepEqual(received, ["old 3", "old 4", "old 5"]);
  assert.equal(a.lastId(room), 5);

  relay.cut();
  await until(() => !a.connected, { what: "the cut" });
  await b.publish(room, "missed");
  const welcomed = a.waitFor("welcome", { timeoutMs: 10000 });
  relay.restore();
  await welcomed;
  await until(() => received.length === 4, { what: "the missed message" });
  await b.publish(room, "live");
  await until(() => received.length === 5, { what: "the live message" });
  await new Promise((resolve) => setTimeout(resolve, 200)); // anything extra would show up now
  assert.deepEqual(received, ["old 3", "old 4", "old 5", "missed", "live"]);
  assert.equal(a.duplicates, 0);
  const subscribes = sent.filter((f) => f.type === "subscribe").map(({ ref, ...frame }) => frame);
  assert.deepEqual(subscribes, [
    { type: "subscribe", topic: room, recent: 3 },
    { type: "subscribe", topic: room, since: 5 },
  ]);

  await assert.rejects(a.subscribe(uniqueRoom("bad"), { recent: -1 }), RangeError);
  await assert.rejects(a.subscribe(uniqueRoom("bad"), { recent: 2, since: 0 }), TypeError);
});
