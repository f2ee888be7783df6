// Topics on the live ws service: subscribe, publish with acks correlated by
// ref, delivery to other connections, history, de-duplication.
// Environment: see ../test-support/live.js (WS_URL, WEB_URL, TEST_USERS).

import assert from "node:assert/strict";
import test from "node:test";

import { WsClient } from "../src/ws-client.js";
import { browserLikeSocket, liveEnv, login, uniqueRoom, until } from "../test-support/live.js";

const env = liveEnv();

/** A connected client of `user`, logged in over HTTP; closed when the test ends. */
async function connected(t, user, { sent = undefined, requestTimeoutMs = 5000 } = {}) {
  const session = await login(env, user);
  const client = new WsClient({
    url: env.wsUrl,
    WebSocketImpl: browserLikeSocket({ origin: env.origin, cookie: session.cookie, sent }),
    backoff: { baseMs: 50, capMs: 500 },
    requestTimeoutMs,
  });
  t.after(() => client.close());
  const messages = [];
  client.on("message", (m) => messages.push(m));
  const welcome = client.waitFor("welcome");
  client.connect();
  await welcome;
  return { client, session, messages };
}

const texts = (messages, topic) => messages.filter((m) => m.topic === topic).map((m) => m.text);

test("publish resolves with the ack of its ref; every subscriber gets each message once, in order", {
  timeout: 30000,
}, async (t) => {
  const room = uniqueRoom("pub");
  const a = await connected(t, env.users[0]);
  const b = await connected(t, env.users[1]);
  const [subA, subB] = await Promise.all([a.client.subscribe(room), b.client.subscribe(room)]);
  const { ref, ...reply } = subA;
  assert.deepEqual(reply, { type: "subscribed", topic: room, last_id: 0 });
  assert.equal(typeof ref, "string", "the reply echoes the subscribe's ref");
  assert.equal(subB.last_id, 0);

  const acks = await Promise.all(["one", "two", "three"].map((text) => a.client.publish(room, text)));
  assert.deepEqual(
    acks.map((ack) => [ack.type, ack.topic, ack.id]),
    [
      ["ack", room, 1],
      ["ack", room, 2],
      ["ack", room, 3],
    ],
  );
  assert.equal(new Set(acks.map((ack) => ack.ref)).size, 3, "each publish has its own ref");

  await until(() => texts(b.messages, room).length >= 3 && texts(a.messages, room).length >= 3, {
    what: "three messages on both connections",
  });
  for (const { messages } of [a, b]) {
    const mine = messages.filter((m) => m.topic === room);
    assert.deepEqual(
      mine.map((m) => [m.id, m.text, m.author.username]),
      [
        [1, "one", env.users[0].username],
        [2, "two", env.users[0].username],
        [3, "three", env.users[0].username],
      ],
    );
    assert.ok(mine.every((m) => !Number.isNaN(Date.parse(m.created_at))));
  }
  assert.equal(b.client.lastId(room), 3);

  // Publishing does not need a subscription, and an unsubscribed topic delivers nothing more.
  await b.client.unsubscribe(room);
  await a.client.publish(room, "four");
  await until(() => texts(a.messages, room).length === 4, { what: "the fourth message on the publisher" });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(texts(b.messages, room), ["one", "two", "three"]);
});

test("a replayed message is emitted once; subscribe with since replays history", { timeout: 30000 }, async (t) => {
  const room = uniqueRoom("dedup");
  const sent = [];
  const a = await connected(t, env.users[0], { sent });
  const b = await connected(t, env.users[1]);
  const duplicates = [];
  a.client.on("duplicate", (m) => duplicates.push(m));
  await a.client.subscribe(room);
  for (const text of ["m1", "m2", "m3"]) await b.client.publish(room, text);
  await until(() => texts(a.messages, room).length === 3, { what: "three messages" });

  // Ask the real server to replay everything again on the same connection:
  // it sends messages 1-3 a second time, and the client must not re-emit them.
  const subscribed = a.client.waitFor("subscribed", { filter: (f) => f.topic === room });
  assert.ok(a.client.send({ type: "subscribe", topic: room, since: 0 }));
  assert.equal((await subscribed).last_id, 3);
  await until(() => duplicates.length === 3, { what: "three duplicates dropped" });
  assert.deepEqual(
    duplicates.map((m) => m.id),
    [1, 2, 3],
  );
  assert.equal(a.client.duplicates, 3);
  await b.client.publish(room, "m4");
  await until(() => texts(a.messages, room).length === 4, { what: "the fourth message" });
  assert.deepEqual(texts(a.messages, room), ["m1", "m2", "m3", "m4"]);

  // A new subscriber asking for history since 1 gets 2..4 in order, then live ones.
  const c = await connected(t, env.users[1]);
  const sub = await c.client.subscribe(room, { since: 1 });
  assert.equal(sub.last_id, 4);
  await until(() => texts(c.messages, room).length === 3, { what: "the replay" });
  assert.deepEqual(
    c.messages.map((m) => m.id),
    [2, 3, 4],
  );
  assert.equal(c.client.lastId(room), 4);
  assert.deepEqual(
    sent.filter((f) => f.type === "subscribe").map((f) => f.since),
    [undefined, 0],
  );
});

// A refused publish fails at once with the error's code: the server echoes
// the publish's ref in its error frame (docs/protocol.md).
test("server errors reach the error event and fail the publish they answer", { timeout: 30000 }, async (t) => {
  const a = await connected(t, env.users[0], { requestTimeoutMs: 5000 });
  const errors = [];
  a.client.on("error", (e) => errors.push(e));
  const theirs = `user.${(await connected(t, env.users[1])).client.user.id}`;
  const started = Date.now();
  await assert.rejects(a.client.publish(theirs, "not mine"), (error) => {
    assert.equal(error.code, "forbidden");
    assert.equal(error.frame.type, "error");
    assert.equal(typeof error.frame.ref, "string");
    return true;
  });
  assert.ok(Date.now() - started < 4000, "the publish failed by timeout, not by its error frame");
  assert.deepEqual(
    errors.map((e) => e.code),
    ["forbidden"],
  );
  await assert.rejects(a.client.publish("room.x", ""), { code: "bad_message" });
  a.client.send({ type: "publish", topic: "Not A Topic", text: "x" });
  await until(() => errors.some((e) => e.code === "bad_topic"), { what: "a bad_topic error frame" });
  assert.ok(a.client.connected, "errors leave the connection open");
});
