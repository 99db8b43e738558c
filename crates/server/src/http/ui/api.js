// The JSON API and the WebSocket, as the pages use them.

const ADMIN_KEY = "openhive.admin_key";

/** The admin key typed in (or handed over in the URL fragment) for this tab only. */
export function adminKey() {
  try {
    return sessionStorage.getItem(ADMIN_KEY) || "";
  } catch (_) {
    return "";
  }
}

export function setAdminKey(key) {
  try {
    if (key) sessionStorage.setItem(ADMIN_KEY, key);
    else sessionStorage.removeItem(ADMIN_KEY);
  } catch (_) {
    // storage refused (private mode): the key lasts as long as the page
  }
}

/** An API error: `status` and the body's `message` (the API's one error shape). */
export class ApiError extends Error {
  constructor(status, body) {
    const msg = body && typeof body.message === "string" ? body.message : `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls `/api/v1` + `path`. `admin: true` sends the admin key (`X-Admin-Key`) if one is
 * set. Resolves to the parsed JSON body; rejects with an ApiError.
 */
export async function api(path, opts = {}) {
  const { method = "GET", body, admin = false } = opts;
  const headers = { Accept: "application/json" };
  const key = admin ? adminKey() : "";
  if (key) headers["X-Admin-Key"] = key;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new ApiError(0, { message: "the server did not answer" });
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = null;
    }
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** The status a GET of an admin route answers (0 when the server cannot be reached). */
export async function probe(path) {
  const headers = { Accept: "application/json" };
  const key = adminKey();
  if (key) headers["X-Admin-Key"] = key;
  try {
    const resp = await fetch("/api/v1" + path, { headers, cache: "no-store" });
    return resp.status;
  } catch (_) {
    return 0;
  }
}

/**
 * A WebSocket subscription to `channels` (`hive:<name>`, `post:<id>`). `onMessage(msg)` is
 * called for each message of a subscribed channel. Reconnects with a growing delay.
 * Returns a function that closes it for good.
 */
export function subscribe(channels, onMessage) {
  let ws = null;
  let closed = false;
  let delay = 1000;
  let timer = null;
  // The server drops a client silent for 90 s: say something every 30 s.
  const keepAlive = setInterval(() => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
  }, 30000);
  const open = () => {
    if (closed || channels.length === 0) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.addEventListener("open", () => {
      delay = 1000;
      ws.send(JSON.stringify({ type: "subscribe", channels }));
    });
    ws.addEventListener("message", (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (m && m.channel) onMessage(m);
    });
    ws.addEventListener("close", () => {
      if (closed) return;
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 30000);
    });
  };
  open();
  return () => {
    closed = true;
    clearInterval(keepAlive);
    if (timer) clearTimeout(timer);
    if (ws) ws.close();
  };
}
