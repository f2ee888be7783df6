// Presence on the live ws service (docs/presence.md): presence replies and
// presence_diff events, paging, and presence errors matched by ref. Run by
// tests/clients/test_js_client_presence.py (it sets CROWD_TOPIC and CROWD_SIZE);
// deleted with the presence feature. Environment: see ../test-support/live.js.

import assert from "node:assert/strict";
import test from "node:test";

import { WsClient } from "../src/ws-client.js";
import { browserLikeSocket, liveEnv, login, uniqueRoom, until } from "../test-support/live.js";

const env = liveEnv();
const REQUEST_TIMEOUT_MS = 8000;
// A refusal must arrive as its error frame, well before the request would time out.
const FAST_MS = REQUEST_TIMEOUT_MS / 4;

/** A connected client of `user`, logged in over HTTP; closed when the test ends. */
async function connected(t, user) {
  const session = await login(env, user);
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: session.cookie }),
    backoff: { baseMs: 50, capMs: 500 },
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
  });
  t.after(() => client.close());
  const welcome = client.waitFor("welcome");
  client.connect();
  await welcome;
  return { client };
}

/** Asserts that `promise` rejects fast with the server error `code`, whose frame echoes a ref. */
async function refused(promise, code) {
  const started = Date.now();
  await assert.rejects(promise, (error) => {
    assert.equal(error.code, code);
    assert.equal(error.frame?.type, "error");
    assert.equal(typeof error.frame.ref, "string", "the error echoes the request's ref");
    return true;
  });
  assert.ok(Date.now() - started < FAST_MS, `refused by timeout, not by its ${code} error frame`);
}

/** The outcome of a settled promise: the value, or the error's code. */
const outcome = (result) => (result.status === "fulfilled" ? result.value : result.reason.code);

test("presence lists the subscribers; presence_diff reports joins and leaves", { timeout: 30000 }, async (t) => {
  const room = uniqueRoom("presence");
  const a = await connected(t, env.users[0]);
  const b = await connected(t, env.users[1]);
  const diffs = [];
  a.client.on("presence_diff", (d) => diffs.push(d));
  await a.client.subscribe(room);
  const before = await a.client.presence(room);
  assert.deepEqual(
    before.users.map((u) => u.username),
    [env.users[0].username],
  );

  await b.client.subscribe(room);
  await until(() => diffs.some((d) => d.joined.some((u) => u.username === env.users[1].username)), {
    what: "a presence_diff with the second user joining",
  });
  const both = await a.client.presence(room);
  assert.deepEqual(both.users.map((u) => u.username).sort(), [env.users[0].username, env.users[1].username].sort());

  await b.client.unsubscribe(room);
  await until(() => diffs.some((d) => d.left.some((u) => u.username === env.users[1].username)), {
    what: "a presence_diff with the second user leaving",
  });
  assert.ok(diffs.every((d) => d.topic === room));
});

test("presenceAll follows the pages of a topic too large for one frame", { timeout: 30000 }, async (t) => {
  const crowd = process.env.CROWD_TOPIC;
  const size = Number(process.env.CROWD_SIZE);
  assert.ok(crowd && size > 0, "CROWD_TOPIC and CROWD_SIZE come from tests/clients/test_js_client_presence.py");
  const a = await connected(t, env.users[0]);
  const first = await a.client.presence(crowd);
  assert.equal(typeof first.next, "string");
  assert.ok(first.users.length < size);
  const all = await a.client.presenceAll(crowd);
  assert.equal(all.length, size);
  assert.deepEqual(all.slice(0, first.users.length), first.users);
  assert.equal(new Set(all.map((u) => u.id)).size, size);
});

test("a presence request refused by the server fails at once with its error", { timeout: 30000 }, async (t) => {
  const a = await connected(t, env.users[0]);
  const other = await connected(t, env.users[1]);
  await refused(a.client.presence(`user.${other.client.user.id}`), "forbidden");
  await refused(a.client.presence(uniqueRoom("err"), { after: "not a cursor" }), "bad_message");
  assert.ok(a.client.connected, "errors leave the connection open");
});

test("concurrent presence requests to different topics each settle with their own reply or error", {
  timeout: 30000,
}, async (t) => {
  const a = await connected(t, env.users[0]);
  const b = await connected(t, env.users[1]);
  const theirs = `user.${b.client.user.id}`;
  const crowded = uniqueRoom("crowded");
  const quiet = uniqueRoom("quiet");
  await b.client.subscribe(crowded);
  await a.client.subscribe(crowded);
  await a.client.subscribe(quiet);

  const presence = await Promise.allSettled([
    a.client.presence(crowded),
    a.client.presence(theirs),
    a.client.presence(quiet),
  ]);
  assert.equal(outcome(presence[1]), "forbidden");
  const ids = (r) => outcome(r).users.map((u) => u.id).sort();
  assert.deepEqual(ids(presence[0]), [a.client.user.id, b.client.user.id].sort());
  assert.deepEqual(ids(presence[2]), [a.client.user.id]);
  assert.deepEqual(
    [presence[0], presence[2]].map((r) => r.value.topic),
    [crowded, quiet],
  );
});
