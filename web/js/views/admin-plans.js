// Admin: plans (create, edit, delete, restore) and the movies each plan includes.

import { api, apiAll } from "../api.js";
import { genres } from "./catalog.js";
import {
  announce, clearFieldErrors, errorBox, field, formatPrice, genreLabel, h, loading, nextId, replace,
  showFieldErrors,
} from "../dom.js";
import { ApiError, describe } from "../errors.js";

export async function adminPlansView({ root, query, signal, navigate }) {
  const withDeleted = query.get("deleted") === "1";
  const deletedBox = h("input", { type: "checkbox", id: "plans-deleted", checked: withDeleted });
  deletedBox.addEventListener("change", () => navigate(deletedBox.checked ? "#/admin/plans?deleted=1" : "#/admin/plans"));
  const table = h("div", { class: "table-wrap" });
  replace(root,
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Manage plans"),
      h("a", { class: "button", href: "#/admin/plans/new" }, "New plan")),
    h("div", { class: "filters" }, h("div", { class: "field checkbox" }, deletedBox, h("label", { htmlFor: "plans-deleted" }, "Include deleted plans"))),
    table);

  async function load() {
    loading(table, "Loading plans…");
    try {
      const plans = await apiAll(`/api/plans${withDeleted ? "?with_deleted=true" : ""}`, { signal });
      table.removeAttribute("aria-busy");
      if (!plans.length) {
        replace(table, h("p", { class: "empty" }, "No plans yet. ", h("a", { href: "#/admin/plans/new" }, "Create one")));
        return;
      }
      replace(table, h("table", {},
        h("caption", { class: "visually-hidden" }, "Plans"),
        h("thead", {}, h("tr", {}, ["Name", "Price", "Streams", "Max quality", "New movies from", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, plans.map((plan) => {
          const message = h("span", { class: "row-message", role: "status" });
          const lifecycle = h("button", {
            type: "button", class: plan.deleted_at ? "button secondary" : "button danger",
            "aria-label": `${plan.deleted_at ? "Restore" : "Delete"} plan ${plan.name}`,
          }, plan.deleted_at ? "Restore" : "Delete");
          lifecycle.addEventListener("click", async () => {
            lifecycle.disabled = true;
            try {
              if (plan.deleted_at) await api(`/api/plans/${plan.id}/restore`, { method: "POST" });
              else await api(`/api/plans/${plan.id}`, { method: "DELETE" });
              announce(`Plan ${plan.name} ${plan.deleted_at ? "restored" : "deleted"}.`);
              await load();
            } catch (error) {
              lifecycle.disabled = false;
              message.textContent = describe(error);
            }
          });
          return h("tr", { "data-plan-id": plan.id, class: plan.deleted_at ? "deleted" : null },
            h("th", { scope: "row" }, h("a", { href: `#/admin/plans/${plan.id}` }, plan.name), plan.deleted_at ? h("span", { class: "status status-deleted" }, " deleted") : null),
            h("td", {}, formatPrice(plan.price_cents, plan.currency)),
            h("td", {}, plan.max_streams),
            h("td", {}, `${plan.max_height}p`),
            h("td", {}, plan.genres.map(genreLabel).join(", ") || "none (hand-picked)"),
            h("td", { class: "actions" },
              h("a", { class: "button secondary", href: `#/admin/plans/${plan.id}`, "aria-label": `Edit plan ${plan.name}` }, "Edit"),
              lifecycle, message));
        }))));
    } catch (error) {
      if (signal.aborted) return;
      table.removeAttribute("aria-busy");
      replace(table, errorBox(`Could not load the plans. ${describe(error)}`, load));
    }
  }
  await load();
}

export async function adminPlanEditView({ root, params, signal, navigate }) {
  const [planId] = params;
  const creating = !planId;
  loading(root, "Loading…");
  let plan = null;
  let allGenres = [];
  try {
    [plan, allGenres] = await Promise.all([
      creating ? null : api(`/api/plans/${planId}?with_deleted=true`, { signal }),
      genres(signal),
    ]);
  } catch (error) {
    if (signal.aborted) return;
    root.removeAttribute("aria-busy");
    replace(root, h("h1", { tabindex: "-1" }, "Plan"), errorBox(error instanceof ApiError && error.status === 404 ? "This plan does not exist." : describe(error),
      () => adminPlanEditView({ root, params, signal, navigate })));
    return;
  }
  root.removeAttribute("aria-busy");

  const name = field("Name", h("input", { type: "text", name: "name", required: true, maxlength: "200", value: plan?.name || "" }));
  const price = field("Price per period", h("input", { type: "number", name: "price_cents", min: "0", step: "0.01", required: true, inputmode: "decimal", value: plan ? (plan.price_cents / 100).toFixed(2) : "" }), { hint: "In the currency below, e.g. 9.99." });
  const currency = field("Currency", h("input", { type: "text", name: "currency", required: true, maxlength: "3", pattern: "[A-Za-z]{3}", value: plan?.currency || "EUR", autocomplete: "off" }), { hint: "ISO 4217 code, e.g. EUR." });
  const streams = field("Simultaneous streams", h("input", { type: "number", name: "max_streams", min: "1", max: "100", required: true, value: plan?.max_streams ?? 1 }));
  const height = field("Highest video quality (pixels)", h("select", { name: "max_height" },
    [360, 480, 720, 1080, 1440, 2160, ...(plan && ![360, 480, 720, 1080, 1440, 2160].includes(plan.max_height) ? [plan.max_height] : [])]
      .map((v) => h("option", { value: String(v), selected: (plan?.max_height ?? 1080) === v }, `${v}p`))));
  const chosen = new Set(plan?.genres || []);
  const allId = nextId("genre-all");
  const allBox = h("input", { type: "checkbox", id: allId, value: "*", checked: chosen.has("*"), "data-genre": "*" });
  const boxes = allGenres.map((g) => {
    const id = nextId("plan-genre");
    return h("div", { class: "checkbox" }, h("input", { type: "checkbox", id, value: g, checked: chosen.has(g), "data-genre": g }), h("label", { htmlFor: id }, genreLabel(g)));
  });
  const syncAll = () => { for (const b of boxes) b.querySelector("input").disabled = allBox.checked; };
  allBox.addEventListener("change", syncAll);
  syncAll();
  const genreSet = h("fieldset", { class: "choices", "aria-describedby": "genres-hint genres-error" },
    h("legend", {}, "New movies of these genres join the plan automatically"),
    h("p", { class: "hint", id: "genres-hint" }, "Existing movies are added below, one by one."),
    h("input", { type: "hidden", name: "genres", id: "genres" }),
    h("div", { class: "checkbox span-all" }, allBox, h("label", { htmlFor: allId }, "Every new movie (all genres)")),
    boxes, h("p", { class: "field-error", id: "genres-error", hidden: true }));
  const message = h("div", { class: "form-message" });
  const save = h("button", { type: "submit", class: "button" }, creating ? "Create plan" : "Save plan");
  const form = h("form", { class: "form", novalidate: true, "aria-label": "Plan" },
    name.wrap, h("div", { class: "row" }, price.wrap, currency.wrap), h("div", { class: "row" }, streams.wrap, height.wrap),
    genreSet, message, h("div", { class: "form-actions" }, save, h("a", { class: "button secondary", href: "#/admin/plans" }, "Back to plans")));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    replace(message);
    const cents = Math.round(Number.parseFloat(price.input.value) * 100);
    const body = {
      name: name.input.value.trim(),
      price_cents: Number.isFinite(cents) ? cents : -1,
      currency: currency.input.value.trim().toUpperCase(),
      max_streams: Number.parseInt(streams.input.value, 10),
      max_height: Number.parseInt(height.input.value, 10),
      genres: allBox.checked ? ["*"] : [...form.querySelectorAll("[data-genre]:checked")].map((b) => b.value),
    };
    const local = [];
    if (!body.name) local.push({ field: "name", message: "A name is required." });
    if (!(body.price_cents >= 0)) local.push({ field: "price_cents", message: "Enter a price of 0 or more." });
    if (!(body.max_streams >= 1)) local.push({ field: "max_streams", message: "At least 1 stream." });
    if (local.length) { showFieldErrors(form, local); return; }
    save.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const saved = creating
        ? await api("/api/plans", { method: "POST", body })
        : await api(`/api/plans/${plan.id}`, { method: "PATCH", body });
      announce(`Plan ${saved.name} saved.`);
      if (creating) { navigate(`#/admin/plans/${saved.id}`); return; }
      plan = saved;
      replace(message, h("p", { class: "notice ok", role: "status" }, "Plan saved."));
    } catch (error) {
      const unmatched = error instanceof ApiError && error.code === "validation_failed" ? showFieldErrors(form, error.errors) : [];
      replace(message, errorBox([describe(error), ...unmatched].join(" ")));
    } finally {
      save.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });

  const moviesSection = creating ? null : h("section", { "aria-labelledby": "plan-movies-heading", class: "plan-movies" });
  replace(root,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/admin/plans" }, "← Manage plans")),
    h("h1", { tabindex: "-1" }, creating ? "New plan" : `Edit plan “${plan.name}”`),
    plan?.deleted_at ? h("p", { class: "notice warning" }, "This plan is deleted: new viewers cannot subscribe; existing subscribers keep it.") : null,
    h("div", { class: creating ? "" : "two-columns" }, form, moviesSection));
  if (moviesSection) await planMovies(moviesSection, plan, signal);
}

async function planMovies(section, plan, signal) {
  const body = h("div", {});
  const filter = h("input", { type: "search", id: "plan-movie-filter" });
  replace(section, h("h2", { id: "plan-movies-heading" }, "Movies in this plan"),
    h("div", { class: "field" }, h("label", { htmlFor: "plan-movie-filter" }, "Filter movies"), filter), body);
  const load = async () => {
    loading(body, "Loading movies…");
    try {
      const [movies, ids] = await Promise.all([
        apiAll("/api/movies?sort=title", { signal }),
        apiAll(`/api/plans/${plan.id}/movies`, { signal }),
      ]);
      body.removeAttribute("aria-busy");
      const member = new Set(ids);
      const count = h("p", { class: "count", role: "status" });
      const updateCount = () => { count.textContent = `${[...member].filter((id) => movies.some((m) => m.id === id)).length} of ${movies.length} movies included.`; };
      updateCount();
      const list = h("ul", { class: "choices plan-movie-list" }, movies.map((movie) => {
        const id = nextId("plan-movie");
        const box = h("input", { type: "checkbox", id, checked: member.has(movie.id), "data-movie-id": movie.id });
        const note = h("span", { class: "row-message" });
        box.addEventListener("change", async () => {
          const include = box.checked;
          box.disabled = true;
          note.textContent = include ? "Adding…" : "Removing…";
          try {
            await api(`/api/plans/${plan.id}/movies/${movie.id}`, { method: include ? "PUT" : "DELETE" });
            if (include) member.add(movie.id); else member.delete(movie.id);
            note.textContent = include ? "Added" : "Removed";
            announce(`${movie.title} ${include ? "added to" : "removed from"} ${plan.name}.`);
            updateCount();
          } catch (error) {
            box.checked = !include;
            note.textContent = describe(error);
          } finally {
            box.disabled = false;
          }
        });
        return h("li", { class: "checkbox", "data-title": movie.title.toLowerCase() }, box,
          h("label", { htmlFor: id }, movie.title, movie.status !== "ready" ? ` (${movie.status})` : ""), note);
      }));
      filter.addEventListener("input", () => {
        const term = filter.value.trim().toLowerCase();
        for (const li of list.children) li.hidden = Boolean(term) && !li.dataset.title.includes(term);
      });
      replace(body, count, movies.length ? list : h("p", { class: "empty" }, "The catalog has no movies yet."));
    } catch (error) {
      if (signal.aborted) return;
      body.removeAttribute("aria-busy");
      replace(body, errorBox(`Could not load the plan's movies. ${describe(error)}`, load));
    }
  };
  await load();
}
