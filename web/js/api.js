// The API client: JSON over fetch, the signed-in session and token refresh.
//
// Tokens: the access token lives in memory only; the refresh token in
// sessionStorage (this tab only, gone when the tab closes) so that a reload
// keeps the viewer signed in. Neither ever goes into a URL: the only URL that
// carries a token is a playback stream_url, which the server hands out.

import { ApiError, MESSAGES } from "./errors.js";
import { sleep } from "./dom.js";

const REFRESH_KEY = "reelgate.refresh_token";
const CLIENT_KEY = "reelgate.client_id";
const REQUEST_TIMEOUT_MS = 20000;
const RETRY_DELAYS_MS = [400, 1200];

let accessToken = null;
let accessExpiresAt = 0;
let currentUser = null;
let refreshing = null;
const listeners = new Set();

export const session = {
  get user() { return currentUser; },
  get signedIn() { return currentUser !== null && accessToken !== null; },
  get isAdmin() { return currentUser?.role === "admin"; },
  /** Authorization header value, for the few requests made outside `api()`. */
  get bearer() { return accessToken ? `Bearer ${accessToken}` : null; },
  onChange(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

function emit() {
  for (const listener of listeners) {
    try { listener(currentUser); } catch (error) { console.error(error); }
  }
}

function storeRefresh(token) {
  try {
    if (token) sessionStorage.setItem(REFRESH_KEY, token);
    else sessionStorage.removeItem(REFRESH_KEY);
  } catch { /* storage disabled: the session lasts as long as the page */ }
  memoryRefresh = token;
}
let memoryRefresh = null;
function loadRefresh() {
  try { return sessionStorage.getItem(REFRESH_KEY) || memoryRefresh; } catch { return memoryRefresh; }
}

function acceptPair(pair) {
  accessToken = pair.access_token;
  accessExpiresAt = Date.now() + (Number(pair.expires_in) || 300) * 1000;
  storeRefresh(pair.refresh_token);
}

function forget() {
  const had = currentUser !== null || accessToken !== null;
  accessToken = null;
  accessExpiresAt = 0;
  currentUser = null;
  storeRefresh(null);
  if (had) emit();
}

/** A stable id for this browser, so a reload gets its playback session back. */
export function clientId() {
  let id = null;
  try { id = localStorage.getItem(CLIENT_KEY); } catch { /* private mode */ }
  if (!id || !/^[A-Za-z0-9._:-]{1,100}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try { localStorage.setItem(CLIENT_KEY, id); } catch { /* keep it for this page */ }
  }
  return id;
}

/** Exchange the refresh token for a new pair (once at a time: tokens rotate). */
export function refreshTokens() {
  if (!refreshing) {
    refreshing = (async () => {
      const token = loadRefresh();
      if (!token) return false;
      try {
        const pair = await request("/api/auth/refresh", {
          method: "POST", body: { refresh_token: token }, auth: false, retry: false,
        });
        acceptPair(pair);
        return true;
      } catch (error) {
        if (error instanceof ApiError && (error.status === 401 || error.status === 422)) {
          forget();
          return false;
        }
        throw error; // offline or server trouble: keep the refresh token for later
      }
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** On page load: resume the session kept in sessionStorage, if any. */
export async function restoreSession() {
  if (!loadRefresh()) return null;
  try {
    if (await refreshTokens()) await loadMe();
  } catch (error) {
    console.warn("could not restore the session", error);
  }
  return currentUser;
}

async function loadMe() {
  currentUser = await api("/api/users/me");
  emit();
  return currentUser;
}

export async function signIn(email, password) {
  const pair = await api("/api/auth/login", { method: "POST", body: { email, password }, auth: false });
  acceptPair(pair);
  return loadMe();
}

export async function signUp(name, email, password) {
  await api("/api/auth/register", { method: "POST", body: { name, email, password }, auth: false });
  return signIn(email, password);
}

export async function signOut() {
  const token = loadRefresh();
  try {
    if (accessToken) {
      await api("/api/auth/logout", { method: "POST", body: { refresh_token: token || undefined } });
    }
  } catch (error) {
    console.warn("logout request failed; forgetting the session locally", error);
  } finally {
    forget();
  }
}

function withTimeout(signal) {
  const timeout = AbortSignal.timeout ? AbortSignal.timeout(REQUEST_TIMEOUT_MS) : null;
  if (!signal) return timeout;
  if (!timeout) return signal;
  return AbortSignal.any ? AbortSignal.any([signal, timeout]) : signal;
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try { return await response.json(); } catch { return null; }
  }
  return await response.text();
}

/** One HTTP exchange: JSON in/out, problem+json turned into ApiError. */
async function request(path, { method = "GET", body, auth = true, signal, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal: withTimeout(signal) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (auth && accessToken) init.headers.Authorization = `Bearer ${accessToken}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (signal?.aborted) throw error;
    if (error?.name === "TimeoutError") {
      throw new ApiError(0, { code: "network_error", detail: "The request timed out." });
    }
    throw new ApiError(0, { code: "network_error", detail: MESSAGES.network_error });
  }
  const data = await parse(response);
  if (!response.ok) {
    const problem = data && typeof data === "object" ? { ...data } : {};
    const retryAfter = response.headers.get("Retry-After");
    if (retryAfter) problem.retryAfter = retryAfter;
    throw new ApiError(response.status, problem);
  }
  return data;
}

/**
 * Call the API. `auth`: send the access token when signed in (default).
 * Idempotent GETs are retried on network errors and 502/503/504; a 401 on a
 * request that carried an access token triggers one refresh and one retry.
 */
export async function api(path, options = {}) {
  const { auth = true, signal } = options;
  const method = options.method || "GET";
  const retry = options.retry ?? method === "GET";
  if (auth && accessToken && Date.now() > accessExpiresAt - 20000) {
    try { await refreshTokens(); } catch { /* try the request anyway */ }
  }
  let attempt = 0;
  let refreshed = false;
  for (;;) {
    const sentToken = auth && accessToken;
    try {
      return await request(path, options);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401 && sentToken && !refreshed && error.code === "invalid_token") {
        refreshed = true;
        if (await refreshTokens().catch(() => false)) continue;
        forget();
        throw error;
      }
      const transient = error.status === 0 || error.status === 502 || error.status === 503 || error.status === 504;
      if (retry && transient && attempt < RETRY_DELAYS_MS.length) {
        const hinted = Number(error.problem.retryAfter) * 1000;
        const delay = Number.isFinite(hinted) && hinted > 0 ? Math.min(hinted, 5000) : RETRY_DELAYS_MS[attempt];
        attempt += 1;
        await sleep(delay, signal);
        continue;
      }
      throw error;
    }
  }
}

/** Every item of a paginated list (per_page 100). */
export async function apiAll(path, options = {}) {
  const items = [];
  const sep = path.includes("?") ? "&" : "?";
  for (let page = 1; page < 1000; page += 1) {
    const data = await api(`${path}${sep}page=${page}&per_page=100`, options);
    items.push(...(data.items || []));
    if (items.length >= (data.total ?? 0) || !(data.items || []).length) break;
  }
  return items;
}

/**
 * A request that must outlive the page (pagehide): fetch with keepalive.
 * Fire and forget; the browser sends it even while the page unloads.
 */
export function sendKeepalive(path, { method = "POST", body } = {}) {
  if (!accessToken) return;
  const headers = { Authorization: `Bearer ${accessToken}` };
  const init = { method, headers, keepalive: true };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    fetch(path, init).catch(() => { /* the page is going away anyway */ });
  } catch { /* keepalive quota exceeded: nothing more to do */ }
}

/**
 * PUT a file with XMLHttpRequest (fetch has no upload progress). Resolves with
 * the movie; rejects with ApiError. `onProgress(loaded, total)`; `onSent()`
 * once every byte left the browser (the server is probing it then).
 */
export function uploadFile(path, file, { onProgress, onSent, signal } = {}) {
  const attempt = () => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", path);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    if (accessToken) xhr.setRequestHeader("Authorization", `Bearer ${accessToken}`);
    xhr.upload.addEventListener("progress", (event) => {
      onProgress?.(event.loaded, event.lengthComputable ? event.total : file.size);
    });
    xhr.upload.addEventListener("load", () => onSent?.());
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data && typeof data === "object" ? data : {}));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { code: "network_error" })));
    xhr.addEventListener("timeout", () => reject(new ApiError(0, { code: "network_error" })));
    xhr.addEventListener("abort", () => reject(new DOMException("Upload cancelled", "AbortError")));
    if (signal) {
      if (signal.aborted) { xhr.abort(); return; }
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(file);
  });
  return (async () => {
    if (accessToken && Date.now() > accessExpiresAt - 60000) await refreshTokens().catch(() => false);
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && await refreshTokens().catch(() => false)) {
        return attempt();
      }
      throw error;
    }
  })();
}
