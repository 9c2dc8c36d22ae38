// What the signed-in viewer may watch, and why not: GET /api/me/movies gives
// the watchable set; the subscription status and the plan's movie list
// explain everything else (a viewer may not call /api/entitlements/check).

import { api, apiAll, session } from "./api.js";
import { formatDate } from "./dom.js";

const LIVE = ["pending_payment", "active", "trialing", "past_due"];

/** Loads the viewer's access picture; null when signed out. */
export async function loadAccess({ signal } = {}) {
  if (!session.signedIn) return null;
  const userId = session.user.id;
  const [watchable, subscriptions] = await Promise.all([
    apiAll("/api/me/movies", { signal }),
    apiAll(`/api/subscriptions?user_id=${encodeURIComponent(userId)}`, { signal }),
  ]);
  const subscription = pickSubscription(subscriptions);
  let plan = null;
  let planMovies = null;
  if (subscription) {
    [plan, planMovies] = await Promise.all([
      api(`/api/plans/${subscription.plan_id}`, { signal }).catch(() => null),
      apiAll(`/api/plans/${subscription.plan_id}/movies`, { signal }).then((ids) => new Set(ids)).catch(() => null),
    ]);
  }
  return {
    watchable: new Set(watchable.map((movie) => movie.id)),
    subscription,
    plan,
    planMovies,
  };
}

/** The subscription that matters: the live one, else the most recent. */
export function pickSubscription(subscriptions) {
  const byNewest = [...subscriptions].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  return byNewest.find((s) => LIVE.includes(s.status)) || byNewest[0] || null;
}

export function isEntitling(subscription) {
  if (!subscription || !["active", "trialing"].includes(subscription.status)) return false;
  return !subscription.current_period_end || new Date(subscription.current_period_end) > new Date();
}

/** One line on the viewer's subscription, for banners. */
export function subscriptionSummary(access) {
  const sub = access?.subscription;
  const planName = access?.plan ? `“${access.plan.name}”` : "your plan";
  if (!sub) return { kind: "info", text: "You have no subscription yet. Choose a plan to start watching." };
  switch (sub.status) {
    case "pending_payment":
      return { kind: "warning", text: `Your subscription to ${planName} is waiting for payment confirmation from the billing provider. Movies unlock as soon as it arrives.` };
    case "past_due":
      return { kind: "warning", text: `The last payment for ${planName} failed. Streaming resumes when the billing provider confirms a payment.` };
    case "canceled":
      return { kind: "info", text: `Your subscription to ${planName} was cancelled. Choose a plan to watch again.` };
    case "expired":
      return { kind: "info", text: `Your subscription to ${planName} has expired. Choose a plan to watch again.` };
    default:
      if (!isEntitling(sub)) {
        return { kind: "warning", text: `Your subscription period for ${planName} ended on ${formatDate(sub.current_period_end)}; waiting for the renewal payment.` };
      }
      return { kind: "ok", text: `Plan ${planName}: active until ${formatDate(sub.current_period_end)}.` };
  }
}

/**
 * Why `movie` is locked for this viewer, or null when it can be played.
 * Returns {reason, text, action: {href, label}}; `reason` uses the
 * contract's decision vocabulary.
 */
export function lockReason(movie, access) {
  if (movie.deleted_at) return { reason: "movie_unavailable", text: "This movie was removed from the catalog." };
  if (movie.status !== "ready") {
    return { reason: "movie_unavailable", text: "Not available yet: the video is still being prepared." };
  }
  if (!access) {
    return { reason: "signed_out", text: "Sign in to watch.", action: { href: "#/signin", label: "Sign in" } };
  }
  if (access.watchable.has(movie.id)) return null;
  const sub = access.subscription;
  const planName = access.plan ? `“${access.plan.name}”` : "your plan";
  const plans = { href: "#/plans", label: "See plans" };
  if (!sub || sub.status === "canceled" || sub.status === "expired") {
    const text = !sub ? "You have no subscription. Choose a plan to start watching."
      : `Your subscription has ${sub.status === "canceled" ? "been cancelled" : "expired"}. Choose a plan to watch again.`;
    return { reason: "no_subscription", text, action: plans };
  }
  if (sub.status === "pending_payment") {
    return { reason: "subscription_inactive", text: `Payment pending: your subscription to ${planName} starts when the billing provider confirms the payment.`, action: { href: "#/plans", label: "Subscription status" } };
  }
  if (sub.status === "past_due") {
    return { reason: "subscription_inactive", text: `Payment failed: the last payment for ${planName} did not go through.`, action: { href: "#/plans", label: "Subscription status" } };
  }
  if (!isEntitling(sub)) {
    return { reason: "subscription_inactive", text: `Your subscription period ended on ${formatDate(sub.current_period_end)}.`, action: plans };
  }
  if (access.planMovies && !access.planMovies.has(movie.id)) {
    return { reason: "not_in_plan", text: `Not included in your plan ${planName}.`, action: { href: "#/plans", label: "Compare plans" } };
  }
  return { reason: "unknown", text: "You cannot watch this movie right now." };
}

/** Names of plans that include the movie (for "available in ..." hints). */
export async function plansIncluding(movieId, { signal } = {}) {
  const plans = await apiAll("/api/plans", { signal });
  const hits = await Promise.all(plans.map(async (plan) => {
    const ids = await apiAll(`/api/plans/${plan.id}/movies`, { signal }).catch(() => []);
    return ids.includes(movieId) ? plan : null;
  }));
  return hits.filter(Boolean);
}
