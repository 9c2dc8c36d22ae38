// Sign in and sign up.

import { session, signIn, signUp } from "../api.js";
import { announce, clearFieldErrors, errorBox, field, h, replace, showFieldErrors } from "../dom.js";
import { ApiError, describe } from "../errors.js";

function safeNext(query) {
  const next = query.get("next") || "";
  // Only in-app destinations: "#/..." (never an absolute URL).
  return /^#\/[\w\-/?=&%.]*$/.test(next) ? next : "#/";
}

function authForm({ root, query, navigate, mode }) {
  const signingUp = mode === "signup";
  const name = signingUp
    ? field("Your name", h("input", { type: "text", name: "name", autocomplete: "name", required: true, maxlength: "200" }))
    : null;
  const email = field("E-mail", h("input", { type: "email", name: "email", autocomplete: "email", required: true }));
  const password = field("Password", h("input", {
    type: "password", name: "password", required: true,
    autocomplete: signingUp ? "new-password" : "current-password", minlength: signingUp ? "8" : null,
  }), { hint: signingUp ? "At least 8 characters." : null });
  const message = h("div", { class: "form-message" });
  const submit = h("button", { type: "submit", class: "button" }, signingUp ? "Create account" : "Sign in");
  const form = h("form", { class: "card form narrow", novalidate: true },
    name?.wrap, email.wrap, password.wrap, message, submit);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    replace(message);
    if (!form.checkValidity()) {
      const invalid = [...form.elements].filter((el) => el.willValidate && !el.checkValidity());
      showFieldErrors(form, invalid.map((el) => ({ field: el.name, message: el.validationMessage })));
      return;
    }
    submit.disabled = true;
    submit.textContent = signingUp ? "Creating account…" : "Signing in…";
    form.setAttribute("aria-busy", "true");
    try {
      if (signingUp) await signUp(name.input.value.trim(), email.input.value.trim(), password.input.value);
      else await signIn(email.input.value.trim(), password.input.value);
      announce(`Signed in as ${session.user.email}.`);
      navigate(safeNext(query), { replace: true });
    } catch (error) {
      const unmatched = error instanceof ApiError && error.code === "validation_failed"
        ? showFieldErrors(form, error.errors) : [];
      replace(message, errorBox(unmatched.length ? `${describe(error)} ${unmatched.join("; ")}` : describe(error)));
      if (!(error instanceof ApiError && error.code === "validation_failed")) password.input.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = signingUp ? "Create account" : "Sign in";
      form.removeAttribute("aria-busy");
    }
  });

  const other = signingUp
    ? h("p", {}, "Already have an account? ", h("a", { href: `#/signin${query.get("next") ? `?next=${encodeURIComponent(query.get("next"))}` : ""}` }, "Sign in"))
    : h("p", {}, "New to Reelgate? ", h("a", { href: `#/signup${query.get("next") ? `?next=${encodeURIComponent(query.get("next"))}` : ""}` }, "Create an account"));
  replace(root,
    h("h1", { tabindex: "-1" }, signingUp ? "Create your account" : "Sign in"),
    session.signedIn ? h("p", { class: "notice info" }, `You are signed in as ${session.user.email}.`) : null,
    form, other);
}

export function signInView(ctx) {
  authForm({ ...ctx, mode: "signin" });
}

export function signUpView(ctx) {
  authForm({ ...ctx, mode: "signup" });
}
