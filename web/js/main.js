// Entry point: restores the session, draws the header and routes on the URL hash
// (#/movies/ID ...), so any static server can serve the player without rewrites.

import { restoreSession, session, signOut } from "./api.js";
import { announce, errorBox, h, replace } from "./dom.js";
import { describe } from "./errors.js";
import { catalogView } from "./views/catalog.js";
import { movieView } from "./views/movie.js";
import { signInView, signUpView } from "./views/auth.js";
import { plansView } from "./views/plans.js";
import { adminMoviesView, adminMovieEditView } from "./views/admin-movies.js";
import { adminPlansView, adminPlanEditView } from "./views/admin-plans.js";

const ROUTES = [
  { pattern: /^\/(?:movies)?$/, view: catalogView },
  { pattern: /^\/movies\/([0-9a-fA-F-]{36})$/, view: movieView },
  { pattern: /^\/signin$/, view: signInView },
  { pattern: /^\/signup$/, view: signUpView },
  { pattern: /^\/plans$/, view: plansView },
  { pattern: /^\/admin\/movies$/, view: adminMoviesView, guard: "admin" },
  { pattern: /^\/admin\/movies\/new$/, view: adminMovieEditView, guard: "admin" },
  { pattern: /^\/admin\/movies\/([0-9a-fA-F-]{36})$/, view: adminMovieEditView, guard: "admin" },
  { pattern: /^\/admin\/plans$/, view: adminPlansView, guard: "admin" },
  { pattern: /^\/admin\/plans\/new$/, view: adminPlanEditView, guard: "admin" },
  { pattern: /^\/admin\/plans\/([0-9a-fA-F-]{36})$/, view: adminPlanEditView, guard: "admin" },
];

const main = document.getElementById("main");
let current = { cleanup: null, controller: null };
let firstRender = true;

export function navigate(hash, { replace: replaceEntry = false } = {}) {
  if (replaceEntry) {
    history.replaceState(null, "", hash);
    route();
  } else if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return { path: path || "/", query: new URLSearchParams(search), raw };
}

async function route() {
  const { path, query, raw } = parseHash();
  if (current.cleanup) {
    try { current.cleanup(); } catch (error) { console.error(error); }
  }
  current.controller?.abort();
  const controller = new AbortController();
  current = { cleanup: null, controller };
  renderNav(path);

  const match = ROUTES.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  main.removeAttribute("aria-busy");
  if (!match) {
    replace(main, h("h1", { tabindex: "-1" }, "Page not found"),
      h("p", {}, "There is nothing at this address. ", h("a", { href: "#/" }, "Browse the movies")));
    return focusHeading();
  }
  if (match.r.guard && !session.signedIn) {
    navigate(`#/signin?next=${encodeURIComponent("#" + raw)}`, { replace: true });
    return;
  }
  if (match.r.guard === "admin" && !session.isAdmin) {
    replace(main, h("h1", { tabindex: "-1" }, "Administrators only"),
      h("p", { class: "notice warning" }, "This page is for Reelgate administrators."));
    return focusHeading();
  }
  try {
    const cleanup = await match.r.view({
      root: main, params: match.m.slice(1), query, signal: controller.signal, navigate,
    });
    if (controller.signal.aborted) {
      if (typeof cleanup === "function") cleanup();
      return;
    }
    current.cleanup = typeof cleanup === "function" ? cleanup : null;
  } catch (error) {
    if (controller.signal.aborted) return;
    console.error(error);
    replace(main, h("h1", { tabindex: "-1" }, "Something went wrong"), errorBox(describe(error), () => route()));
  }
  focusHeading();
}

function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading) document.title = `${heading.textContent} – Reelgate`;
  // Move focus to the new page's heading on navigation (not on the first load),
  // so keyboard and screen-reader users land on the new content.
  if (!firstRender && heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
  firstRender = false;
}

function navLink(href, label, path, prefix) {
  const active = prefix ? path.startsWith(prefix) : path === href.slice(1);
  return h("a", { href, "aria-current": active ? "page" : null }, label);
}

function renderNav(path = parseHash().path) {
  const nav = document.getElementById("nav");
  const links = [
    navLink("#/", "Movies", path === "/movies" ? "/" : path),
    navLink("#/plans", "Plans", path),
  ];
  if (session.isAdmin) {
    links.push(navLink("#/admin/movies", "Manage movies", path, "/admin/movies"),
      navLink("#/admin/plans", "Manage plans", path, "/admin/plans"));
  }
  replace(nav, h("ul", {}, links.map((link) => h("li", {}, link))));

  const account = document.getElementById("account");
  if (session.signedIn) {
    replace(account,
      h("span", { class: "who", title: session.user.email }, session.user.name || session.user.email,
        session.isAdmin ? h("span", { class: "badge" }, "admin") : null),
      h("button", {
        type: "button", class: "button secondary", onclick: async (event) => {
          event.currentTarget.disabled = true;
          // Let the current page finish with the session first (e.g. end a playback).
          const cleanup = current.cleanup;
          current.cleanup = null;
          try { await cleanup?.(); } catch (error) { console.error(error); }
          await signOut();
          announce("You are signed out.");
          navigate("#/");
        },
      }, "Sign out"));
  } else {
    replace(account,
      h("a", { class: "button secondary", href: "#/signin" }, "Sign in"),
      h("a", { class: "button", href: "#/signup" }, "Sign up"));
  }
}

async function start() {
  document.querySelector("[data-skip]")?.addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  await restoreSession();
  session.onChange(() => {
    renderNav();
    const { path, raw } = parseHash();
    const guarded = ROUTES.find((r) => r.pattern.test(path))?.guard;
    if (guarded && !session.signedIn) navigate(`#/signin?next=${encodeURIComponent("#" + raw)}`, { replace: true });
  });
  window.addEventListener("hashchange", route);
  await route();
  document.documentElement.dataset.ready = "true";
}

start();
