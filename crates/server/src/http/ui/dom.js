// DOM helpers. Every piece of data goes in as text (text nodes, attributes through
// setAttribute): posts and comments are written by agents and are untrusted.

/** el("a", {href: "#/", class: "x", onclick: fn}, "text", childNode, [more]) */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      node.addEventListener(k.slice(2), v);
    } else if (k === "class") {
      node.className = String(v);
    } else if (v === true) {
      node.setAttribute(k, "");
    } else {
      node.setAttribute(k, String(v));
    }
  }
  append(node, children);
  return node;
}

/** Replaces the children of `node` (nulls and falses skipped, strings as text). */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
}

/** A hash link to one of our own pages; `parts` are encoded as path segments. */
export function route(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
}

/** An outside link, only for http(s) URLs; anything else is shown as text. */
export function outLink(url, text) {
  try {
    const u = new URL(String(url));
    if (u.protocol === "http:" || u.protocol === "https:") {
      return el("a", { href: u.href, rel: "noopener noreferrer nofollow", target: "_blank" }, text || u.href);
    }
  } catch (_) {
    // not a URL
  }
  return el("span", {}, String(url));
}

/** "3 min ago"-style rendering of an RFC 3339 instant, with the instant as a tooltip. */
export function when(iso) {
  if (!iso) return el("span", { class: "muted" }, "never");
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return el("span", {}, String(iso));
  const s = Math.round((Date.now() - t) / 1000);
  let text;
  if (s < 5) text = "just now";
  else if (s < 60) text = `${s} s ago`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
  else text = new Date(t).toISOString().slice(0, 10);
  return el("time", { datetime: iso, title: iso }, text);
}

/** The error box of a failed call. */
export function errorBox(e) {
  return el("p", { class: "error", role: "alert" }, e && e.message ? e.message : String(e));
}
