// One tweet: author, text, pictures, and what can be done with it (reply, edit, history, delete).
import { chirp, type Tweet, type User } from "./api";
import { h, replaceChildren, uid } from "./dom";
import { announce, avatar, clearError, displayName, errorBox, fullTime, showError, state, timeElement } from "./app";
import { composer, length, MAX_CHARS } from "./compose";

export interface CardOptions {
  /** The conversation's own tweet: larger, with its reply box open. */
  main?: boolean;
  onDeleted?: (tweet: Tweet) => void;
  onReplied?: (reply: Tweet) => void;
}

const users = new Map<string, Promise<User>>();

/** A tweet's author: timelines carry it, a single tweet (just posted, or fetched) may not. */
function authorOf(tweet: Tweet): Promise<User> | User | undefined {
  if (tweet.author) return tweet.author;
  if (tweet.userId === state.me?.userId) return state.me;
  return userOf(tweet.userId);
}

export function tweetCard(tweet: Tweet, options: CardOptions = {}): HTMLElement {
  const article = h("article", { class: options.main ? "tweet main" : "tweet" });
  const author = authorOf(tweet);
  if (author instanceof Promise) {
    fill(article, tweet, options);
    author.then(
      (user) => {
        // Not while the person is typing in or has moved into the card.
        const busy =
          article.contains(document.activeElement) ||
          [...article.querySelectorAll("textarea")].some((field) => field.value);
        if (!busy) fill(article, { ...tweet, author: user }, options);
      },
      () => undefined,
    );
  } else {
    fill(article, { ...tweet, author }, options);
  }
  return article;
}

function fill(article: HTMLElement, tweet: Tweet, options: CardOptions): void {
  const author = tweet.author;
  const mine = tweet.userId === chirp.userId;
  const name = displayName(author);
  const headingId = uid("tweet");
  article.dataset.tweetId = tweet.tweetId;
  article.setAttribute("aria-labelledby", headingId);
  const panel = h("div", { class: "panel" });
  const error = errorBox();

  const openPanel = (content: HTMLElement | null, button?: HTMLButtonElement) => {
    for (const toggle of article.querySelectorAll<HTMLButtonElement>(".actions [aria-expanded]")) {
      toggle.setAttribute("aria-expanded", String(toggle === button && content !== null));
    }
    replaceChildren(panel, content);
  };
  const toggle = (button: HTMLButtonElement, build: () => HTMLElement) => {
    if (button.getAttribute("aria-expanded") === "true") {
      openPanel(null);
      return;
    }
    openPanel(build(), button);
  };

  const replyButton = h("button", { type: "button", class: "action", "aria-expanded": "false" }, "Reply");
  replyButton.addEventListener("click", () =>
    toggle(replyButton, () =>
      composer({
        replyTo: tweet.tweetId,
        label: `Reply to ${name}`,
        placeholder: `Reply to @${author?.handle ?? ""}`,
        submitLabel: "Reply",
        autofocus: !options.main,
        onPosted: (reply) => {
          if (!options.main) openPanel(null);
          announce("Your reply was posted.");
          options.onReplied?.(reply);
        },
      }),
    ),
  );

  const actions: HTMLElement[] = [replyButton];
  if (tweet.version > 1 || tweet.editedAt) {
    const historyButton = h("button", { type: "button", class: "action", "aria-expanded": "false" }, "History");
    historyButton.addEventListener("click", () => toggle(historyButton, () => history(tweet)));
    actions.push(historyButton);
  }
  if (mine) {
    const editButton = h("button", { type: "button", class: "action", "aria-expanded": "false" }, "Edit");
    editButton.addEventListener("click", () =>
      toggle(editButton, () =>
        editor(tweet, {
          onSaved: (edited) => {
            fill(article, { ...edited, author: edited.author ?? tweet.author }, options);
            announce("Your tweet was edited.");
            article.querySelector<HTMLElement>(".actions .action")?.focus();
          },
          onCancel: () => {
            openPanel(null);
            editButton.focus();
          },
        }),
      ),
    );
    const deleteButton = h("button", { type: "button", class: "action danger", "aria-expanded": "false" }, "Delete");
    deleteButton.addEventListener("click", () =>
      toggle(deleteButton, () =>
        confirmDelete(tweet, {
          onDeleted: () => {
            announce("Your tweet was deleted.");
            if (options.onDeleted) options.onDeleted(tweet);
            else replaceChildren(article, h("p", { class: "gone" }, "This tweet was deleted."));
          },
          onCancel: () => {
            openPanel(null);
            deleteButton.focus();
          },
          error,
        }),
      ),
    );
    actions.push(editButton, deleteButton);
  }

  replaceChildren(
    article,
    h("a", { href: `#/u/${tweet.userId}`, class: "avatar-link", tabindex: -1, "aria-hidden": "true" }, avatar(author)),
    h(
      "div",
      { class: "tweet-body" },
      h(
        "header",
        { class: "tweet-head" },
        h(
          "a",
          { href: `#/u/${tweet.userId}`, class: "author", id: headingId },
          h("strong", null, name),
          " ",
          h("span", { class: "handle" }, `@${author?.handle ?? ""}`),
        ),
        h("span", { class: "dot", "aria-hidden": "true" }, "·"),
        h(
          "a",
          { href: `#/t/${tweet.tweetId}`, class: "permalink", title: `Open the conversation (${fullTime(tweet.createdAt)})` },
          timeElement(tweet.createdAt),
        ),
        tweet.editedAt && h("span", { class: "edited" }, "· edited"),
      ),
      tweet.replyTo && replyContext(tweet.replyTo, tweet.replyToUserId),
      tweet.content && h("p", { class: "content" }, tweet.content),
      gallery(tweet),
      h("div", { class: "actions", role: "group", "aria-label": "Tweet actions" }, ...actions),
      error,
      panel,
    ),
  );
  if (options.main) replyButton.click();
}

function userOf(userId: string): Promise<User> {
  let user = users.get(userId);
  if (!user) {
    user = chirp.getUser(userId);
    users.set(userId, user);
    user.catch(() => users.delete(userId));
  }
  return user;
}

/** "Replying to @handle", linking to the tweet replied to. */
function replyContext(replyTo: string, replyToUserId: string | undefined): HTMLElement {
  const link = h("a", { href: `#/t/${replyTo}` }, "a tweet");
  if (replyToUserId) {
    const known = replyToUserId === state.me?.userId ? state.me : null;
    if (known) link.textContent = `@${known.handle}`;
    else userOf(replyToUserId).then((user) => (link.textContent = `@${user.handle}`), () => undefined);
  }
  return h("p", { class: "reply-context" }, "Replying to ", link);
}

function gallery(tweet: Tweet): HTMLElement | null {
  if (!tweet.media.length) return null;
  const count = tweet.media.length;
  return h(
    "div",
    { class: `gallery count-${count}` },
    tweet.media.map((media, index) =>
      h(
        "a",
        { href: media.url, target: "_blank", rel: "noopener" },
        h("img", {
          src: media.url,
          alt: `Picture ${index + 1} of ${count} by @${tweet.author?.handle ?? ""}`,
          width: media.width || null,
          height: media.height || null,
          loading: "lazy",
          decoding: "async",
        }),
      ),
    ),
  );
}

function editor(
  tweet: Tweet,
  handlers: { onSaved: (tweet: Tweet) => void; onCancel: () => void },
): HTMLElement {
  const fieldId = uid("edit");
  const text = h("textarea", { id: fieldId, rows: 3 });
  text.value = tweet.content;
  const counter = h("span", { class: "counter", "aria-live": "polite" });
  const save = h("button", { type: "submit", class: "primary" }, "Save");
  const error = errorBox();
  const form = h(
    "form",
    { class: "edit", "aria-label": "Edit tweet" },
    h("label", { for: fieldId }, "Edit your tweet"),
    text,
    error,
    h(
      "div",
      { class: "compose-bar" },
      counter,
      h("button", { type: "button", class: "secondary", onclick: handlers.onCancel }, "Cancel"),
      save,
    ),
  );
  const update = () => {
    const left = MAX_CHARS - length(text.value);
    counter.textContent = left < 0 ? `${-left} too many` : `${left} left`;
    save.disabled = left < 0 || (!text.value.trim() && !tweet.media.length) || text.value === tweet.content;
  };
  text.addEventListener("input", update);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Escape") handlers.onCancel();
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (save.disabled) return;
    clearError(error);
    save.disabled = true;
    try {
      handlers.onSaved(await chirp.editTweet(tweet.tweetId, text.value));
    } catch (failure) {
      showError(error, failure);
      update();
    }
  });
  update();
  queueMicrotask(() => {
    text.focus();
    text.setSelectionRange(text.value.length, text.value.length);
  });
  return form;
}

function history(tweet: Tweet): HTMLElement {
  const list = h("ol", { class: "versions", reversed: true });
  const status = h("p", { class: "list-status", role: "status" }, "Loading the history…");
  const section = h("section", { class: "history", "aria-label": "Edit history" }, h("h3", null, "Edit history"), status, list);
  chirp.versions(tweet.tweetId).then(
    (versions) => {
      status.textContent = versions.length === 1 ? "Never edited." : `${versions.length} versions, newest first.`;
      const newestFirst = [...versions].sort((a, b) => b.version - a.version);
      for (const version of newestFirst) {
        list.append(
          h(
            "li",
            { class: "version" },
            h("p", { class: "version-head" }, `Version ${version.version} · `, timeElement(version.createdAt)),
            h("p", { class: "content" }, version.content || "(no text)"),
          ),
        );
      }
    },
    (failure: unknown) => showError(status, failure),
  );
  return section;
}

function confirmDelete(
  tweet: Tweet,
  handlers: { onDeleted: () => void; onCancel: () => void; error: HTMLElement },
): HTMLElement {
  const yes = h("button", { type: "button", class: "danger" }, "Delete for good");
  const no = h("button", { type: "button", class: "secondary", onclick: handlers.onCancel }, "Cancel");
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    clearError(handlers.error);
    try {
      await chirp.deleteTweet(tweet.tweetId);
      handlers.onDeleted();
    } catch (failure) {
      yes.disabled = false;
      showError(handlers.error, failure);
    }
  });
  queueMicrotask(() => no.focus());
  return h(
    "div",
    { class: "confirm", role: "group", "aria-label": "Delete this tweet?" },
    h("p", null, "Delete this tweet? This cannot be undone."),
    h("div", { class: "compose-bar" }, no, yes),
  );
}
