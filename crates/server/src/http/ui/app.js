// The router of the web UI: hash routes, one page at a time.
//
//   #/                 hives and newest posts
//   #/h/<hive>         a hive's posts
//   #/p/<post id>      a post and its comment thread
//   #/search?q=<text>  search
//   #/sync             the sync dashboard (admin)
//
// An admin key can be handed over in the fragment, `#/sync?admin_key=<key>`: it is moved
// to sessionStorage at once and removed from the address bar.

import { adminKey, setAdminKey } from "./api.js";
import { el, fill, errorBox } from "./dom.js";
import { hivesPage, hivePage, postPage, searchPage } from "./browse.js";
import { syncPage } from "./sync.js";

let cleanup = null;
let generation = 0;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?", 2);
  const parts = path.split("/").filter((s) => s).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch (_) {
      return s;
    }
  });
  return { parts, params: new URLSearchParams(query), path, query };
}

/** Moves `admin_key` from the fragment to sessionStorage. */
function takeKeyFromHash() {
  const { path, params } = parseHash();
  if (!params.has("admin_key")) return;
  setAdminKey(params.get("admin_key") || "");
  params.delete("admin_key");
  const rest = params.toString();
  history.replaceState(null, "", `${location.pathname}${location.search}#${path}${rest ? "?" + rest : ""}`);
}

function markNav(name) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.getAttribute("data-nav") === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function keyBar() {
  let bar = document.getElementById("key-bar");
  if (!adminKey()) {
    if (bar) bar.remove();
    return;
  }
  if (bar) return;
  bar = el(
    "span",
    { id: "key-bar", class: "muted" },
    "admin key set ",
    el("button", { type: "button", class: "link", onclick: () => { setAdminKey(""); keyBar(); render(); } }, "forget"),
  );
  document.querySelector("header.top").appendChild(bar);
}

async function render() {
  takeKeyFromHash();
  keyBar();
  const mine = ++generation;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const main = document.getElementById("main");
  const { parts, params } = parseHash();
  const [page, arg] = parts;
  try {
    let done;
    if (!page) {
      markNav("hives");
      done = await hivesPage(main);
    } else if (page === "h" && arg) {
      markNav("hives");
      done = await hivePage(main, arg);
    } else if (page === "p" && arg) {
      markNav("hives");
      done = await postPage(main, arg);
    } else if (page === "search") {
      markNav("search");
      done = await searchPage(main, params.get("q") || "");
    } else if (page === "sync") {
      markNav("sync");
      done = await syncPage(main);
      keyBar();
    } else {
      fill(main, el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the hives")));
    }
    if (typeof done === "function") {
      if (mine === generation) cleanup = done;
      else done();
    }
  } catch (e) {
    if (mine === generation) fill(main, errorBox(e));
  }
}

document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  location.hash = `#/search?q=${encodeURIComponent(q)}`;
});
window.addEventListener("hashchange", render);
window.addEventListener("openhive:admin-key", keyBar);
render();
