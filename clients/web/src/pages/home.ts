// The home timeline: the composer, new tweets held in a "N new tweets" bar until asked for, and
// older pages loaded while scrolling.
import { chirp, type Tweet } from "../api";
import { h } from "../dom";
import { announce, showError } from "../app";
import { composer } from "../compose";
import { InfiniteList, pagedSource } from "../list";
import { tweetCard } from "../tweet";

const PAGE_SIZE = 20;

export function homePage(): { element: HTMLElement; dispose: () => void } {
  const controller = new AbortController();
  const pending: Tweet[] = [];
  let newestId = "";

  const note = (tweet: Tweet) => {
    if (!newestId || BigInt(tweet.tweetId) > BigInt(newestId)) newestId = tweet.tweetId;
  };
  const card = (tweet: Tweet) =>
    tweetCard(tweet, {
      onDeleted: (gone) => list.remove(gone.tweetId),
      onReplied: (reply) => show([reply]),
    });
  const source = pagedSource(async (cursor) => {
    const page = await chirp.homeTimelinePage({ pageSize: PAGE_SIZE, cursor });
    page.tweets.forEach(note);
    if (!cursor) startLive();
    return { items: page.tweets, nextCursor: page.nextCursor };
  });
  const list = new InfiniteList<Tweet>({
    label: "Home timeline",
    source,
    key: (tweet) => tweet.tweetId,
    render: card,
    empty: "Nothing here yet. Follow people to see their tweets, or post your own.",
    end: "You're all caught up.",
  });

  const bar = h("button", { type: "button", class: "new-tweets", hidden: true });
  const liveStatus = h("p", { class: "live-status", role: "status", hidden: true }, "Live updates paused: reconnecting…");
  const barRegion = h("div", { class: "new-tweets-region", "aria-live": "polite" }, bar);

  /** Puts tweets on top; the reader's place stays where it was unless they asked to go up. */
  const show = (tweets: Tweet[]) => {
    const shown = new Set(tweets.map((tweet) => tweet.tweetId));
    const before = pending.length;
    pending.splice(0, pending.length, ...pending.filter((tweet) => !shown.has(tweet.tweetId)));
    if (pending.length !== before) updateBar();
    keepPlace(list.list, () =>
      list.prepend([...tweets].sort((a, b) => (BigInt(b.tweetId) > BigInt(a.tweetId) ? 1 : -1))),
    );
  };

  bar.addEventListener("click", () => {
    const tweets = pending.splice(0);
    updateBar();
    window.scrollTo({ top: 0 });
    show(tweets);
    const first = list.list.querySelector<HTMLElement>(`li[data-key="${tweets[0]?.tweetId}"] a.author`);
    first?.focus({ preventScroll: true });
  });

  const updateBar = () => {
    bar.hidden = pending.length === 0;
    bar.textContent = pending.length === 1 ? "1 new tweet" : `${pending.length} new tweets`;
  };

  let live = false;
  function startLive(): void {
    if (live) return;
    live = true;
    void (async () => {
      try {
        // An empty first page: replay from the start, so nothing posted before the stream opened is missed.
        const sinceId = newestId || "1";
        const live = chirp.liveTimeline({
          sinceId,
          signal: controller.signal,
          reconnect: { maxFailures: Infinity },
          onConnect: () => {
            element.dataset.live = "connected";
            liveStatus.hidden = true;
          },
          onDisconnect: (error) => {
            element.dataset.live = "reconnecting";
            liveStatus.hidden = error === undefined;
          },
        });
        for await (const tweet of live) {
          note(tweet);
          if (list.has(tweet.tweetId) || pending.some((p) => p.tweetId === tweet.tweetId)) continue;
          pending.push(tweet);
          updateBar();
        }
      } catch (failure) {
        if (controller.signal.aborted) return;
        element.dataset.live = "stopped";
        showError(liveStatus, failure);
      }
    })();
  }

  const compose = composer({
    label: "What's happening?",
    placeholder: "What's happening?",
    submitLabel: "Post",
    onPosted: (tweet) => {
      note(tweet);
      show([tweet]);
      announce("Your tweet was posted.");
    },
  });

  const element: HTMLElement = h(
    "section",
    { class: "home", "aria-labelledby": "home-title", "data-live": "connecting" },
    h("h1", { id: "home-title", class: "page-title" }, "Home"),
    compose,
    liveStatus,
    barRegion,
    list.element,
  );
  return {
    element,
    dispose: () => {
      controller.abort();
      list.destroy();
    },
  };
}

/** Runs `change` (which adds rows above) without moving the row the reader is looking at. */
function keepPlace(list: HTMLElement, change: () => void): void {
  const anchor = [...list.children].find((row) => row.getBoundingClientRect().bottom > 0);
  const top = anchor?.getBoundingClientRect().top ?? 0;
  change();
  if (anchor && window.scrollY > 0) window.scrollBy(0, anchor.getBoundingClientRect().top - top);
}
