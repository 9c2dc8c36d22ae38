// Admin: the movie list (with deleted ones), the movie form (genres, cast) and
// the video upload with a real progress bar.

import { api, apiAll, uploadFile } from "../api.js";
import { genres, posterImage } from "./catalog.js";
import {
  announce, clearFieldErrors, errorBox, field, formatBytes, formatDate, formatDuration, genreLabel, h,
  loading, nextId, replace, showFieldErrors,
} from "../dom.js";
import { ApiError, describe } from "../errors.js";

const PER_PAGE = 25;

export async function adminMoviesView({ root, query, signal, navigate }) {
  const q = query.get("q") || "";
  const status = query.get("status") || "";
  const withDeleted = query.get("deleted") === "1";
  const page = Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);
  const hashFor = (over) => {
    const p = new URLSearchParams();
    const state = { q, status, deleted: withDeleted ? "1" : "", ...over };
    for (const [k, v] of Object.entries(state)) if (v) p.set(k, v);
    return `#/admin/movies${p.toString() ? `?${p}` : ""}`;
  };

  const qInput = h("input", { type: "search", id: "admin-q", name: "q", value: q });
  const statusSelect = h("select", { id: "admin-status", name: "status" },
    [["", "Any status"], ["draft", "Draft (no video yet)"], ["ready", "Ready"]].map(([v, l]) => h("option", { value: v, selected: v === status }, l)));
  const deletedBox = h("input", { type: "checkbox", id: "admin-deleted", name: "deleted", checked: withDeleted });
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter movies" },
    h("div", { class: "field" }, h("label", { htmlFor: "admin-q" }, "Search"), qInput),
    h("div", { class: "field" }, h("label", { htmlFor: "admin-status" }, "Status"), statusSelect),
    h("div", { class: "field checkbox" }, deletedBox, h("label", { htmlFor: "admin-deleted" }, "Include deleted movies")),
    h("button", { type: "submit", class: "button" }, "Apply"));
  const apply = () => navigate(hashFor({ q: qInput.value.trim(), status: statusSelect.value, deleted: deletedBox.checked ? "1" : "", page: "" }));
  filters.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
  statusSelect.addEventListener("change", apply);
  deletedBox.addEventListener("change", apply);

  const table = h("div", { class: "table-wrap" });
  replace(root,
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Manage movies"),
      h("a", { class: "button", href: "#/admin/movies/new" }, "New movie")),
    filters, table);

  async function load() {
    loading(table, "Loading movies…");
    const params = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE), sort: "-created_at" });
    if (q) params.set("q", q);
    if (status) params.set("status", status);
    if (withDeleted) params.set("with_deleted", "true");
    try {
      const data = await api(`/api/movies?${params}`, { signal });
      table.removeAttribute("aria-busy");
      renderTable(data);
    } catch (error) {
      if (signal.aborted) return;
      table.removeAttribute("aria-busy");
      replace(table, errorBox(`Could not load the movies. ${describe(error)}`, load));
    }
  }

  function renderTable(data) {
    const pages = Math.max(1, Math.ceil((data.total || 0) / PER_PAGE));
    if (!data.items.length) {
      replace(table, h("p", { class: "empty" }, "No movies match. ", h("a", { href: "#/admin/movies/new" }, "Create one")));
      return;
    }
    const rows = data.items.map((movie) => {
      const message = h("span", { class: "row-message", role: "status" });
      const action = movie.deleted_at
        ? h("button", { type: "button", class: "button secondary", onclick: (e) => act(e.currentTarget, movie, "restore", message) }, `Restore`)
        : h("button", { type: "button", class: "button danger", onclick: (e) => act(e.currentTarget, movie, "delete", message) }, `Delete`);
      action.setAttribute("aria-label", `${movie.deleted_at ? "Restore" : "Delete"} ${movie.title}`);
      return h("tr", { "data-movie-id": movie.id, class: movie.deleted_at ? "deleted" : null },
        h("th", { scope: "row" }, h("a", { href: `#/admin/movies/${movie.id}` }, movie.title)),
        h("td", {}, h("span", { class: `status status-${movie.deleted_at ? "deleted" : movie.status}` }, movie.deleted_at ? "deleted" : movie.status)),
        h("td", {}, movie.release_year ?? "–"),
        h("td", {}, (movie.genres || []).map(genreLabel).join(", ") || "–"),
        h("td", {}, movie.duration_s ? formatDuration(movie.duration_s) : "–"),
        h("td", { class: "actions" },
          h("a", { class: "button secondary", href: `#/admin/movies/${movie.id}`, "aria-label": `Edit ${movie.title}` }, "Edit"),
          action, message));
    });
    replace(table,
      h("table", {},
        h("caption", { class: "visually-hidden" }, "Movies"),
        h("thead", {}, h("tr", {}, ["Title", "Status", "Year", "Genres", "Length", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows)),
      pages > 1 ? h("nav", { class: "pager", "aria-label": "Pages" },
        page > 1 ? h("a", { class: "button secondary", href: hashFor({ page: String(page - 1) }) }, "Previous page") : null,
        h("span", {}, `Page ${page} of ${pages} (${data.total} movies)`),
        page < pages ? h("a", { class: "button secondary", href: hashFor({ page: String(page + 1) }) }, "Next page") : null) : null);
  }

  async function act(button, movie, what, message) {
    button.disabled = true;
    try {
      if (what === "delete") await api(`/api/movies/${movie.id}`, { method: "DELETE" });
      else await api(`/api/movies/${movie.id}/restore`, { method: "POST" });
      announce(`${movie.title} ${what === "delete" ? "deleted" : "restored"}.`);
      await load();
      table.querySelector("h1, table")?.focus?.();
    } catch (error) {
      button.disabled = false;
      message.textContent = describe(error);
    }
  }

  await load();
}

export async function adminMovieEditView({ root, params, signal, navigate }) {
  const [movieId] = params;
  const creating = !movieId;
  loading(root, "Loading…");
  let movie = null;
  let allGenres = [];
  let actors = [];
  try {
    [movie, allGenres, actors] = await Promise.all([
      creating ? null : api(`/api/movies/${movieId}?with_deleted=true`, { signal }),
      genres(signal),
      apiAll("/api/actors", { signal }),
    ]);
  } catch (error) {
    if (signal.aborted) return undefined;
    root.removeAttribute("aria-busy");
    replace(root, h("h1", { tabindex: "-1" }, creating ? "New movie" : "Edit movie"),
      errorBox(error instanceof ApiError && error.status === 404 ? "This movie does not exist." : describe(error),
        () => adminMovieEditView({ root, params, signal, navigate })));
    return undefined;
  }
  root.removeAttribute("aria-busy");

  const form = movieForm(movie, allGenres, actors);
  const message = h("div", { class: "form-message" });
  const saveButton = h("button", { type: "submit", class: "button" }, creating ? "Create movie" : "Save changes");
  form.el.append(message, h("div", { class: "form-actions" }, saveButton,
    h("a", { class: "button secondary", href: "#/admin/movies" }, "Back to the list")));

  form.el.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form.el);
    replace(message);
    const body = form.value();
    if (!body.title) {
      showFieldErrors(form.el, [{ field: "title", message: "A title is required." }]);
      return;
    }
    saveButton.disabled = true;
    form.el.setAttribute("aria-busy", "true");
    try {
      const saved = creating
        ? await api("/api/movies", { method: "POST", body })
        : await api(`/api/movies/${movie.id}`, { method: "PATCH", body });
      announce(creating ? `Created ${saved.title}. Now upload its video.` : `Saved ${saved.title}.`);
      if (creating) {
        navigate(`#/admin/movies/${saved.id}?created=1`);
        return;
      }
      movie = saved;
      replace(message, h("p", { class: "notice ok", role: "status" }, "Changes saved."));
    } catch (error) {
      const unmatched = error instanceof ApiError && error.code === "validation_failed" ? showFieldErrors(form.el, error.errors) : [];
      replace(message, errorBox([describe(error), ...unmatched].join(" ")));
    } finally {
      saveButton.disabled = false;
      form.el.removeAttribute("aria-busy");
    }
  });

  const deletedNote = h("div", {});
  const lifecycle = h("div", { class: "form-actions" });
  const renderLifecycle = () => {
    if (creating) return;
    replace(deletedNote, movie.deleted_at ? h("p", { class: "notice warning" }, `This movie was deleted on ${formatDate(movie.deleted_at)}; viewers cannot see or stream it.`) : null);
    const button = movie.deleted_at
      ? h("button", { type: "button", class: "button secondary" }, "Restore movie")
      : h("button", { type: "button", class: "button danger" }, "Delete movie");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        if (movie.deleted_at) movie = await api(`/api/movies/${movie.id}/restore`, { method: "POST" });
        else {
          await api(`/api/movies/${movie.id}`, { method: "DELETE" });
          movie = { ...movie, deleted_at: new Date().toISOString() };
        }
        announce(movie.deleted_at ? "Movie deleted." : "Movie restored.");
        renderLifecycle();
        lifecycle.querySelector("button")?.focus();
      } catch (error) {
        button.disabled = false;
        lifecycle.append(errorBox(describe(error)));
      }
    });
    replace(lifecycle, button);
  };
  renderLifecycle();

  const upload = creating ? null : uploadPanel(movie, (updated) => { movie = updated; });
  replace(root,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/admin/movies" }, "← Manage movies")),
    h("h1", { tabindex: "-1" }, creating ? "New movie" : `Edit “${movie.title}”`),
    deletedNote,
    creating ? h("p", { class: "hint" }, "Create the movie first; you can upload its video right after.") : null,
    h("div", { class: creating ? "" : "two-columns" },
      h("section", { "aria-labelledby": "details-heading" }, h("h2", { id: "details-heading" }, "Details"), form.el),
      upload?.el),
    !creating ? h("section", { "aria-labelledby": "danger-heading" }, h("h2", { id: "danger-heading" }, "Availability"), lifecycle) : null,
    !creating && !movie.deleted_at ? h("p", {}, h("a", { href: `#/movies/${movie.id}` }, "Open the viewer page")) : null);
  return () => upload?.abort();
}

function movieForm(movie, allGenres, actors) {
  const title = field("Title", h("input", { type: "text", name: "title", required: true, maxlength: "300", value: movie?.title || "" }));
  const description = field("Description", h("textarea", { name: "description", rows: "4", maxlength: "10000", value: movie?.description || "" }));
  const year = field("Release year", h("input", { type: "number", name: "release_year", min: "1878", max: "2100", inputmode: "numeric", value: movie?.release_year ?? "" }));
  const rating = field("Age rating", h("input", { type: "text", name: "age_rating", maxlength: "16", pattern: "[A-Za-z0-9+\\-]{1,16}", value: movie?.age_rating || "" }), { hint: "For example PG-13 or 12+. Optional." });

  const chosen = new Set(movie?.genres || []);
  const genreError = h("p", { class: "field-error", id: "genres-error", hidden: true });
  const genreBoxes = allGenres.map((g) => {
    const id = nextId("genre");
    return h("div", { class: "checkbox" }, h("input", { type: "checkbox", id, value: g, checked: chosen.has(g), "data-genre": g }), h("label", { htmlFor: id }, genreLabel(g)));
  });
  const genresSet = h("fieldset", { class: "choices", "aria-describedby": "genres-error" },
    h("legend", {}, "Genres"), h("input", { type: "hidden", name: "genres", id: "genres" }), genreBoxes, genreError);

  // Cast: choose among the actors; add a new actor on the spot.
  const characters = new Map((movie?.actors || []).map((a) => [a.id, a.character]));
  const castIds = new Set((movie?.actors || []).map((a) => a.id));
  const castList = h("ul", { class: "choices cast-choices" });
  const castFilter = h("input", { type: "search", id: nextId("cast-filter"), placeholder: "Filter actors" });
  const renderCast = () => {
    const term = castFilter.value.trim().toLowerCase();
    replace(castList, actors
      .filter((a) => !term || a.name.toLowerCase().includes(term) || castIds.has(a.id))
      .sort((a, b) => Number(castIds.has(b.id)) - Number(castIds.has(a.id)) || a.name.localeCompare(b.name))
      .slice(0, 200)
      .map((a) => {
        const id = nextId("actor");
        const box = h("input", { type: "checkbox", id, value: a.id, checked: castIds.has(a.id), "data-actor-id": a.id });
        box.addEventListener("change", () => { if (box.checked) castIds.add(a.id); else castIds.delete(a.id); });
        return h("li", { class: "checkbox" }, box, h("label", { htmlFor: id }, a.name, a.nationality ? ` (${a.nationality})` : ""));
      }));
    if (!actors.length) castList.append(h("li", { class: "hint" }, "No actors yet: add one below."));
  };
  castFilter.addEventListener("input", renderCast);
  renderCast();
  const newName = h("input", { type: "text", id: nextId("actor-name"), maxlength: "200", autocomplete: "off" });
  const newNation = h("input", { type: "text", id: nextId("actor-nat"), maxlength: "2", size: "3", autocomplete: "off" });
  const actorMessage = h("p", { class: "field-error", role: "alert", hidden: true });
  const addActor = h("button", { type: "button", class: "button secondary" }, "Add actor");
  addActor.addEventListener("click", async () => {
    actorMessage.hidden = true;
    if (!newName.value.trim()) {
      actorMessage.hidden = false;
      actorMessage.textContent = "Enter the actor's name.";
      newName.focus();
      return;
    }
    addActor.disabled = true;
    try {
      const body = { name: newName.value.trim() };
      if (newNation.value.trim()) body.nationality = newNation.value.trim().toUpperCase();
      const actor = await api("/api/actors", { method: "POST", body });
      actors.push(actor);
      castIds.add(actor.id);
      newName.value = "";
      newNation.value = "";
      renderCast();
      announce(`${actor.name} added to the cast.`);
    } catch (error) {
      actorMessage.hidden = false;
      actorMessage.textContent = error instanceof ApiError && error.errors.length
        ? error.errors.map((e) => `${e.field}: ${e.message}`).join("; ") : describe(error);
    } finally {
      addActor.disabled = false;
    }
  });
  const castError = h("p", { class: "field-error", id: "actor_ids-error", hidden: true });
  const castSet = h("fieldset", { class: "cast" },
    h("legend", {}, "Cast"),
    h("input", { type: "hidden", name: "actor_ids", id: "actor_ids" }),
    h("label", { htmlFor: castFilter.id, class: "visually-hidden" }, "Filter actors"), castFilter,
    castList, castError,
    h("div", { class: "inline-form" },
      h("div", { class: "field" }, h("label", { htmlFor: newName.id }, "New actor's name"), newName),
      h("div", { class: "field" }, h("label", { htmlFor: newNation.id }, "Nationality (2 letters)"), newNation),
      addActor),
    actorMessage);

  const el = h("form", { class: "form", novalidate: true, "aria-label": "Movie details" },
    title.wrap, description.wrap, h("div", { class: "row" }, year.wrap, rating.wrap), genresSet, castSet);

  return {
    el,
    value() {
      const yearValue = year.input.value.trim();
      const body = {
        title: title.input.value.trim(),
        description: description.input.value,
        release_year: yearValue ? Number(yearValue) : null,
        genres: [...el.querySelectorAll("[data-genre]:checked")].map((b) => b.value),
        age_rating: rating.input.value.trim() || null,
      };
      const ids = [...castIds];
      // Keep character names the API already knows (the `cast` form); else actor_ids.
      if (ids.some((id) => characters.get(id))) {
        body.cast = ids.map((id) => (characters.get(id) ? { actor_id: id, character: characters.get(id) } : { actor_id: id }));
      } else {
        body.actor_ids = ids;
      }
      return body;
    },
  };
}

function uploadPanel(movie, onUpdated) {
  let controller = null;
  const statusBadge = h("span", { class: `status status-${movie.status}`, "data-status": movie.status }, movie.status);
  const mediaInfo = h("div", { class: "media-info" });
  const posterSlot = h("div", { class: "poster-slot" });
  const renderMedia = () => {
    statusBadge.textContent = movie.status;
    statusBadge.className = `status status-${movie.status}`;
    statusBadge.dataset.status = movie.status;
    replace(posterSlot, movie.status === "ready" ? posterImage({ ...movie, poster_url: `/api/movies/${movie.id}/poster?v=${movie.media?.sha256?.slice(0, 12) || ""}` }, { alt: `Poster of ${movie.title}` }) : null);
    replace(mediaInfo, movie.media
      ? h("dl", {},
        h("dt", {}, "Video"), h("dd", {}, `${movie.media.video_codec} ${movie.media.width}×${movie.media.height}`),
        h("dt", {}, "Audio"), h("dd", {}, movie.media.audio_codec || "none"),
        h("dt", {}, "Duration"), h("dd", {}, formatDuration(movie.media.duration_s)),
        h("dt", {}, "Size"), h("dd", {}, formatBytes(movie.media.size_bytes)))
      : h("p", { class: "hint" }, "No video yet: viewers cannot watch this movie until one is uploaded."));
  };
  renderMedia();

  const fileInput = h("input", { type: "file", id: "video-file", name: "video", accept: "video/*,.mp4,.m4v,.mov,.mkv,.webm" });
  const uploadButton = h("button", { type: "button", class: "button", "data-action": "upload" }, movie.media ? "Replace video" : "Upload video");
  const cancelButton = h("button", { type: "button", class: "button secondary", hidden: true }, "Cancel upload");
  const progress = h("progress", { id: "upload-progress", max: "100", value: "0" });
  const progressText = h("span", { class: "progress-text", "aria-hidden": "true" }, "0%");
  const progressWrap = h("div", { class: "progress", hidden: true },
    h("label", { htmlFor: "upload-progress" }, "Upload progress"), progress, progressText);
  const statusLine = h("div", { class: "upload-status", role: "status", "aria-live": "polite" });

  uploadButton.addEventListener("click", async () => {
    const file = fileInput.files?.[0];
    if (!file) {
      replace(statusLine, h("p", { class: "field-error" }, "Choose a video file first."));
      fileInput.focus();
      return;
    }
    controller = new AbortController();
    uploadButton.disabled = true;
    fileInput.disabled = true;
    cancelButton.hidden = false;
    progressWrap.hidden = false;
    progress.value = 0;
    progressText.textContent = "0%";
    replace(statusLine, h("p", {}, `Uploading ${file.name} (${formatBytes(file.size)})…`));
    let announced = 0;
    const warnLeave = (e) => { e.preventDefault(); e.returnValue = ""; };
    window.addEventListener("beforeunload", warnLeave);
    try {
      const updated = await uploadFile(`/api/movies/${movie.id}/media`, file, {
        signal: controller.signal,
        onProgress(loaded, total) {
          const pct = total ? Math.min(100, Math.floor((loaded / total) * 100)) : 0;
          progress.value = pct;
          progressText.textContent = `${pct}% · ${formatBytes(loaded)} of ${formatBytes(total)}`;
          if (pct >= announced + 25) {
            announced = pct - (pct % 25);
            announce(`Upload ${announced}%`);
          }
        },
        onSent() {
          progress.value = 100;
          progressText.textContent = "100% · checking the video…";
          replace(statusLine, h("p", { class: "loading" }, "Upload complete; the server is checking the video (codecs, duration, poster)…"));
        },
      });
      movie = updated;
      onUpdated(updated);
      renderMedia();
      progressText.textContent = `100% · ${formatBytes(file.size)} uploaded and checked`;
      uploadButton.textContent = "Replace video";
      fileInput.value = "";
      replace(statusLine, h("p", { class: "notice ok", "data-upload": "done" }, `Video uploaded: the movie is ${updated.status} to stream.`));
    } catch (error) {
      progressWrap.hidden = error?.name === "AbortError";
      replace(statusLine, error?.name === "AbortError"
        ? h("p", { class: "notice info" }, "Upload cancelled; nothing was kept.")
        : errorBox(`Upload failed. ${describe(error)}`));
    } finally {
      window.removeEventListener("beforeunload", warnLeave);
      controller = null;
      uploadButton.disabled = false;
      fileInput.disabled = false;
      cancelButton.hidden = true;
    }
  });
  cancelButton.addEventListener("click", () => controller?.abort());

  const el = h("section", { class: "upload card", "aria-labelledby": "upload-heading" },
    h("h2", { id: "upload-heading" }, "Video"),
    h("p", {}, "Status: ", statusBadge),
    posterSlot, mediaInfo,
    h("div", { class: "field" }, h("label", { htmlFor: "video-file" }, "Video file"), fileInput,
      h("p", { class: "hint" }, "MP4 (H.264/AAC) plays in every browser. Large files are streamed to storage; you can follow the progress here.")),
    h("div", { class: "form-actions" }, uploadButton, cancelButton),
    progressWrap, statusLine);
  return { el, abort: () => controller?.abort() };
}
