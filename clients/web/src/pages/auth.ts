// Log in and sign up.
import { chirp } from "../api";
import { h, uid } from "../dom";
import { clearError, errorBox, navigate, showError, state } from "../app";

function field(label: string, input: HTMLInputElement, hint?: string): HTMLElement {
  input.id = uid("field");
  const hintId = hint ? uid("hint") : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: input.id }, label),
    input,
    hint && h("p", { class: "hint", id: hintId }, hint),
  );
}

export function authPage(mode: "login" | "signup"): HTMLElement {
  const signup = mode === "signup";
  const handle = h("input", {
    name: "handle",
    autocomplete: "username",
    autocapitalize: "none",
    spellcheck: "false",
    required: true,
    pattern: signup ? "[a-z0-9_]{3,30}" : null,
  });
  const displayName = h("input", { name: "display_name", autocomplete: "name", maxlength: 50 });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: signup ? "new-password" : "current-password",
    required: true,
    minlength: signup ? 8 : null,
  });
  const submit = h("button", { type: "submit", class: "primary wide" }, signup ? "Sign up" : "Log in");
  const error = errorBox();
  const form = h(
    "form",
    { class: "card auth", "aria-labelledby": "auth-title", novalidate: true },
    h("h1", { id: "auth-title" }, signup ? "Join Chirp" : "Log in to Chirp"),
    field("Handle", handle, signup ? "3 to 30 characters: a–z, 0–9 and _" : undefined),
    signup && field("Display name (optional)", displayName),
    field("Password", password, signup ? "At least 8 characters" : undefined),
    error,
    submit,
    h(
      "p",
      { class: "switch" },
      signup ? "Already have an account? " : "New to Chirp? ",
      h("a", { href: signup ? "#/login" : "#/signup" }, signup ? "Log in" : "Sign up"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(error);
    const name = handle.value.trim().replace(/^@/, "");
    if (!name || !password.value) {
      error.textContent = "Enter your handle and password.";
      error.hidden = false;
      (name ? password : handle).focus();
      return;
    }
    submit.disabled = true;
    try {
      if (signup) await chirp.signUp(name, password.value, displayName.value.trim());
      const session = await chirp.logIn(name, password.value);
      state.me = await chirp.getUser(session.userId);
      navigate("#/");
    } catch (failure) {
      showError(error, failure);
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(() => handle.focus());
  return h("div", { class: "auth-page" }, h("p", { class: "tagline" }, "Short messages from the people you follow, live."), form);
}
