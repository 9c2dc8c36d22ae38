// A movie's page: details, and the player for viewers whose plan includes it.

import { api, clientId, session } from "../api.js";
import { loadAccess, lockReason, plansIncluding } from "../access.js";
import { announce, errorBox, formatBytes, formatDate, formatDuration, genreLabel, h, icon, loading, replace } from "../dom.js";
import { ApiError, REASONS, describe } from "../errors.js";
import { Playback } from "../player.js";

export async function movieView({ root, params, signal }) {
  const [movieId] = params;
  loading(root, "Loading the movie…");
  let movie;
  try {
    movie = await api(`/api/movies/${movieId}`, { signal });
  } catch (error) {
    if (signal.aborted) return undefined;
    root.removeAttribute("aria-busy");
    if (error instanceof ApiError && error.status === 404) {
      replace(root, h("h1", { tabindex: "-1" }, "Movie not found"),
        h("p", {}, "This movie does not exist or was removed. ", h("a", { href: "#/" }, "Back to the catalog")));
      return undefined;
    }
    replace(root, h("h1", { tabindex: "-1" }, "Movie"), errorBox(`Could not load the movie. ${describe(error)}`,
      () => movieView({ root, params, signal })));
    return undefined;
  }
  root.removeAttribute("aria-busy");

  const stage = h("div", { class: "stage" });
  const statusLine = h("p", { class: "player-status", role: "status", "aria-live": "polite" });
  const posterUrl = movie.status === "ready" ? (movie.poster_url || `/api/movies/${movie.id}/poster`) : null;
  const video = h("video", {
    class: "video", playsinline: true, preload: "metadata", poster: posterUrl,
    "aria-label": `${movie.title} (video player)`, crossorigin: null,
  });
  const meta = [movie.release_year, movie.duration_s ? formatDuration(movie.duration_s) : null,
    movie.age_rating ? `Rated ${movie.age_rating}` : null,
    movie.media ? `${movie.media.height}p` : null].filter(Boolean).join(" · ");

  replace(root,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/" }, "← All movies")),
    h("article", { class: "movie-page", "data-movie-id": movie.id },
      h("h1", { tabindex: "-1" }, movie.title),
      h("p", { class: "meta" }, meta),
      h("div", { class: "player" }, stage, statusLine),
      h("div", { class: "details" },
        movie.genres?.length ? h("ul", { class: "tags", "aria-label": "Genres" },
          movie.genres.map((g) => h("li", {}, h("a", { href: `#/movies?genre=${encodeURIComponent(g)}` }, genreLabel(g))))) : null,
        movie.description ? h("p", { class: "description" }, movie.description) : null,
        movie.actors?.length ? h("section", { "aria-labelledby": "cast-heading" },
          h("h2", { id: "cast-heading" }, "Cast"),
          h("ul", { class: "cast" }, movie.actors.map((a) => h("li", {}, a.name, a.character ? ` as ${a.character}` : "")))) : null,
        movie.media ? h("details", { class: "tech" }, h("summary", {}, "Technical details"),
          h("dl", {},
            h("dt", {}, "Video"), h("dd", {}, `${movie.media.video_codec}, ${movie.media.width}×${movie.media.height}`),
            h("dt", {}, "Audio"), h("dd", {}, movie.media.audio_codec || "none"),
            h("dt", {}, "Size"), h("dd", {}, formatBytes(movie.media.size_bytes)),
            h("dt", {}, "Duration"), h("dd", {}, formatDuration(movie.media.duration_s)))) : null,
        session.isAdmin ? h("p", {}, h("a", { class: "button secondary", href: `#/admin/movies/${movie.id}` }, "Edit movie")) : null)));

  const setStatus = (text) => { statusLine.textContent = text; };

  if (!session.signedIn) {
    replace(stage, posterFrame(movie, h("div", { class: "overlay" },
      h("p", {}, "Sign in to watch this movie."),
      h("a", { class: "button", href: `#/signin?next=${encodeURIComponent(`#/movies/${movie.id}`)}` }, "Sign in"))));
    return undefined;
  }

  // Signed in: explain a lock up front (the server has the last word on play).
  let access;
  try { access = await loadAccess({ signal }); } catch { access = undefined; }
  if (signal.aborted) return undefined;
  const lock = access === undefined ? null : lockReason(movie, access);
  if (lock && lock.reason !== "unknown") {
    showLocked(stage, movie, lock.text, lock.reason, lock.action, signal);
    return undefined;
  }

  let stored = 0;
  const playback = new Playback(video, movie, {
    onStarted: (s) => {
      stage.dataset.state = "playing";
      replace(stage, video);
      video.controls = true;
      setStatus(s.reused ? "Playback resumed on this browser's session." : "");
    },
    onBlocked: (error) => showBlocked(stage, movie, error, () => start(stored), signal),
    onLocked: (error) => showLocked(stage, movie, REASONS[error.reason] || error.message, error.reason || "not_entitled",
      { href: "#/plans", label: "See plans" }, signal),
    onError: (error, kind) => {
      if (kind === "media") {
        replace(stage, errorBox(mediaErrorText(video, movie), () => start(playback.position())));
      } else {
        replace(stage, errorBox(describe(error), () => start(stored)));
      }
    },
    onStatus: setStatus,
    onResumed: (seconds) => {
      setStatus(`Resuming where you stopped, at ${formatDuration(seconds)}.`);
      const again = h("button", { type: "button", class: "link-button", onclick: () => { video.currentTime = 0; again.remove(); video.focus(); } }, "Start over");
      statusLine.append(" ", again);
    },
  });

  async function start(at) {
    stage.dataset.state = "starting";
    replace(stage, posterFrame(movie, h("div", { class: "overlay" }, h("p", { class: "loading", role: "status" }, "Starting playback…"))));
    stage.setAttribute("aria-busy", "true");
    try {
      const ok = await playback.start({ at });
      if (ok) {
        announce(`Playing ${movie.title}.`);
        video.focus({ preventScroll: true });
      }
    } finally {
      stage.removeAttribute("aria-busy");
    }
  }

  try { stored = await playback.storedPosition(); } catch { stored = 0; }
  if (signal.aborted) { playback.close(); return undefined; }
  const resumable = stored >= 2 && stored < (movie.duration_s || Infinity) - 3;
  const playButton = h("button", { type: "button", class: "button play", "data-action": "play", onclick: () => start(stored) },
    h("span", { "aria-hidden": "true" }, "▶ "), resumable ? `Resume from ${formatDuration(stored)}` : "Play");
  const overlay = h("div", { class: "overlay" }, playButton,
    resumable ? h("button", { type: "button", class: "button secondary", onclick: () => start(0) }, "Start from the beginning") : null);
  stage.dataset.state = "ready";
  replace(stage, posterFrame(movie, overlay));
  return () => playback.close();
}

function posterFrame(movie, overlay) {
  const src = movie.status === "ready" ? (movie.poster_url || `/api/movies/${movie.id}/poster`) : null;
  return h("div", { class: "poster-frame" },
    src ? h("img", { src, alt: "", class: "poster" }) : h("div", { class: "poster placeholder" }),
    overlay);
}

function mediaErrorText(video, movie) {
  const codec = movie.media ? ` (${movie.media.video_codec}/${movie.media.audio_codec || "no audio"})` : "";
  switch (video.error?.code) {
    case 3: return `The video could not be decoded${codec}. Try again, or another browser.`;
    case 4: return `Your browser cannot play this video${codec}, or the stream was refused.`;
    default: return "The stream was interrupted. Check your connection and try again.";
  }
}

function showLocked(stage, movie, text, reason, action, signal) {
  stage.dataset.state = "locked";
  const where = h("p", { class: "hint" });
  replace(stage, posterFrame(movie, h("div", { class: "overlay locked", "data-lock": reason },
    h("div", { class: "lock-card" },
      h("p", { class: "lock-reason" }, icon("lock"), h("span", { class: "visually-hidden" }, "Locked: "), text),
      where,
      action ? h("a", { class: "button", href: action.href }, action.label) : null))));
  announce(`Locked: ${text}`);
  if (reason === "not_in_plan" || reason === "no_subscription") {
    plansIncluding(movie.id, { signal }).then((plans) => {
      if (plans.length) where.textContent = `Included in: ${plans.map((p) => p.name).join(", ")}.`;
    }).catch(() => {});
  }
}

async function showBlocked(stage, movie, error, retry, signal) {
  stage.dataset.state = "blocked";
  const list = h("ul", { class: "sessions" });
  const panel = h("section", { class: "overlay blocked", "aria-labelledby": "blocked-heading" },
    h("h2", { id: "blocked-heading" }, "Too many streams"),
    h("p", {}, error.message),
    h("p", {}, "These streams are playing now:"),
    list,
    h("button", { type: "button", class: "button secondary", onclick: () => retry() }, "Try again"));
  replace(stage, panel);
  const titles = new Map([[movie.id, movie.title]]);
  await Promise.all([...new Set(error.sessions.map((s) => s.movie_id))].filter((id) => !titles.has(id)).map(async (id) => {
    try { titles.set(id, (await api(`/api/movies/${id}`, { signal })).title); } catch { titles.set(id, "A movie"); }
  }));
  for (const s of error.sessions) {
    const title = titles.get(s.movie_id) || "A movie";
    const stop = h("button", { type: "button", class: "button danger", "data-session-id": s.session_id }, `Stop “${title}”`);
    const item = h("li", {},
      h("span", {}, h("strong", {}, title), ` — on ${s.client_id && s.client_id === clientId() ? "this browser" : "another device"}, started ${formatDate(s.started_at)}`),
      stop);
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      stop.textContent = "Stopping…";
      try {
        await api(`/api/playback/${s.session_id}`, { method: "DELETE", retry: false });
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) {
          stop.disabled = false;
          stop.textContent = `Stop “${title}”`;
          item.append(h("span", { class: "field-error", role: "alert" }, describe(err)));
          return;
        }
      }
      announce(`Stopped the stream of ${title}. Starting playback here.`);
      retry();
    });
    list.append(item);
  }
  panel.querySelector("button")?.focus();
}
