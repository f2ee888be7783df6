// Replies and errors matched by ref on the live ws service: every request
// carries a ref unique to the client, and a server error on each request
// type fails that request at once (not by timeout), even with requests of the
// same type to other topics in flight. Environment: see ../test-support/live.js.

import assert from "node:assert/strict";
import test from "node:test";

import { WsClient } from "../src/ws-client.js";
import { browserLikeSocket, liveEnv, login, uniqueRoom, until } from "../test-support/live.js";

const env = liveEnv();
const REQUEST_TIMEOUT_MS = 8000;
// A refusal must arrive as its error frame, well before the request would time out.
const FAST_MS = REQUEST_TIMEOUT_MS / 4;

/** A connected client of `user` recording the frames it sends and the errors it gets; closed when the test ends. */
async function connected(t, user) {
  const session = await login(env, user);
  const sent = [];
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: session.cookie, sent }),
    backoff: { baseMs: 50, capMs: 500 },
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
  });
  t.after(() => client.close());
  const errors = [];
  client.on("error", (e) => errors.push(e));
  const welcome = client.waitFor("welcome");
  client.connect();
  await welcome;
  return { client, sent, errors };
}

/** Asserts that `promise` rejects fast with the server error `code`, whose frame echoes a ref; returns the frame. */
async function refused(promise, code) {
  const started = Date.now();
  let frame = null;
  await assert.rejects(promise, (error) => {
    assert.equal(error.code, code);
    assert.equal(error.frame?.type, "error");
    assert.equal(typeof error.frame.ref, "string", "the error echoes the request's ref");
    frame = error.frame;
    return true;
  });
  assert.ok(Date.now() - started < FAST_MS, `refused by timeout, not by its ${code} error frame`);
  return frame;
}

/** The outcome of a settled promise: the value, or the error's code. */
const outcome = (result) => (result.status === "fulfilled" ? result.value : result.reason.code);

test("every request carries its own ref, and a server error on each request type fails that request", {
  timeout: 60000,
}, async (t) => {
  const a = await connected(t, env.users[0]);
  const other = await connected(t, env.users[1]);
  const theirs = `user.${other.client.user.id}`;
  const room = uniqueRoom("err");

  await refused(a.client.subscribe(theirs), "forbidden");
  assert.ok(!a.client.topics.includes(theirs), "a refused subscribe is not repeated after a reconnect");
  await refused(a.client.subscribe("Not A Topic"), "bad_topic");
  await refused(a.client.unsubscribe(room), "not_subscribed");
  await refused(a.client.publish(room, ""), "bad_message");
  await refused(a.client.publish(theirs, "not mine"), "forbidden");
  const typingRef = a.client.typing(room);
  assert.equal(typeof typingRef, "string");
  await until(() => a.errors.some((e) => e.ref === typingRef), { timeoutMs: FAST_MS, what: "typing's error" });
  assert.equal(a.errors.find((e) => e.ref === typingRef).code, "not_subscribed");

  assert.equal((await a.client.whoami()).user.id, a.client.user.id);
  assert.equal((await a.client.ping()).type, "pong");
  assert.ok(a.client.connected, "errors leave the connection open");

  // Every request sent carried a ref, none repeated; every error echoed one of them.
  const refs = a.sent.map((frame) => frame.ref);
  assert.equal(refs.length, 8, JSON.stringify(a.sent));
  assert.ok(refs.every((ref) => typeof ref === "string" && ref.length <= 64), JSON.stringify(a.sent));
  assert.equal(new Set(refs).size, refs.length, "a ref was reused");
  assert.ok(a.errors.every((e) => refs.includes(e.ref)), JSON.stringify(a.errors));
});

test("concurrent requests of one type to different topics each settle with their own reply or error", {
  timeout: 60000,
}, async (t) => {
  const a = await connected(t, env.users[0]);
  const b = await connected(t, env.users[1]);
  const theirs = `user.${b.client.user.id}`;
  const crowded = uniqueRoom("crowded");
  const quiet = uniqueRoom("quiet");
  await b.client.subscribe(crowded);

  const subscribed = await Promise.allSettled([
    a.client.subscribe(crowded),
    a.client.subscribe(theirs),
    a.client.subscribe(quiet),
  ]);
  assert.deepEqual(
    subscribed.map((r) => (r.status === "fulfilled" ? [r.value.topic, r.value.last_id] : r.reason.code)),
    [[crowded, 0], "forbidden", [quiet, 0]],
  );
  assert.deepEqual(a.client.topics.sort(), [crowded, quiet].sort());

  const published = await Promise.allSettled([
    a.client.publish(crowded, "c1"),
    a.client.publish(theirs, "no"),
    a.client.publish(quiet, "q1"),
    a.client.publish(crowded, "c2"),
  ]);
  assert.deepEqual(
    published.map((r) => (r.status === "fulfilled" ? [r.value.topic, r.value.id] : r.reason.code)),
    [[crowded, 1], "forbidden", [quiet, 1], [crowded, 2]],
  );

  const left = await Promise.allSettled([a.client.unsubscribe(uniqueRoom("never")), a.client.unsubscribe(quiet)]);
  assert.equal(outcome(left[0]), "not_subscribed");
  assert.equal(outcome(left[1]).topic, quiet);
  assert.deepEqual(a.client.topics, [crowded]);

  // typing has no reply: only the refused one comes back, echoing its own ref.
  const seen = b.client.waitFor("typing", { filter: (e) => e.topic === crowded, timeoutMs: FAST_MS });
  const okRef = a.client.typing(crowded);
  const refusedRef = a.client.typing(quiet);
  await until(() => a.errors.some((e) => e.ref === refusedRef), { timeoutMs: FAST_MS, what: "typing's error" });
  await seen;
  assert.equal((await a.client.ping()).type, "pong"); // answered after both typing frames
  assert.ok(!a.errors.some((e) => e.ref === okRef), "the accepted typing got an error");
  assert.deepEqual(
    a.errors.filter((e) => e.ref === okRef || e.ref === refusedRef).map((e) => e.code),
    ["not_subscribed"],
  );
});

test("a subscribe refused for a transient reason (rate_limited) keeps its topic and can be sent again", {
  timeout: 30000,
}, async (t) => {
  const a = await connected(t, env.users[2]);
  const room = uniqueRoom("transient");
  for (let i = 0; i < 70; i += 1) a.client.send({ type: "ping" }); // over the burst of 40 frames
  await refused(a.client.subscribe(room), "rate_limited");
  assert.deepEqual(a.client.topics, [room], "a transient refusal keeps the topic");
  await new Promise((resolve) => setTimeout(resolve, 2500)); // the bucket refills
  const reply = await a.client.subscribe(room);
  assert.equal(reply.topic, room);
  assert.ok(a.client.connected);
});
