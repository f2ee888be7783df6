// The rooms demo on / (web_service/templates/web_service/home.html): live
// messages over /ws/ with the JS client (clients/js/src/ws-client.js), and who
// is in the room when the server has presence (an optional feature: without
// it the "Here now" panel stays hidden). Everything the page needs from the
// server is in data-* attributes of #demo.

const root = document.getElementById("demo");
const $ = (id) => document.getElementById(id);
const statusEl = $("status");
const titleEl = $("room-title");
const messagesEl = $("messages");
const presenceEl = $("presence");
const presencePanel = $("presence-panel");
const postForm = $("post-form");
const postText = $("post-text");
const postButton = $("post-button");
const postError = $("post-error");
const roomForm = $("room-form");
const roomInput = $("room-input");
const roomError = $("room-error");

const ROOM = /^room\.[a-z0-9_-]{1,64}$/;
const DEFAULT_ROOM = "room.lobby";
const MAX_MESSAGES = 500;
const HISTORY = Number(root.dataset.history) || 50; // newest messages shown on joining a room
const ROOM_RULE = "A room name is 1 to 64 of a-z, 0-9, - and _.";
const myId = Number(root.dataset.userId);

// What the status pill says after the server closes the socket: every close
// code of docs/protocol.md ("Close codes"), in this one place. The client
// stops for 4401 and 4403 and reconnects with backoff after the others.
const CLOSE_REASONS = new Map([
  [4401, "Signed out"],
  [4403, "Not allowed to connect"],
  [4429, "Too many open connections"],
  [4029, "Too many connection attempts"],
  [1008, "Too many messages too fast"],
  [1009, "A message was too large"],
  [4013, "The server is busy"],
  [1012, "The server is restarting"],
  [1001, "The server went away"],
  [1006, "Connection lost"],
]);

function closeReason(code) {
  return CLOSE_REASONS.get(code) ?? (code ? "Disconnected" : "Could not connect");
}

function setStatus(state, text, link = null) {
  statusEl.dataset.state = state;
  statusEl.replaceChildren(text);
  if (link !== null) {
    const a = document.createElement("a");
    a.href = link.href;
    a.textContent = link.text;
    statusEl.append(" ", a);
  }
  postButton.disabled = state !== "open";
}

function showPostError(text) {
  postError.textContent = text;
  postError.hidden = text === "";
}

function csrfToken() {
  const match = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
  if (match) return decodeURIComponent(match[1]);
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

/** A one-time ticket for each connection attempt; null (use the session cookie) when not logged in. */
async function fetchTicket() {
  const response = await fetch(root.dataset.ticketUrl, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "X-CSRFToken": csrfToken() },
    signal: AbortSignal.timeout(10000),
  });
  if (response.status === 401 || response.status === 403) return null; // the server will answer 4401
  if (!response.ok) throw new Error(`ticket: HTTP ${response.status}`);
  return (await response.json()).ticket;
}

/** The topic of a room typed by a person ("lobby" or "room.lobby"), or null if it is not a valid name. */
function normaliseRoom(value) {
  let name = value.trim().toLowerCase();
  if (!name.startsWith("room.")) name = `room.${name}`;
  return ROOM.test(name) ? name : null;
}

/** The name people see for a room topic: "room.lobby" is "lobby". */
function roomName(topic) {
  return topic.slice("room.".length);
}

function showRoomError(text) {
  roomError.textContent = text;
  roomError.hidden = text === "";
  roomInput.setAttribute("aria-invalid", String(text !== ""));
}

let WsClient;
try {
  ({ WsClient } = await import(root.dataset.clientSrc));
} catch (error) {
  setStatus("failed", `Could not load the client (${error.message}).`);
  throw error;
}

const client = new WsClient({
  url: new URL(root.dataset.wsUrl, location.href).toString(),
  ticketProvider: fetchTicket,
  backoff: { baseMs: 500, capMs: 8000 },
});

let room = null;
const roster = new Map(); // user id -> username, for the current room
let presenceMissing = false; // the server answered `presence` with unknown_type: it has no presence

function renderPresence() {
  const items = [...roster]
    .sort((a, b) => a[1].localeCompare(b[1]))
    .map(([id, username]) => {
      const li = document.createElement("li");
      li.dataset.userId = String(id);
      li.textContent = id === myId ? `${username} (you)` : username;
      return li;
    });
  presenceEl.replaceChildren(...items);
}

/** Adds a message in id order (the server sends them in order; a late one is still placed right). */
function addMessage(message) {
  const li = document.createElement("li");
  li.className = message.author.id === myId ? "message mine" : "message";
  li.dataset.id = String(message.id);
  li.dataset.author = message.author.username;
  const author = document.createElement("strong");
  author.className = "author";
  author.textContent = message.author.username;
  const time = document.createElement("time");
  time.dateTime = message.created_at;
  time.textContent = new Date(message.created_at).toLocaleTimeString();
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  li.append(author, " ", time, " ", text);
  const atBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 40;
  let after = messagesEl.lastElementChild;
  while (after !== null && Number(after.dataset.id) > message.id) after = after.previousElementSibling;
  if (after === null) messagesEl.prepend(li);
  else after.after(li);
  while (messagesEl.childElementCount > MAX_MESSAGES) messagesEl.firstElementChild.remove();
  if (atBottom) messagesEl.scrollTop = messagesEl.scrollHeight;
}

async function refreshPresence(topic) {
  if (presenceMissing) return;
  try {
    const frame = await client.presence(topic);
    presencePanel.hidden = false;
    if (topic !== room) return;
    roster.clear();
    for (const user of frame.users) roster.set(user.id, user.username);
    renderPresence();
  } catch (error) {
    // unknown_type: a server without presence (the panel stays hidden). Otherwise
    // disconnected meanwhile: the next subscribed event refreshes it.
    if (error.code === "unknown_type") presenceMissing = true;
  }
}

function joinRoom(next) {
  if (next === room) return;
  const previous = room;
  room = next;
  titleEl.textContent = roomName(room);
  document.title = `${roomName(room)} · Rooms`;
  messagesEl.replaceChildren();
  roster.clear();
  renderPresence();
  showPostError("");
  for (const button of document.querySelectorAll("button.room")) {
    button.setAttribute("aria-pressed", String(button.dataset.room === room));
  }
  history.replaceState(null, "", `#${roomName(room)}`);
  if (previous !== null) client.unsubscribe(previous).catch(() => {});
  // The room's newest messages, then live ones; after a reconnect the client resumes with since.
  client.subscribe(room, { recent: HISTORY }).catch(() => {});
}

client.on("welcome", () => setStatus("open", "Connected"));
let dropReason = null; // why the connection went, kept while attempts to reconnect fail plainly
client.on("reconnecting", ({ attempt, code }) => {
  if (attempt === 0 || dropReason === null || (code !== 1006 && code !== 0)) dropReason = closeReason(code);
  setStatus("reconnecting", `${dropReason} — reconnecting…`);
});
client.on("stopped", ({ code, byClient }) => {
  if (byClient) return;
  if (code === 4401) setStatus("stopped", `${closeReason(code)} —`, { href: root.dataset.loginUrl, text: "log in again" });
  else setStatus("stopped", closeReason(code));
});
client.on("subscribed", (frame) => {
  if (frame.topic === room) refreshPresence(room);
});
client.on("message", (message) => {
  if (message.topic === room) addMessage(message);
});
client.on("presence_diff", (diff) => {
  presencePanel.hidden = false;
  if (diff.topic !== room) return;
  for (const user of diff.left) roster.delete(user.id);
  for (const user of diff.joined) roster.set(user.id, user.username);
  renderPresence();
});
client.on("error", (error) => {
  // The page sends only types the client knows: unknown_type answers `presence`
  // on a server without it (handled in refreshPresence), not something to show.
  if (error.code === "unknown_type") return;
  if (!String(error.code).startsWith("client_")) showPostError(`${error.code}: ${error.detail}`);
});

for (const button of document.querySelectorAll("button.room")) {
  button.addEventListener("click", () => joinRoom(button.dataset.room));
}

roomInput.addEventListener("input", () => showRoomError(""));
roomForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const next = normaliseRoom(roomInput.value);
  if (next === null) {
    const typed = roomInput.value.trim();
    showRoomError(typed === "" ? `Type a room name. ${ROOM_RULE}` : `“${typed}” is not a room name. ${ROOM_RULE}`);
    roomInput.focus();
    return;
  }
  showRoomError("");
  roomInput.value = "";
  joinRoom(next);
});

postForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = postText.value;
  if (text.trim() === "" || room === null) return;
  postButton.disabled = true;
  showPostError("");
  try {
    await client.publish(room, text);
    postText.value = "";
  } catch (error) {
    if (error.code === "not_connected") showPostError("Not connected: the message was not sent.");
    else if (error.code === "timeout") showPostError("No confirmation from the server: the message may not have been sent.");
    else showPostError(`Not sent: ${error.message}`);
  } finally {
    postButton.disabled = !client.connected;
    postText.focus();
  }
});

joinRoom(normaliseRoom(decodeURIComponent(location.hash.slice(1))) ?? DEFAULT_ROOM);
client.connect();
