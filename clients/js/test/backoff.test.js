// Pure tests of the client: backoff bounds, URL handling, the event API,
// argument checks. No network.

import assert from "node:assert/strict";
import test from "node:test";

import { DEFAULT_BACKOFF, WsClient, WsClientError, backoffDelay, toWebSocketUrl } from "../src/ws-client.js";

const backoff = { baseMs: 100, capMs: 5000 };

test("the delay is random() times min(cap, base * 2 ** attempt)", () => {
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** attempt);
    assert.equal(backoffDelay(attempt, backoff, () => 0), 0);
    assert.equal(backoffDelay(attempt, backoff, () => 1), ceiling);
    assert.equal(backoffDelay(attempt, backoff, () => 0.25), 0.25 * ceiling);
  }
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffDelay(attempt, backoff, () => 1)),
    [100, 200, 400, 800, 1600, 3200, 5000, 5000],
  );
});

test("full jitter stays within [0, ceiling) with Math.random", () => {
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** attempt);
    const delays = Array.from({ length: 500 }, () => backoffDelay(attempt, backoff));
    assert.ok(delays.every((d) => d >= 0 && d < ceiling), `attempt ${attempt}: a delay outside [0, ${ceiling})`);
    // Jitter spreads the delays: not all in one half of the range.
    assert.ok(delays.some((d) => d < ceiling / 2) && delays.some((d) => d >= ceiling / 2));
  }
});

test("huge attempt numbers stay at the cap (no Infinity or NaN)", () => {
  for (const attempt of [60, 64, 1023, 1024, 1e6]) {
    assert.equal(backoffDelay(attempt, backoff, () => 1), backoff.capMs);
    assert.equal(backoffDelay(attempt, { baseMs: 1e-3, capMs: 1e300 }, () => 1), 1e-3 * 2 ** Math.min(attempt, 64));
  }
  assert.equal(backoffDelay(0, DEFAULT_BACKOFF, () => 1), DEFAULT_BACKOFF.baseMs);
});

test("bad backoff arguments are refused", () => {
  assert.throws(() => backoffDelay(-1, backoff), RangeError);
  assert.throws(() => backoffDelay(1.5, backoff), RangeError);
  assert.throws(() => backoffDelay(0, { baseMs: 0, capMs: 10 }), RangeError);
  assert.throws(() => backoffDelay(0, { baseMs: 10, capMs: 5 }), RangeError);
  assert.throws(() => backoffDelay(0, { baseMs: 10, capMs: Infinity }), RangeError);
  assert.throws(() => backoffDelay(0, backoff, () => 2), RangeError);
  assert.throws(() => backoffDelay(0, backoff, () => Number.NaN), RangeError);
  assert.throws(
    () => new WsClient({ url: "ws://127.0.0.1/ws/", WebSocketImpl: class {}, backoff: { baseMs: 5, capMs: 1 } }),
    RangeError,
  );
});

test("URLs: http(s) and relative URLs become ws(s), others are refused", () => {
  assert.equal(toWebSocketUrl("ws://127.0.0.1:8001/ws/"), "ws://127.0.0.1:8001/ws/");
  assert.equal(toWebSocketUrl("http://example.org/ws/"), "ws://example.org/ws/");
  assert.equal(toWebSocketUrl("https://example.org/ws/"), "wss://example.org/ws/");
  assert.throws(() => toWebSocketUrl("ftp://example.org/ws/"), TypeError);
  assert.throws(() => toWebSocketUrl("/ws/"), TypeError); // no page to resolve against in Node
});

test("a WebSocket implementation is required where there is no global one", () => {
  if (globalThis.WebSocket !== undefined) return; // Node >= 22 has one
  assert.throws(() => new WsClient({ url: "ws://127.0.0.1/ws/" }), /WebSocketImpl/);
});

test("on() returns a remover, off() removes, waitFor() resolves on a match or times out", async () => {
  const client = new WsClient({ url: "ws://127.0.0.1/ws/", WebSocketImpl: class {} });
  assert.equal(client.state, "idle");
  assert.equal(client.connected, false);
  const seen = [];
  const a = (event) => seen.push(["a", event.code]);
  const b = (event) => seen.push(["b", event.code]);
  const removeA = client.on("stopped", a);
  client.on("stopped", b);
  client.off("stopped", b);
  const waited = client.waitFor("stopped", { filter: (event) => event.byClient, timeoutMs: 1000 });
  await client.close();
  assert.deepEqual(seen, [["a", 1000]]);
  assert.equal((await waited).code, 1000);
  removeA();
  await assert.rejects(client.waitFor("welcome", { timeoutMs: 20 }), (error) => {
    assert.ok(error instanceof WsClientError);
    assert.equal(error.code, "timeout");
    return true;
  });
  await assert.rejects(client.publish("room.x", "hi"), { code: "not_connected" });
  await assert.rejects(client.presence("room.x"), { code: "not_connected" });
});
