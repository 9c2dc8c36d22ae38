// The catalog: search, genre filter, posters, and for signed-in viewers which
// movies their plan includes and why the others are locked.

import { api, session } from "../api.js";
import { loadAccess, lockReason, subscriptionSummary } from "../access.js";
import { announce, done, errorBox, formatDuration, genreLabel, h, icon, loading, replace } from "../dom.js";
import { describe } from "../errors.js";

const PER_PAGE = 24;
let genresCache = null;

export async function genres(signal) {
  if (!genresCache) {
    genresCache = api("/api/genres", { auth: false, signal })
      .then((data) => data.items || [])
      .catch((error) => { genresCache = null; throw error; });
  }
  return genresCache;
}

export function posterImage(movie, { alt = "" } = {}) {
  const img = h("img", {
    class: "poster", alt, loading: "lazy", decoding: "async", width: "320", height: "180",
    src: movie.status === "ready" ? (movie.poster_url || `/api/movies/${movie.id}/poster`) : "data:,",
  });
  const fallback = () => {
    img.replaceWith(h("div", { class: "poster placeholder", role: alt ? "img" : null, "aria-label": alt || null },
      h("span", { "aria-hidden": "true" }, movie.title.slice(0, 1).toUpperCase())));
  };
  if (movie.status !== "ready") queueMicrotask(fallback);
  else img.addEventListener("error", fallback, { once: true });
  return img;
}

function hashFor(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const qs = search.toString();
  return `#/movies${qs ? `?${qs}` : ""}`;
}

export async function catalogView({ root, query, signal, navigate }) {
  const q = (query.get("q") || "").trim();
  const genre = query.get("genre") || "";
  const page = Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);
  const sort = query.get("sort") || "";

  const searchInput = h("input", { type: "search", id: "search-q", name: "q", value: q, placeholder: "Title or description", autocomplete: "off" });
  const genreSelect = h("select", { id: "filter-genre", name: "genre" }, h("option", { value: "" }, "All genres"));
  const sortSelect = h("select", { id: "sort", name: "sort" },
    [["", q ? "Best match" : "Newest first"], ["title", "Title A–Z"], ["-release_year", "Release year (newest)"], ["release_year", "Release year (oldest)"]]
      .map(([value, label]) => h("option", { value, selected: value === sort }, label)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Search the catalog" },
    h("div", { class: "field" }, h("label", { htmlFor: "search-q" }, "Search movies"), searchInput),
    h("div", { class: "field" }, h("label", { htmlFor: "filter-genre" }, "Genre"), genreSelect),
    h("div", { class: "field" }, h("label", { htmlFor: "sort" }, "Sort by"), sortSelect),
    h("button", { type: "submit", class: "button" }, "Search"));
  const go = () => navigate(hashFor({ q: searchInput.value.trim(), genre: genreSelect.value, sort: sortSelect.value }));
  form.addEventListener("submit", (event) => { event.preventDefault(); go(); });
  genreSelect.addEventListener("change", go);
  sortSelect.addEventListener("change", go);

  const banner = h("div", { class: "banner-slot" });
  const results = h("section", { class: "results", "aria-labelledby": "results-heading" });
  replace(root, h("h1", { tabindex: "-1" }, q ? `Movies matching “${q}”` : "Movies"), form, banner, results);

  genres(signal).then((list) => {
    for (const g of list) genreSelect.append(h("option", { value: g, selected: g === genre }, genreLabel(g)));
    if (genre && !list.includes(genre)) genreSelect.append(h("option", { value: genre, selected: true }, genreLabel(genre)));
  }).catch(() => { genreSelect.append(h("option", { value: genre, selected: true, hidden: !genre }, genre ? genreLabel(genre) : "")); });

  const load = async () => {
    loading(results, "Loading movies…");
    const params = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE) });
    if (q) params.set("q", q);
    if (genre) params.set("genre", genre);
    if (sort) params.set("sort", sort);
    try {
      const [data, access] = await Promise.all([
        api(`/api/movies?${params}`, { signal, auth: false }),
        session.signedIn ? loadAccess({ signal }).catch((error) => { console.warn(error); return undefined; }) : null,
      ]);
      renderBanner(banner, access);
      renderResults(results, data, access, { q, genre, sort, page });
      announce(`${data.total} movie${data.total === 1 ? "" : "s"} found.`);
    } catch (error) {
      if (signal.aborted) return;
      replace(results, errorBox(`Could not load the movies. ${describe(error)}`, load));
    } finally {
      done(results);
    }
  };
  await load();
}

function renderBanner(slot, access) {
  if (access === null) {
    replace(slot, h("p", { class: "notice info" }, h("a", { href: "#/signin" }, "Sign in"), " or ",
      h("a", { href: "#/signup" }, "create an account"), " to watch. ", h("a", { href: "#/plans" }, "See our plans.")));
    return;
  }
  if (access === undefined) {
    replace(slot, h("p", { class: "notice warning" }, "Your subscription details could not be loaded; locks may be inaccurate."));
    return;
  }
  const summary = subscriptionSummary(access);
  replace(slot, h("p", { class: `notice ${summary.kind}`, "data-subscription": access.subscription?.status || "none" },
    summary.text, " ", h("a", { href: "#/plans" }, access.subscription ? "Manage subscription" : "See plans")));
}

function renderResults(container, data, access, state) {
  const items = data.items || [];
  const pages = Math.max(1, Math.ceil((data.total || 0) / PER_PAGE));
  const heading = h("h2", { id: "results-heading", class: "visually-hidden" }, "Results");
  if (!items.length) {
    replace(container, heading, h("p", { class: "empty" },
      state.q || state.genre ? "No movie matches your search. Try other words or another genre." : "The catalog is empty for now."));
    return;
  }
  const list = h("ul", { class: "grid", role: "list" }, items.map((movie) => h("li", {}, movieCard(movie, access))));
  const nav = pages > 1 ? h("nav", { class: "pager", "aria-label": "Pages" },
    state.page > 1 ? h("a", { class: "button secondary", href: hashFor({ ...state, page: String(state.page - 1) }), rel: "prev" }, "Previous page") : null,
    h("span", {}, `Page ${state.page} of ${pages}`),
    state.page < pages ? h("a", { class: "button secondary", href: hashFor({ ...state, page: String(state.page + 1) }), rel: "next" }, "Next page") : null) : null;
  replace(container, heading, h("p", { class: "count" }, `${data.total} movie${data.total === 1 ? "" : "s"}`), list, nav);
}

export function movieCard(movie, access) {
  const lock = access === undefined ? null : lockReason(movie, access);
  const meta = [movie.release_year, movie.duration_s ? formatDuration(movie.duration_s) : null,
    (movie.genres || []).map(genreLabel).join(", ")].filter(Boolean).join(" · ");
  const badge = lock
    ? h("p", { class: "badge locked", "data-lock": lock.reason }, icon("lock"), h("span", { class: "visually-hidden" }, "Locked: "), lock.text)
    : access ? h("p", { class: "badge included" }, "✓ Included in your plan") : null;
  return h("article", { class: "movie-card", "data-movie-id": movie.id },
    h("a", { href: `#/movies/${movie.id}`, class: "card-link" },
      posterImage(movie),
      h("h3", {}, movie.title)),
    h("p", { class: "meta" }, meta),
    badge);
}
