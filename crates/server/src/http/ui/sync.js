// The sync dashboard: groups, peers (source, status, lag, last error, events/s), live
// through the WebSocket (a message on a shared hive's channel) and a short poll (peer
// status changes have no channel), admin actions behind the admin key.

import { api, probe, subscribe, adminKey, setAdminKey, ApiError } from "./api.js";
import { el, fill, when, errorBox } from "./dom.js";

/** How often the dashboard polls (ms) besides WebSocket-driven refreshes. */
const POLL_MS = 2000;

/**
 * Routes built by other work in progress: their buttons show only when the route answers
 * (a GET of a POST-only route is a 405; a route that does not exist is a 404).
 */
const OPTIONAL = {
  compact: (group) => `/sync/groups/${encodeURIComponent(group)}/compact`,
  rotate: (peer) => `/sync/peers/${encodeURIComponent(peer)}/rotate-token`,
};
const optionalSeen = {};

async function optionalRoute(kind, id) {
  if (!(kind in optionalSeen)) {
    const status = await probe(OPTIONAL[kind](id));
    if (status === 0 || status === 401 || status === 403) return false; // ask again later
    optionalSeen[kind] = status !== 404;
  }
  return optionalSeen[kind];
}

/** Totals of a peer's counters over its links, for the events/s of successive samples. */
function counters(peer) {
  let received = 0;
  let sent = 0;
  for (const g of peer.groups || []) {
    received += g.events_received || 0;
    sent += g.last_seq_sent || 0;
  }
  return { received, sent };
}

function rate(n) {
  if (n === null) return "–";
  return n >= 10 ? n.toFixed(0) : n.toFixed(1);
}

function keyForm(message, onKey) {
  const input = el("input", {
    id: "admin-key",
    type: "password",
    autocomplete: "off",
    placeholder: "contents of <data dir>/admin.key",
    "aria-label": "Admin key",
  });
  return el(
    "form",
    {
      class: "card key-form",
      id: "admin-key-form",
      onsubmit: (ev) => {
        ev.preventDefault();
        setAdminKey(input.value.trim());
        window.dispatchEvent(new Event("openhive:admin-key"));
        onKey();
      },
    },
    el("h2", {}, "Admin key required"),
    el("p", { class: "muted" }, message),
    input,
    el("button", { type: "submit" }, "Use key"),
  );
}

/** `#/sync`: the dashboard. Returns its cleanup. */
export async function syncPage(main) {
  let stop = false;
  let poll = null;
  let unsubscribe = null;
  let channels = "";
  let pending = null;
  const samples = new Map(); // peer id -> {t, received, sent}
  const rates = new Map(); // peer id -> {in, out}

  const flash = el("p", { class: "flash", id: "flash", role: "status" });
  const say = (text, bad) => {
    flash.textContent = text;
    flash.className = bad ? "flash error" : "flash";
  };
  const content = el("div", { id: "sync-content" });
  const addPeer = addPeerForm(say, () => refresh());
  fill(main, el("h1", {}, "Hive Sync"), flash, content, addPeer);
  addPeer.hidden = true;

  const action = async (label, path, body) => {
    say(`${label}…`);
    try {
      const r = await api(path, { method: "POST", body: body || {}, admin: true });
      const compacted = r && typeof r === "object" && "compacted_through_seq" in r
        ? ` (through seq ${r.compacted_through_seq}: snapshot of ${r.snapshot_size} events, ${r.dropped} dropped)`
        : "";
      say(`${label}: done${r && typeof r === "object" && "reachable" in r ? (r.reachable ? " (reachable)" : ` (unreachable: ${r.error || "no answer"})`) : compacted}`);
    } catch (e) {
      say(`${label}: ${e.message}`, true);
    }
    refresh();
  };

  async function refresh() {
    if (stop) return;
    let status, groups, peers;
    try {
      [status, groups, peers] = await Promise.all([
        api("/sync/status?limit=500", { admin: true }),
        api("/sync/groups?limit=500", { admin: true }),
        api("/sync/peers?limit=500", { admin: true }),
      ]);
    } catch (e) {
      if (stop) return;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
        addPeer.hidden = true;
        fill(content,
          keyForm(
            adminKey()
              ? `The admin key was refused (${e.message}).`
              : "The sync dashboard needs the instance's admin key. It is kept in this tab only.",
            () => refresh(),
          ),
        );
      } else {
        fill(content, errorBox(e));
      }
      return;
    }
    if (stop) return;
    const now = Date.now();
    for (const p of peers.data || []) {
      const c = counters(p);
      const prev = samples.get(p.id);
      if (prev && now > prev.t) {
        const dt = (now - prev.t) / 1000;
        rates.set(p.id, {
          in: Math.max(0, c.received - prev.received) / dt,
          out: Math.max(0, c.sent - prev.sent) / dt,
        });
      }
      samples.set(p.id, { t: now, ...c });
    }
    const g0 = (groups.data || [])[0];
    const p0 = (peers.data || [])[0];
    const [canCompact, canRotate] = await Promise.all([
      g0 ? optionalRoute("compact", g0.hive_name) : false,
      p0 ? optionalRoute("rotate", p0.id) : false,
    ]);
    if (stop) return;
    fill(content,
      summary(status),
      groupsTable(groups, status, canCompact, action),
      peersTable(peers, rates, canRotate, action),
    );
    addPeer.hidden = false;
    // Follow the shared hives' channels: any event on them moves lag and counters.
    const want = (groups.data || []).map((g) => `hive:${g.hive_name}`).sort();
    if (want.join("\n") !== channels) {
      channels = want.join("\n");
      if (unsubscribe) unsubscribe();
      unsubscribe = subscribe(want, () => {
        if (pending) return;
        pending = setTimeout(() => {
          pending = null;
          refresh();
        }, 300);
      });
    }
  }

  const tick = async () => {
    if (stop) return;
    if (!document.hidden) await refresh();
    if (!stop) poll = setTimeout(tick, POLL_MS);
  };
  await tick();

  return () => {
    stop = true;
    if (poll) clearTimeout(poll);
    if (pending) clearTimeout(pending);
    if (unsubscribe) unsubscribe();
  };
}

function summary(s) {
  const q = (s.storage && s.storage.write_queue) || {};
  const c = s.counters || {};
  return el(
    "section",
    { class: "card summary" },
    el(
      "dl",
      {},
      el("dt", {}, "Sync"),
      el("dd", { id: "sync-enabled" }, s.enabled ? "enabled" : "disabled"),
      el("dt", {}, "Instance"),
      el("dd", { class: "mono" }, s.instance_id),
      el("dt", {}, "Endpoint"),
      el("dd", { class: "mono" }, s.sync_endpoint),
      el("dt", {}, "Storage"),
      el("dd", {}, `${(s.storage || {}).engine || "?"} · write queue ${q.depth ?? "?"}/${q.capacity ?? "?"}, ${q.refused ?? 0} refused`),
      el("dt", {}, "Waiting events"),
      el("dd", {}, `${(s.waiting || {}).pending ?? 0} pending · ${(s.waiting || {}).unverified ?? 0} unverified`),
      el("dt", {}, "Rejected / rate limited"),
      el("dd", {}, `${c.events_rejected ?? 0} / ${c.rate_limited ?? 0}`),
    ),
  );
}

function groupsTable(groups, status, canCompact, action) {
  const byHive = new Map((status.groups || []).map((g) => [g.hive, g]));
  const rows = (groups.data || []).map((g) => {
    const st = byHive.get(g.hive_name) || {};
    return el(
      "tr",
      { "data-group": g.hive_name },
      el("td", {}, g.hive_name, g.awaiting_hive ? el("span", { class: "badge" }, "awaiting hive") : null),
      el("td", { class: "num" }, g.local_seq),
      el("td", { class: "num" }, g.peer_count),
      el("td", { class: "num" }, `${st.pending ?? 0} / ${st.unverified ?? 0}`),
      el("td", { class: "num" }, st.low_water_mark ?? "–"),
      el(
        "td",
        { class: "actions" },
        el("button", { type: "button", onclick: () => action(`Resync ${g.hive_name}`, `/sync/groups/${encodeURIComponent(g.hive_name)}/resync`) }, "Resync"),
        canCompact
          ? el("button", { type: "button", onclick: () => action(`Compact ${g.hive_name}`, `/sync/groups/${encodeURIComponent(g.hive_name)}/compact`) }, "Compact")
          : null,
      ),
    );
  });
  return el(
    "section",
    {},
    el("h2", {}, `Groups (${rows.length}${groups.has_more ? "+" : ""})`),
    rows.length
      ? el(
          "table",
          { id: "groups" },
          el("thead", {}, el("tr", {}, ["Hive", "Local seq", "Peers", "Pending / unverified", "Low water mark", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows),
        )
      : el("p", { class: "muted", id: "groups" }, "No sync groups. Enable one with POST /api/v1/sync/groups."),
  );
}

function duration(secs) {
  if (secs === null || secs === undefined) return "?";
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
  return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
}

/** The progress of a peer's links pulling a long way (backfill, resync): a bar per link. */
function progressCell(p) {
  const pulling = (p.groups || []).filter((g) => g.progress);
  if (!pulling.length) return el("td", { class: "progress" }, "–");
  return el(
    "td",
    { class: "progress" },
    pulling.map((g) => {
      const pr = g.progress;
      return el(
        "div",
        { class: "pull", "data-progress-hive": g.hive },
        el("progress", { value: pr.done, max: Math.max(pr.total, 1) }),
        el("div", { class: "small" }, `${g.hive}: ${pr.done}/${pr.total} · ${rate(pr.rate)}/s · ETA ${duration(pr.eta_secs)}`),
      );
    }),
  );
}

function peersTable(peers, rates, canRotate, action) {
  const rows = (peers.data || []).map((p) => {
    const lag = (p.groups || []).reduce((n, g) => n + Math.max(0, g.lag || 0), 0);
    const perHive = (p.groups || []).map((g) => `${g.hive}: ${g.state}, lag ${g.lag}`).join("; ");
    const r = rates.get(p.id);
    const err = p.last_error || (p.groups || []).map((g) => g.last_error).find((e) => e) || "";
    return el(
      "tr",
      { "data-peer": p.name, "data-peer-id": p.id, class: `peer status-${p.status}` },
      el("td", {}, el("strong", {}, p.name), el("div", { class: "mono small" }, p.sync_endpoint)),
      el("td", {}, p.source),
      el("td", { class: "status" }, el("span", { class: `badge s-${p.status}` }, p.status)),
      el("td", { class: "num", title: perHive }, lag),
      el("td", { class: "num" }, r ? `${rate(r.in)} in · ${rate(r.out)} out` : "–"),
      progressCell(p),
      el("td", {}, when(p.last_contact_at)),
      el("td", { class: "err" }, err),
      el(
        "td",
        { class: "actions" },
        el("button", { type: "button", onclick: () => action(`Test ${p.name}`, `/sync/peers/${encodeURIComponent(p.id)}/test`) }, "Test"),
        canRotate
          ? el("button", { type: "button", onclick: () => action(`Rotate token of ${p.name}`, `/sync/peers/${encodeURIComponent(p.id)}/rotate-token`) }, "Rotate token")
          : null,
      ),
    );
  });
  return el(
    "section",
    {},
    el("h2", {}, `Peers (${rows.length}${peers.has_more ? "+" : ""})`),
    rows.length
      ? el(
          "table",
          { id: "peers" },
          el("thead", {}, el("tr", {}, ["Peer", "Source", "Status", "Lag", "Events/s", "Pull progress", "Last contact", "Last error", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows),
        )
      : el("p", { class: "muted", id: "peers" }, "No peers."),
  );
}

function addPeerForm(say, done) {
  const name = el("input", { name: "name", required: true, maxlength: 100, placeholder: "name" });
  const endpoint = el("input", { name: "sync_endpoint", required: true, type: "url", placeholder: "https://other.example/sync/v1" });
  const hives = el("input", { name: "shared_hives", placeholder: "hive names, comma separated" });
  return el(
    "form",
    {
      class: "card add-peer",
      id: "add-peer",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const body = {
          name: name.value.trim(),
          sync_endpoint: endpoint.value.trim(),
          shared_hives: hives.value.split(",").map((s) => s.trim()).filter((s) => s),
        };
        say(`Adding ${body.name}…`);
        try {
          await api("/sync/peers", { method: "POST", body, admin: true });
          say(`Peer ${body.name} added`);
          name.value = "";
          endpoint.value = "";
          hives.value = "";
        } catch (e) {
          say(`Adding ${body.name}: ${e.message}`, true);
        }
        done();
      },
    },
    el("h2", {}, "Add a peer"),
    el("label", {}, "Name ", name),
    el("label", {}, "Sync endpoint ", endpoint),
    el("label", {}, "Shared hives ", hives),
    el("button", { type: "submit" }, "Add peer"),
  );
}

export { adminKey, setAdminKey };
