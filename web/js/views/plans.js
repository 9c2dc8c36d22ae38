// Plans and the viewer's subscription: subscribe, follow the payment, cancel.

import { api, apiAll, session } from "../api.js";
import { pickSubscription, subscriptionSummary } from "../access.js";
import { announce, errorBox, formatDate, formatPrice, genreLabel, h, loading, replace, sleep } from "../dom.js";
import { describe } from "../errors.js";

const POLL_MS = 4000;

export async function plansView({ root, signal }) {
  const statusSlot = h("section", { class: "subscription", "aria-labelledby": "sub-heading" });
  const list = h("section", { "aria-labelledby": "plans-heading" });
  replace(root, h("h1", { tabindex: "-1" }, "Plans"), statusSlot, list);

  let plans = [];
  let subscription = null;

  const render = () => {
    renderSubscription(statusSlot, subscription, plans, { cancel, signal });
    renderPlans(list, plans, subscription, subscribe);
  };

  async function load() {
    loading(list, "Loading plans…");
    try {
      const [planItems, subs] = await Promise.all([
        apiAll("/api/plans", { signal, auth: false }),
        session.signedIn ? apiAll(`/api/subscriptions?user_id=${encodeURIComponent(session.user.id)}`, { signal }) : [],
      ]);
      plans = planItems.sort((a, b) => a.price_cents - b.price_cents);
      subscription = pickSubscription(subs);
      if (subscription && !plans.some((p) => p.id === subscription.plan_id)) {
        // A plan withdrawn from sale still serves its existing subscribers.
        const own = await api(`/api/plans/${subscription.plan_id}`, { signal }).catch(() => null);
        if (own) plans.push({ ...own, withdrawn: true });
      }
      list.removeAttribute("aria-busy");
      render();
      if (subscription?.status === "pending_payment") poll();
    } catch (error) {
      if (signal.aborted) return;
      list.removeAttribute("aria-busy");
      replace(list, errorBox(`Could not load the plans. ${describe(error)}`, load));
    }
  }

  async function subscribe(plan, button) {
    button.disabled = true;
    button.textContent = "Subscribing…";
    try {
      subscription = await api("/api/subscriptions", { method: "POST", body: { plan_id: plan.id } });
      announce(`Subscribed to ${plan.name}. Waiting for payment confirmation.`);
      render();
      statusSlot.querySelector("h2")?.focus();
      poll();
    } catch (error) {
      button.disabled = false;
      button.textContent = `Subscribe to ${plan.name}`;
      const box = errorBox(describe(error));
      button.closest("li")?.querySelector(".plan-message")?.replaceChildren(box);
      if (error.code === "subscription_exists") load();
    }
  }

  async function cancel(button) {
    if (button.dataset.confirm !== "yes") {
      button.dataset.confirm = "yes";
      button.textContent = "Yes, cancel my subscription";
      announce("Press again to confirm the cancellation. Streams stop at once.");
      return;
    }
    button.disabled = true;
    try {
      subscription = await api(`/api/subscriptions/${subscription.id}`, { method: "DELETE" }) || { ...subscription, status: "canceled" };
      announce("Your subscription is cancelled.");
      render();
    } catch (error) {
      button.disabled = false;
      button.after(errorBox(describe(error)));
    }
  }

  // While a payment is pending, follow the subscription until the billing
  // provider's confirmation (a webhook to the server) changes its status.
  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      while (!signal.aborted && subscription?.status === "pending_payment") {
        await sleep(POLL_MS, signal);
        try {
          const fresh = await api(`/api/subscriptions/${subscription.id}`, { signal });
          if (fresh.status !== subscription.status) {
            subscription = fresh;
            render();
            announce(subscriptionSummary({ subscription: fresh, plan: plans.find((p) => p.id === fresh.plan_id) }).text);
          }
        } catch (error) {
          if (signal.aborted) return;
          console.warn("subscription poll failed", error);
        }
      }
    } catch { /* aborted */ } finally {
      polling = false;
    }
  }

  await load();
}

function renderSubscription(slot, subscription, plans, { cancel }) {
  if (!session.signedIn) {
    replace(slot, h("h2", { id: "sub-heading", tabindex: "-1" }, "Your subscription"),
      h("p", { class: "notice info" }, h("a", { href: "#/signin?next=%23%2Fplans" }, "Sign in"), " or ",
        h("a", { href: "#/signup?next=%23%2Fplans" }, "create an account"), " to subscribe."));
    return;
  }
  const plan = subscription && plans.find((p) => p.id === subscription.plan_id);
  const summary = subscriptionSummary({ subscription, plan });
  const live = subscription && ["pending_payment", "active", "trialing", "past_due"].includes(subscription.status);
  replace(slot,
    h("h2", { id: "sub-heading", tabindex: "-1" }, "Your subscription"),
    h("div", { class: `notice ${summary.kind}`, "data-subscription": subscription?.status || "none" },
      h("p", {}, summary.text),
      subscription?.status === "pending_payment"
        ? h("p", { class: "hint" }, "Payments are confirmed by our billing provider, not by this page. This page updates by itself when the confirmation arrives; it usually takes a few seconds.")
        : null,
      subscription ? h("p", { class: "hint" }, `Status: ${subscription.status.replace("_", " ")}`,
        subscription.current_period_end ? ` · current period ends ${formatDate(subscription.current_period_end)}` : "") : null,
      live ? h("button", { type: "button", class: "button danger", onclick: (e) => cancel(e.currentTarget) }, "Cancel subscription") : null));
}

function renderPlans(section, plans, subscription, subscribe) {
  const live = subscription && ["pending_payment", "active", "trialing", "past_due"].includes(subscription.status);
  const items = plans.map((plan) => {
    const mine = subscription?.plan_id === plan.id && live;
    const action = !session.signedIn
      ? h("a", { class: "button", href: "#/signup?next=%23%2Fplans" }, "Sign up to subscribe")
      : mine ? h("p", { class: "badge included" }, "Your plan")
        : live || plan.withdrawn ? null
          : h("button", { type: "button", class: "button", onclick: (e) => subscribe(plan, e.currentTarget) }, `Subscribe to ${plan.name}`);
    return h("li", { class: `plan-card${mine ? " current" : ""}`, "data-plan-id": plan.id },
      h("h3", {}, plan.name),
      h("p", { class: "price" }, formatPrice(plan.price_cents, plan.currency), h("span", { class: "hint" }, " per period")),
      h("ul", { class: "features" },
        h("li", {}, plan.genres.includes("*") ? "Every movie in the catalog" : `Genres: ${plan.genres.map(genreLabel).join(", ") || "hand-picked movies"}`),
        h("li", {}, `${plan.max_streams} simultaneous stream${plan.max_streams === 1 ? "" : "s"}`),
        h("li", {}, `Up to ${plan.max_height}p`)),
      plan.withdrawn ? h("p", { class: "hint" }, "No longer offered to new subscribers.") : null,
      action,
      h("div", { class: "plan-message" }));
  });
  replace(section, h("h2", { id: "plans-heading" }, "Choose a plan"),
    plans.length ? h("ul", { class: "plans", role: "list" }, items) : h("p", {}, "No plans are on offer right now."));
}
