// Small DOM helpers. Server data only ever reaches the page as text nodes or
// attribute values (never innerHTML), so titles and descriptions cannot inject markup.

const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "required",
  "readOnly", "multiple", "indeterminate", "textContent", "htmlFor"]);

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let statusTimer = 0;
/** Polite announcement for screen readers (the #status live region). */
export function announce(message) {
  const region = document.getElementById("status");
  if (!region) return;
  clearTimeout(statusTimer);
  region.textContent = "";
  // A fresh text node after a tick makes repeated identical messages heard too.
  statusTimer = setTimeout(() => { region.textContent = message; }, 50);
}

let uid = 0;
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form control: returns {wrap, input}. */
export function field(label, control, { hint, id } = {}) {
  const controlId = id || control.id || nextId("field");
  control.id = controlId;
  const hintEl = hint ? h("p", { class: "hint", id: `${controlId}-hint` }, hint) : null;
  const errorEl = h("p", { class: "field-error", id: `${controlId}-error`, hidden: true });
  const described = [hintEl && hintEl.id, errorEl.id].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  if (!control.name) control.name = controlId;
  const wrap = h("div", { class: "field" }, h("label", { htmlFor: controlId }, label), control,
    hintEl, errorEl);
  return { wrap, input: control, error: errorEl };
}

/** Show per-field validation messages from a 422 problem; returns the unmatched ones. */
export function showFieldErrors(form, errors = []) {
  clearFieldErrors(form);
  const unmatched = [];
  let first = null;
  for (const { field: name, message } of errors) {
    const key = String(name || "").split(".").pop();
    const control = form.querySelector(`[name="${CSS.escape(key)}"]`);
    const errorEl = control && document.getElementById(`${control.id}-error`);
    if (!control || !errorEl) {
      unmatched.push(`${name}: ${message}`);
      continue;
    }
    control.setAttribute("aria-invalid", "true");
    errorEl.hidden = false;
    errorEl.textContent = message;
    first = first || control;
  }
  if (first) first.focus();
  return unmatched;
}

export function clearFieldErrors(form) {
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) {
    el.hidden = true;
    el.textContent = "";
  }
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.floor(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatPrice(cents, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
  } catch {
    return `${(cents / 100).toFixed(2)} ${currency}`;
  }
}

export function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function genreLabel(genre) {
  if (genre === "*") return "All genres";
  return genre.charAt(0).toUpperCase() + genre.slice(1).replaceAll("-", " ");
}

/** A "Loading…" placeholder with aria-busy on the container. */
export function loading(container, text = "Loading…") {
  container.setAttribute("aria-busy", "true");
  replace(container, h("p", { class: "loading" }, text));
}

export function done(container) {
  container.removeAttribute("aria-busy");
}

/** An error box with an optional retry button. */
export function errorBox(message, retry) {
  return h("div", { class: "notice error", role: "alert" },
    h("p", {}, message),
    retry ? h("button", { type: "button", class: "button", onclick: retry }, "Try again") : null);
}

export function notice(message, kind = "info") {
  return h("div", { class: `notice ${kind}` }, message);
}

const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = {
  // 24x24 outline icons, drawn with the current text colour.
  lock: ["M7 11V8a5 5 0 0 1 10 0v3", "M5 11h14v10H5z", "M12 15v2"],
};

/** A decorative icon (aria-hidden): emoji fonts are not everywhere. */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason ?? new DOMException("Aborted", "AbortError"));
    }, { once: true });
  });
}
