// A tweet with its replies (#/t/<id>).
import { chirp, type Tweet } from "../api";
import { h } from "../dom";
import { errorBox, navigate, showError } from "../app";
import { InfiniteList, iteratorSource } from "../list";
import { tweetCard } from "../tweet";

export function conversationPage(tweetId: string): { element: HTMLElement; dispose: () => void } {
  const error = errorBox();
  const main = h("div", { class: "conversation-main", "aria-busy": "true" }, h("p", { class: "list-status" }, "Loading…"));
  const parent = h("div", { class: "conversation-parent" });
  const replies = new InfiniteList<Tweet>({
    label: "Replies",
    source: iteratorSource(chirp.replies(tweetId)),
    key: (tweet) => tweet.tweetId,
    render: (tweet) => tweetCard(tweet, { onDeleted: (gone) => replies.remove(gone.tweetId) }),
    empty: "No replies yet.",
  });
  chirp.getTweet(tweetId).then(
    (tweet) => {
      main.removeAttribute("aria-busy");
      main.replaceChildren(
        tweetCard(tweet, {
          main: true,
          onDeleted: () => navigate("#/"),
          // Replies run oldest first: a new one goes last, once the pages before it are there.
          onReplied: (reply) => {
            if (replies.complete) replies.append([reply]);
          },
        }),
      );
      if (tweet.replyTo) {
        parent.append(h("a", { href: `#/t/${tweet.replyTo}`, class: "up" }, "↑ Show the tweet this replies to"));
      }
    },
    (failure: unknown) => {
      main.replaceChildren();
      showError(error, failure);
    },
  );
  const element = h(
    "section",
    { class: "conversation", "aria-labelledby": "conversation-title" },
    h("h1", { id: "conversation-title", class: "page-title" }, "Conversation"),
    parent,
    error,
    main,
    h("h2", { class: "section-title" }, "Replies"),
    replies.element,
  );
  return { element, dispose: () => replies.destroy() };
}
