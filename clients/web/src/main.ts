// The app shell: header, hash routes (#/, #/login, #/signup, #/t/<id>, #/u/<id>[/followers|/following]).
import "./style.css";
import { chirp } from "./api";
import { h, replaceChildren } from "./dom";
import { announce, navigate, showError, state } from "./app";
import { authPage } from "./pages/auth";
import { conversationPage } from "./pages/conversation";
import { homePage } from "./pages/home";
import { profilePage } from "./pages/profile";

const root = document.getElementById("app")!;
const nav = h("nav", { class: "top-nav", "aria-label": "Main" });
const main = h("main", { id: "main", tabindex: -1 });
root.replaceChildren(
  h("header", { class: "top" }, h("div", { class: "top-inner" }, h("a", { href: "#/", class: "brand" }, "Chirp"), nav)),
  main,
);

document.querySelector(".skip-link")?.addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

let dispose: (() => void) | null = null;
let firstRender = true;

function renderNav(current: string): void {
  const link = (href: string, label: string, active: boolean) =>
    h("a", { href, "aria-current": active ? "page" : null }, label);
  if (!chirp.userId) {
    replaceChildren(nav, link("#/login", "Log in", current === "login"), link("#/signup", "Sign up", current === "signup"));
    return;
  }
  const logOut = h("button", { type: "button", class: "link-button" }, "Log out");
  logOut.addEventListener("click", () => {
    void chirp.logOut();
    state.me = null;
    navigate("#/login");
    announce("You are logged out.");
  });
  replaceChildren(
    nav,
    link("#/", "Home", current === "home"),
    link(`#/u/${chirp.userId}`, state.me ? `@${state.me.handle}` : "Profile", current === "me"),
    logOut,
  );
}

function notFound(): HTMLElement {
  return h(
    "section",
    { class: "card" },
    h("h1", null, "Nothing here"),
    h("p", null, "This page does not exist. ", h("a", { href: "#/" }, "Go home")),
  );
}

function route(): void {
  const path = location.hash.replace(/^#/, "") || "/";
  if (!path.startsWith("/")) return; // an in-page anchor, not a route
  dispose?.();
  dispose = null;
  const loggedIn = Boolean(chirp.userId);
  let page: HTMLElement;
  let current = "";
  let match: RegExpExecArray | null;
  if (path === "/login" || path === "/signup") {
    if (loggedIn) return navigate("#/");
    current = path.slice(1);
    page = authPage(current as "login" | "signup");
  } else if (!loggedIn) {
    return navigate("#/login");
  } else if (path === "/") {
    current = "home";
    const home = homePage();
    page = home.element;
    dispose = home.dispose;
  } else if ((match = /^\/t\/(\d+)$/.exec(path))) {
    const conversation = conversationPage(match[1]);
    page = conversation.element;
    dispose = conversation.dispose;
  } else if ((match = /^\/u\/(\d+)(?:\/(followers|following))?$/.exec(path))) {
    current = match[1] === chirp.userId ? "me" : "";
    const profile = profilePage(match[1], (match[2] as "followers" | "following" | undefined) ?? "tweets");
    page = profile.element;
    dispose = profile.dispose;
  } else {
    page = notFound();
  }
  renderNav(current);
  replaceChildren(main, page);
  document.title = titleOf(page);
  if (!firstRender) {
    window.scrollTo(0, 0);
    if (!main.contains(document.activeElement) || document.activeElement === document.body) {
      main.focus({ preventScroll: true });
    }
  }
  firstRender = false;
}

function titleOf(page: HTMLElement): string {
  const heading = page.querySelector("h1")?.textContent?.trim();
  return heading && heading !== "Chirp" ? `${heading} · Chirp` : "Chirp";
}

window.addEventListener("hashchange", route);

async function start(): Promise<void> {
  if (chirp.userId) {
    try {
      state.me = await chirp.getUser(chirp.userId);
    } catch (failure) {
      const box = h("p");
      showError(box, failure); // a lost session goes to log-in
    }
  }
  route();
}

void start();
