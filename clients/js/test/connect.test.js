// Connecting to the live ws service: session cookie, ticketProvider, and the
// terminal close code 4401 (no credentials, a bad ticket, logging out).
// Environment: see ../test-support/live.js (WS_URL, WEB_URL, TEST_USERS).

import assert from "node:assert/strict";
import test from "node:test";

import { WsClient } from "../src/ws-client.js";
import { browserLikeSocket, liveEnv, login } from "../test-support/live.js";

const env = liveEnv();
const fast = { baseMs: 10, capMs: 40 };

function record(client, types) {
  const events = [];
  for (const type of types) client.on(type, (event) => events.push({ type, ...event }));
  return events;
}

test("connects with the session cookie; the welcome names the user", { timeout: 30000 }, async (t) => {
  const alice = await login(env, env.users[0]);
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: alice.cookie }),
    backoff: fast,
  });
  t.after(() => client.close());
  const events = record(client, ["open", "welcome"]);
  const welcome = client.waitFor("welcome");
  client.connect();
  const frame = await welcome;
  assert.equal(frame.user.username, env.users[0].username);
  assert.equal(typeof frame.connection_id, "string");
  assert.deepEqual(
    events.map((e) => e.type),
    ["open", "welcome"],
  );
  assert.equal(client.state, "open");
  assert.ok(client.connected);
  assert.deepEqual(client.user, frame.user);
});

test("connects with a one-time ticket from ticketProvider", { timeout: 30000 }, async (t) => {
  const bob = await login(env, env.users[1]);
  const created = [];
  let calls = 0;
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, created }),
    ticketProvider: async () => {
      calls += 1;
      return bob.ticket();
    },
    backoff: fast,
  });
  t.after(() => client.close());
  const welcome = client.waitFor("welcome");
  client.connect();
  assert.equal((await welcome).user.username, env.users[1].username);
  assert.equal(calls, 1);
  assert.equal(created.length, 1);
  assert.match(new URL(created[0]).searchParams.get("ticket"), /.{20,}/);
});

async function assertStopsWith4401(client, created) {
  const events = record(client, ["close", "reconnecting", "stopped"]);
  const stopped = client.waitFor("stopped", { timeoutMs: 10000 });
  client.connect();
  const event = await stopped;
  assert.equal(event.code, 4401);
  assert.equal(event.byClient, false);
  assert.equal(client.state, "stopped");
  // With a 10 ms backoff, a retry would have happened many times over.
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(created.length, 1, "the client retried after 4401");
  assert.deepEqual(
    events.map((e) => [e.type, e.code]),
    [
      ["close", 4401],
      ["stopped", 4401],
    ],
  );
}

test("without credentials the server closes with 4401 and the client stops", { timeout: 30000 }, async (t) => {
  const created = [];
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, created }),
    backoff: fast,
  });
  t.after(() => client.close());
  await assertStopsWith4401(client, created);
});

test("a ticket that is not valid gets 4401 and the client stops", { timeout: 30000 }, async (t) => {
  const created = [];
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, created }),
    ticketProvider: async () => "not-a-real-ticket-0123456789abcdef",
    backoff: fast,
  });
  t.after(() => client.close());
  await assertStopsWith4401(client, created);
});

test("logging out closes the socket with 4401 and the client stops retrying", { timeout: 30000 }, async (t) => {
  const carol = await login(env, env.users[2] ?? env.users[0]);
  const created = [];
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: carol.cookie, created }),
    backoff: fast,
  });
  t.after(() => client.close());
  const welcome = client.waitFor("welcome");
  client.connect();
  await welcome;
  const stopped = client.waitFor("stopped", { timeoutMs: 5000 });
  const started = Date.now();
  const logout = await carol.logout();
  assert.equal(logout.status, 302);
  const event = await stopped;
  assert.equal(event.code, 4401);
  assert.ok(Date.now() - started < 2500, `revocation took ${Date.now() - started} ms`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(created.length, 1, "the client retried after 4401");
});
