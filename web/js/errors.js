// Human text for every `code` of the contract's problem+json errors. Codes not
// listed here fall back to the server's `detail`.

export const MESSAGES = {
  // accounts
  invalid_token: "Your session has expired. Please sign in again.",
  invalid_credentials: "The e-mail address or password is wrong.",
  email_taken: "An account with this e-mail address already exists. Try signing in instead.",
  too_many_attempts: "Too many sign-in attempts. Please wait a minute and try again.",
  wrong_password: "The current password is wrong.",
  admin_required: "Only administrators can do this.",
  forbidden: "You are not allowed to do this.",
  // plans, subscriptions, billing
  subscription_exists: "You already have a subscription. Cancel it before choosing another plan.",
  invalid_signature: "The billing provider's signature was rejected.",
  // playback
  not_entitled: "Your subscription does not include this movie right now.",
  too_many_streams: "Your plan's limit of simultaneous streams is reached. Stop another stream to watch here.",
  session_not_found: "This playback session has ended.",
  session_ended: "This playback session has ended.",
  wrong_movie: "This playback link belongs to another movie.",
  entitlements_unavailable: "Access cannot be verified right now. Please try again in a few seconds.",
  catalog_unavailable: "The movie cannot be located right now. Please try again in a few seconds.",
  // catalog and uploads
  not_found: "This item does not exist or was deleted.",
  validation_failed: "Some fields need attention.",
  payload_too_large: "This is too large to upload.",
  digest_mismatch: "The upload was corrupted on the way (checksum mismatch); nothing was kept. Please upload again.",
  unplayable_media: "This file is not a playable video; nothing was kept.",
  upload_incomplete: "The upload ended early; nothing was kept. Please upload again.",
  media_conflict: "The upload was replaced at the same time; please upload again.",
  // generic
  malformed_json: "The request could not be read (malformed JSON).",
  unsupported_media_type: "The request was sent in a format the server does not accept.",
  method_not_allowed: "This action is not supported.",
  internal_error: "Something went wrong on our side. Please try again.",
  http_error: "The request failed.",
  network_error: "Cannot reach Reelgate. Check your connection and try again.",
  bad_gateway: "Reelgate is temporarily unavailable. Please try again in a moment.",
  upstream_unavailable: "Reelgate is temporarily unavailable. Please try again in a moment.",
  upstream_timeout: "Reelgate took too long to answer. Please try again in a moment.",
};

// Why a movie cannot be played: `reason` of a 403 not_entitled (and of decisions).
export const REASONS = {
  ok: "You can watch this movie.",
  no_subscription: "You have no subscription. Choose a plan to start watching.",
  subscription_inactive: "Your subscription is not active (payment pending, failed or the period has ended).",
  not_in_plan: "This movie is not included in your plan.",
  movie_unavailable: "This movie is not available for streaming.",
  user_disabled: "Your account is disabled.",
};

// Answers without a problem body (e.g. from a proxy in front of the nodes).
const FALLBACK_CODES = {
  0: "network_error", 401: "invalid_token", 403: "forbidden", 404: "not_found", 413: "payload_too_large",
  429: "too_many_attempts", 502: "bad_gateway", 503: "bad_gateway", 504: "upstream_timeout",
};

export class ApiError extends Error {
  constructor(status, problem = {}) {
    const code = problem.code || FALLBACK_CODES[status] || (status >= 500 ? "internal_error" : "http_error");
    super(messageFor(code, problem));
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = problem.detail || "";
    this.problem = problem;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.reason = problem.reason || null;
    this.sessions = Array.isArray(problem.sessions) ? problem.sessions : [];
    this.retryAfter = problem.retryAfter || null;
  }
}

export function messageFor(code, problem = {}) {
  if (code === "not_entitled" && problem.reason && REASONS[problem.reason]) {
    return REASONS[problem.reason];
  }
  if (code === "too_many_attempts" && problem.retryAfter) {
    return `Too many sign-in attempts. Please wait ${problem.retryAfter} seconds and try again.`;
  }
  return MESSAGES[code] || problem.detail || problem.title || MESSAGES.http_error;
}

/** Text for any error thrown by the API layer (or anything else). */
export function describe(error) {
  if (error instanceof ApiError) return error.message;
  if (error?.name === "AbortError") return "The request was cancelled.";
  return MESSAGES.network_error;
}
