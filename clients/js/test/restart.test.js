// The restart policy: after a 1012 (service restart) the client retries a
// server that is not listening yet under restartCapMs instead of a growing
// ceiling. The server here is a real WebSocket server (the ws package) on a
// loopback port that does what a restarting ws process does: it closes its
// sockets with 1012, stops listening for a while, then listens again on the
// same port and welcomes. No network beyond 127.0.0.1.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import test from "node:test";

import { WebSocket, WebSocketServer } from "ws";

import { WsClient, retryBackoff } from "../src/ws-client.js";

const AWAY_MS = 1500;
const backoff = { baseMs: 50, capMs: 5000, restartCapMs: 200, restartWindowMs: 30000 };

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Listens on `port`, welcomes every socket; `stop(code)` closes them with `code` and stops listening. */
function serve(port) {
  return new Promise((resolve, reject) => {
    const server = new WebSocketServer({ host: "127.0.0.1", port });
    server.once("error", reject);
    server.on("connection", (socket) => socket.send(JSON.stringify({ type: "welcome", user: { id: 1, username: "u" } })));
    server.once("listening", () =>
      resolve({
        stop: (code) =>
          new Promise((done) => {
            for (const socket of server.clients) {
              if (code === null) socket.terminate();
              else socket.close(code, "server restarting, reconnect");
            }
            server.close(() => done());
          }),
      }),
    );
  });
}

/** Delays the client chose while the server was away after `stop(code)`, and whether it came back. */
async function delaysWhileAway(t, code) {
  const port = await freePort();
  let server = await serve(port);
  // random() = 1: every delay is its ceiling, so the ceilings themselves are compared.
  const client = new WsClient({ url: `ws://127.0.0.1:${port}/ws/`, WebSocketImpl: WebSocket, backoff, random: () => 1 });
  t.after(() => client.close());
  const retries = [];
  client.on("reconnecting", (r) => retries.push(r));
  const first = client.waitFor("welcome", { timeoutMs: 5000 });
  client.connect();
  await first;
  await server.stop(code);
  await new Promise((resolve) => setTimeout(resolve, AWAY_MS));
  server = await serve(port);
  t.after(() => server.stop(null));
  await client.waitFor("welcome", { timeoutMs: 10000 });
  return retries;
}

test("after a 1012 a server that is not listening yet is retried under restartCapMs, and rejoined at once", {
  timeout: 30000,
}, async (t) => {
  const retries = await delaysWhileAway(t, 1012);
  assert.equal(retries[0].code, 1012);
  // Many attempts while away, none waiting longer than the restart cap.
  assert.ok(retries.length >= 6, `only ${retries.length} retries in ${AWAY_MS} ms`);
  assert.ok(
    retries.every((r) => r.delayMs <= backoff.restartCapMs),
    `delays: ${retries.map((r) => r.delayMs).join(", ")}`,
  );
});

test("without a 1012 (the connection just dropped) the ceiling grows past restartCapMs as usual", {
  timeout: 30000,
}, async (t) => {
  const retries = await delaysWhileAway(t, null);
  assert.notEqual(retries[0].code, 1012);
  assert.ok(
    retries.some((r) => r.delayMs > backoff.restartCapMs),
    `delays: ${retries.map((r) => r.delayMs).join(", ")}`,
  );
});

test("retryBackoff lowers the ceiling only when the server is away within a restart window", () => {
  assert.deepEqual(retryBackoff(backoff, { serverAway: true, restarting: true }), { baseMs: 50, capMs: 200 });
  assert.deepEqual(retryBackoff(backoff, { serverAway: false, restarting: true }), { baseMs: 50, capMs: 5000 });
  assert.deepEqual(retryBackoff(backoff, { serverAway: true, restarting: false }), { baseMs: 50, capMs: 5000 });
  // Never below baseMs (backoffDelay needs baseMs <= capMs).
  assert.deepEqual(retryBackoff({ ...backoff, restartCapMs: 10 }, { serverAway: true, restarting: true }), {
    baseMs: 50,
    capMs: 50,
  });
});
