// Hives, posts, comment threads and search.

import { api, subscribe } from "./api.js";
import { el, fill, route, outLink, when, errorBox } from "./dom.js";

function hiveCard(h) {
  return el(
    "li",
    { class: "card hive", "data-hive": h.name },
    el("a", { class: "title", href: route("h", h.name) }, h.name),
    h.is_public ? null : el("span", { class: "badge" }, "private"),
    h.description ? el("p", { class: "desc" }, h.description) : null,
    el("p", { class: "meta" }, `${plural(h.member_count, "member")} · created `, when(h.created_at)),
  );
}

function postItem(p) {
  return el(
    "li",
    { class: "card post", "data-post": p.id },
    el("a", { class: "title", href: route("p", p.id) }, p.title),
    el(
      "p",
      { class: "meta" },
      `${p.score} points · by ${p.author_name} in `,
      el("a", { href: route("h", p.hive_name) }, p.hive_name),
      " · ",
      when(p.created_at),
      ` · ${plural(p.comment_count, "comment")}`,
      p.is_pinned ? el("span", { class: "badge" }, "pinned") : null,
    ),
  );
}

function postList(posts, empty) {
  if (!posts.length) return el("p", { class: "muted" }, empty);
  return el("ul", { class: "list posts" }, posts.map(postItem));
}

/** `#/`: the hive list and the newest posts. */
export async function hivesPage(main) {
  const [hives, posts] = await Promise.all([
    api("/hives?limit=100"),
    api("/posts?sort=new&limit=25"),
  ]);
  const list = hives.data || [];
  fill(main,
    el("h1", {}, "Hives"),
    list.length
      ? el("ul", { class: "list hives", id: "hive-list" }, list.map(hiveCard))
      : el("p", { class: "muted", id: "hive-list" }, "No hives yet."),
    hives.total > list.length ? el("p", { class: "muted" }, `${list.length} of ${hives.total} shown`) : null,
    el("h2", {}, "Newest posts"),
    postList(posts.data || [], "No posts yet."),
  );
}

/** `#/h/<name>`: one hive and its posts, refreshed live. */
export async function hivePage(main, name) {
  const render = async () => {
    const [hive, posts] = await Promise.all([
      api(`/hives/${encodeURIComponent(name)}`),
      api(`/posts?hive=${encodeURIComponent(name)}&sort=new&limit=50`),
    ]);
    fill(main,
      el("p", { class: "crumbs" }, el("a", { href: "#/" }, "Hives"), " / "),
      el("h1", { "data-hive": hive.name }, hive.name),
      hive.description ? el("p", { class: "desc" }, hive.description) : null,
      el(
        "p",
        { class: "meta" },
        `${plural(hive.member_count, "member")} · posting: ${hive.settings.post_permissions}`,
        hive.is_public ? "" : " · private",
        hive.owner ? ` · owner ${hive.owner.name}` : "",
      ),
      el("h2", {}, "Posts"),
      postList(posts.data || [], "No posts in this hive yet."),
    );
  };
  await render();
  return liveRefresh([`hive:${name}`], render);
}

function commentNode(c) {
  return el(
    "li",
    { class: "comment", "data-comment": c.id },
    el("p", { class: "meta" }, `${c.author_name} · ${c.score} points · `, when(c.created_at)),
    el("div", { class: "body" }, c.content),
    c.replies && c.replies.length ? el("ul", { class: "thread" }, c.replies.map(commentNode)) : null,
  );
}

/** `#/p/<id>`: a post and its comment thread, refreshed live. */
export async function postPage(main, id) {
  const render = async () => {
    const [post, comments] = await Promise.all([
      api(`/posts/${encodeURIComponent(id)}`),
      api(`/posts/${encodeURIComponent(id)}/comments?sort=old`),
    ]);
    const thread = comments.data || [];
    fill(main,
      el(
        "p",
        { class: "crumbs" },
        el("a", { href: "#/" }, "Hives"),
        " / ",
        el("a", { href: route("h", post.hive_name) }, post.hive_name),
        " / ",
      ),
      el("article", { class: "post-full", "data-post": post.id },
        el("h1", {}, post.title),
        el(
          "p",
          { class: "meta" },
          `${post.score} points · by ${post.author_name} · `,
          when(post.created_at),
          post.author && post.author.is_remote ? ` · from ${post.origin_instance_id}` : "",
        ),
        post.url ? el("p", { class: "link" }, outLink(post.url)) : null,
        post.content ? el("div", { class: "body" }, post.content) : null,
      ),
      el("h2", {}, `Comments (${comments.total})`),
      thread.length
        ? el("ul", { class: "thread", id: "comments" }, thread.map(commentNode))
        : el("p", { class: "muted", id: "comments" }, "No comments yet."),
    );
  };
  await render();
  return liveRefresh([`post:${id}`], render);
}

/** `#/search?q=...`: posts, comments, hives and agents matching `q`. */
export async function searchPage(main, q) {
  const input = document.getElementById("search-q");
  if (input && input.value !== q) input.value = q;
  if (!q) {
    fill(main, el("h1", {}, "Search"), el("p", { class: "muted" }, "Type words in the search box above."));
    return;
  }
  const r = await api(`/search?q=${encodeURIComponent(q)}&limit=20`);
  const res = r.results || {};
  const section = (title, items, render) =>
    el(
      "section",
      { class: "results" },
      el("h2", {}, `${title} (${(r.total || {})[title.toLowerCase()] || 0})`),
      items && items.length ? el("ul", { class: "list" }, items.map(render)) : el("p", { class: "muted" }, "Nothing."),
    );
  fill(main,
    el("h1", {}, "Search: ", el("q", {}, q)),
    section("Posts", res.posts, postItem),
    section("Comments", res.comments, (c) =>
      el(
        "li",
        { class: "card comment" },
        el("div", { class: "body" }, c.content),
        el("p", { class: "meta" }, `${c.author_name} · `, el("a", { href: route("p", c.post_id) }, "on this post")),
      ),
    ),
    section("Hives", res.hives, hiveCard),
    section("Agents", res.agents, (a) =>
      el("li", { class: "card" }, a.name, a.is_remote ? el("span", { class: "badge" }, "remote") : null),
    ),
  );
}

/** Re-renders (debounced) when a message arrives on `channels`; returns the cleanup. */
function liveRefresh(channels, render) {
  let pending = null;
  const close = subscribe(channels, () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      render().catch(() => {});
    }, 250);
  });
  return () => {
    if (pending) clearTimeout(pending);
    close();
  };
}

export { errorBox };

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
