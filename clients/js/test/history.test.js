// A replay longer than the server's limit (WS_REPLAY_MAX_MESSAGES) ends with
// more_history; the client continues with `since` until it has caught up.
// Environment: see ../test-support/live.js (CAPPED_WS_URL, REPLAY_MAX_MESSAGES).

import assert from "node:assert/strict";
import test from "node:test";

import { WsClient } from "../src/ws-client.js";
import { browserLikeSocket, liveEnv, login, pageOrigin, uniqueRoom, until } from "../test-support/live.js";

const env = liveEnv();

async function connected(t, user, url) {
  const session = await login(env, user);
  const client = new WsClient({
    url,
    WebSocketImpl: browserLikeSocket({ origin: pageOrigin(url), cookie: session.cookie }),
    backoff: { baseMs: 50, capMs: 500 },
    requestTimeoutMs: 5000,
  });
  t.after(() => client.close());
  const welcome = client.waitFor("welcome");
  client.connect();
  await welcome;
  return client;
}

test("a capped replay is continued until caught up: every message once, in order, then live", {
  timeout: 30000,
}, async (t) => {
  assert.ok(env.cappedWsUrl, "CAPPED_WS_URL is not set (tests/clients/test_js_client.py sets it)");
  const cap = env.replayMaxMessages;
  assert.ok(Number.isSafeInteger(cap) && cap > 0, "REPLAY_MAX_MESSAGES must be a positive integer");
  const room = uniqueRoom("history");
  const total = cap * 2 + 2;
  const publisher = await connected(t, env.users[0], env.cappedWsUrl);
  for (let i = 1; i <= total; i += 1) await publisher.publish(room, `m${i}`);

  const reader = await connected(t, env.users[1], env.cappedWsUrl);
  const ids = [];
  let more = 0;
  reader.on("message", (m) => m.topic === room && ids.push(m.id));
  reader.on("more_history", (f) => f.topic === room && (more += 1));
  await reader.subscribe(room, { since: 0 });
  await until(() => ids.length >= total, { what: `${total} replayed messages` });
  assert.equal(more, 2, "two more_history frames: the replay came in three parts");

  await publisher.publish(room, "live");
  await until(() => ids.length >= total + 1, { what: "the live message after the replay" });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(ids, Array.from({ length: total + 1 }, (_, i) => i + 1));
  assert.equal(reader.duplicates, 0);
});
