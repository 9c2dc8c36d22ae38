// One playback session in an HTML5 <video>: POST /api/playback, heartbeats
// every heartbeat_interval_s while the page is open (paused too), resume
// position, recovery when the session or the stream drops, and the end of the
// session when the page goes away (fetch keepalive on pagehide).

import { api, clientId, sendKeepalive } from "./api.js";
import { ApiError } from "./errors.js";

const RESUME_MIN_S = 2;
const RESUME_TAIL_S = 3;
const MAX_RECOVERIES = 3;

export class Playback {
  /**
   * @param {HTMLVideoElement} video
   * @param {object} movie
   * @param {object} hooks  onStarted(session), onBlocked(error) for 409,
   *   onLocked(error) for 403, onError(error, kind), onStatus(text), onResumed(seconds)
   */
  constructor(video, movie, hooks) {
    this.video = video;
    this.movie = movie;
    this.hooks = hooks;
    this.session = null;
    this.timer = 0;
    this.seekTimer = 0;
    this.pendingSeek = null; // seconds to jump to once metadata is known
    this.recoveries = 0;
    this.failures = 0;
    this.closed = false;
    this.onPageHide = this.onPageHide.bind(this);
    this.onPageShow = this.onPageShow.bind(this);
    this.onMediaError = this.onMediaError.bind(this);
    this.onPause = () => this.heartbeatSoon(0);
    this.onSeeked = () => this.heartbeatSoon(500);
    this.onPlaying = () => { this.recoveries = 0; };
    window.addEventListener("pagehide", this.onPageHide);
    window.addEventListener("pageshow", this.onPageShow);
    video.addEventListener("error", this.onMediaError);
    video.addEventListener("pause", this.onPause);
    video.addEventListener("seeked", this.onSeeked);
    video.addEventListener("playing", this.onPlaying);
  }

  /** Where the viewer stopped last time (GET /api/me/progress), or 0. */
  async storedPosition() {
    let page = 1;
    for (;;) {
      const data = await api(`/api/me/progress?page=${page}&per_page=100`);
      const hit = (data.items || []).find((p) => p.movie_id === this.movie.id);
      if (hit) return Number(hit.position_s) || 0;
      if (page * 100 >= (data.total || 0)) return 0;
      page += 1;
    }
  }

  /** Start (or take back) a session and begin playing at `at` seconds. */
  async start({ at = 0, autoplay = true } = {}) {
    this.closed = false;
    const ok = await this.acquire();
    if (!ok) return false;
    const duration = this.movie.duration_s || this.movie.media?.duration_s || Infinity;
    const resumeAt = at >= RESUME_MIN_S && at < duration - RESUME_TAIL_S ? at : 0;
    this.load(resumeAt, autoplay);
    if (resumeAt) this.hooks.onResumed?.(resumeAt);
    return true;
  }

  async acquire() {
    try {
      const session = await api("/api/playback", {
        method: "POST", body: { movie_id: this.movie.id, client_id: clientId() },
      });
      if (this.closed) {
        // The page moved on while we waited: give the slot back.
        this.release(session.session_id);
        return false;
      }
      this.session = session;
      this.failures = 0;
      this.schedule();
      this.hooks.onStarted?.(session);
      return true;
    } catch (error) {
      if (this.closed) return false;
      if (error instanceof ApiError && error.code === "too_many_streams") this.hooks.onBlocked?.(error);
      else if (error instanceof ApiError && error.code === "not_entitled") this.hooks.onLocked?.(error);
      else this.hooks.onError?.(error, "start");
      return false;
    }
  }

  /** Point the <video> at the session's stream URL and seek to `at`. */
  load(at, autoplay) {
    const video = this.video;
    this.pendingSeek = at > 0 ? at : null;
    video.addEventListener("loadedmetadata", () => {
      if (this.pendingSeek !== null) {
        video.currentTime = Math.min(this.pendingSeek, (video.duration || this.pendingSeek) - 0.5);
      }
      this.pendingSeek = null;
      if (autoplay) {
        video.play().catch((error) => {
          if (error?.name === "NotAllowedError") this.hooks.onStatus?.("Press play to start.");
        });
      }
    }, { once: true });
    video.src = this.session.stream_url; // the only URL that carries a token
    video.load();
  }

  /** The position to record: the pending resume target until the seek happened. */
  position() {
    if (this.pendingSeek !== null) return this.pendingSeek;
    const t = this.video.currentTime;
    return Number.isFinite(t) && t >= 0 ? Math.round(t * 10) / 10 : 0;
  }

  schedule() {
    clearInterval(this.timer);
    const seconds = Math.max(1, Number(this.session?.heartbeat_interval_s) || 30);
    this.timer = setInterval(() => this.heartbeat(), seconds * 1000);
  }

  heartbeatSoon(delay) {
    clearTimeout(this.seekTimer);
    this.seekTimer = setTimeout(() => this.heartbeat(), delay);
  }

  async heartbeat() {
    const session = this.session;
    if (!session || this.closed) return;
    try {
      await api(`/api/playback/${session.session_id}/heartbeat`, {
        method: "POST", body: { position_s: this.position() }, retry: false,
      });
      if (this.failures) this.hooks.onStatus?.("Connection restored.");
      this.failures = 0;
    } catch (error) {
      if (this.closed || this.session !== session) return;
      if (error instanceof ApiError && error.code === "session_not_found") {
        // The session lapsed (or was stopped elsewhere): take a new one in place.
        await this.recover();
      } else if (error instanceof ApiError && error.code === "not_entitled") {
        this.halt();
        this.hooks.onLocked?.(error);
      } else if (error instanceof ApiError && error.status === 401) {
        this.halt();
        this.hooks.onError?.(error, "auth");
      } else {
        this.failures += 1;
        if (this.failures >= 2) this.hooks.onStatus?.("Connection problem: keeping your session alive…");
      }
    }
  }

  /** New session, same place, same paused/playing state. */
  async recover() {
    if (this.recoveries >= MAX_RECOVERIES) {
      this.halt();
      this.hooks.onError?.(new Error("playback keeps failing"), "media");
      return;
    }
    this.recoveries += 1;
    const at = this.position();
    const wasPlaying = !this.video.paused;
    clearInterval(this.timer);
    this.session = null;
    if (await this.acquire()) this.load(at, wasPlaying);
  }

  onMediaError() {
    if (this.closed || !this.session || !this.video.getAttribute("src")) return;
    const code = this.video.error?.code;
    // 2 = network, 4 = source refused (e.g. 403 session ended): a new session may fix it.
    if (code === 2 || code === 4) this.recover();
    else this.hooks.onError?.(this.video.error, "media");
  }

  onPageHide() {
    if (!this.session) return;
    const id = this.session.session_id;
    sendKeepalive(`/api/playback/${id}/heartbeat`, { body: { position_s: this.position() } });
    sendKeepalive(`/api/playback/${id}`, { method: "DELETE" });
    clearInterval(this.timer);
    this.session = null;
    this.hidden = true;
  }

  onPageShow(event) {
    // Back from the back/forward cache: the session was ended on pagehide.
    if (event.persisted && this.hidden && !this.closed) {
      this.hidden = false;
      this.recover();
    }
  }

  release(sessionId) {
    api(`/api/playback/${sessionId}`, { method: "DELETE", retry: false }).catch(() => {});
  }

  /** Stop the media and timers; keep the page's state. */
  halt() {
    clearInterval(this.timer);
    clearTimeout(this.seekTimer);
    this.session = null;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load(); // aborts the stream request
  }

  /** Leaving the page (in-app navigation): record the position, end the session. */
  close() {
    if (this.closed) return Promise.resolve();
    const session = this.session;
    const position = this.position();
    this.closed = true;
    this.halt();
    window.removeEventListener("pagehide", this.onPageHide);
    window.removeEventListener("pageshow", this.onPageShow);
    this.video.removeEventListener("error", this.onMediaError);
    this.video.removeEventListener("pause", this.onPause);
    this.video.removeEventListener("seeked", this.onSeeked);
    this.video.removeEventListener("playing", this.onPlaying);
    if (!session) return Promise.resolve();
    return api(`/api/playback/${session.session_id}/heartbeat`, { method: "POST", body: { position_s: position }, retry: false })
      .catch(() => {})
      .then(() => api(`/api/playback/${session.session_id}`, { method: "DELETE", retry: false }))
      .catch(() => {});
  }
}
