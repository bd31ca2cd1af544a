// What every page shares: the logged-in user, navigation, announcements and the session's end.
import { session, type User } from "./api";
import { describeError } from "./errors";
import { h } from "./dom";

export const state: { me: User | null } = { me: null };

export function navigate(hash: string): void {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

let liveRegion: HTMLElement | null = null;
let toastTimer = 0;

/** A short message shown at the bottom and read out by screen readers. */
export function announce(message: string): void {
  if (!liveRegion) {
    liveRegion = h("div", { class: "toast", role: "status", "aria-live": "polite" });
    document.body.append(liveRegion);
  }
  liveRegion.textContent = message;
  liveRegion.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => liveRegion?.classList.remove("shown"), 4000);
}

// A session the server no longer takes (expired): back to log-in, saying why.
session.addEventListener("ended", (event) => {
  state.me = null;
  navigate("#/login");
  announce(describeError((event as CustomEvent<unknown>).detail));
});

/** Shows a failed action's message in `target` (a role=alert box, or a status line). */
export function showError(target: HTMLElement, error: unknown): void {
  target.textContent = describeError(error);
  target.hidden = false;
}

export function clearError(target: HTMLElement): void {
  target.textContent = "";
  target.hidden = true;
}

export function errorBox(): HTMLParagraphElement {
  return h("p", { class: "error", role: "alert", hidden: true });
}

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "auto", style: "short" });
const FULL = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "short" });

export function timeAgo(at: Date | undefined): string {
  if (!at) return "";
  const seconds = Math.round((at.getTime() - Date.now()) / 1000);
  if (Math.abs(seconds) < 45) return "now";
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 60) return RELATIVE.format(minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 24) return RELATIVE.format(hours, "hour");
  const days = Math.round(hours / 24);
  if (Math.abs(days) < 7) return RELATIVE.format(days, "day");
  return FULL.format(at);
}

export function fullTime(at: Date | undefined): string {
  return at ? FULL.format(at) : "";
}

export function timeElement(at: Date | undefined): HTMLTimeElement {
  return h("time", { datetime: at?.toISOString() ?? "", title: fullTime(at) }, timeAgo(at));
}

export function avatar(user: User | undefined): HTMLElement {
  const name = user?.displayName || user?.handle || "?";
  let hue = 0;
  for (const char of user?.handle ?? "") hue = (hue * 31 + char.charCodeAt(0)) % 360;
  // The initial comes from CSS (attr()), so it is not part of the text around it.
  const element = h("span", { class: "avatar", "aria-hidden": "true", "data-initial": [...name][0].toUpperCase() });
  element.style.setProperty("--hue", String(hue));
  return element;
}

export function displayName(user: User | undefined): string {
  return user?.displayName || user?.handle || "someone";
}
