// A person's page (#/u/<id>): who they are, follow or unfollow, their tweets, followers, following.
import { chirp, type Tweet, type User } from "../api";
import { h, replaceChildren } from "../dom";
import { announce, avatar, clearError, displayName, errorBox, showError, state } from "../app";
import { InfiniteList, iteratorSource } from "../list";
import { tweetCard } from "../tweet";

export type ProfileTab = "tweets" | "followers" | "following";

export function userRow(user: User): HTMLElement {
  return h(
    "a",
    { href: `#/u/${user.userId}`, class: "user-row" },
    avatar(user),
    h("span", { class: "user-names" }, h("strong", null, displayName(user)), " ", h("span", { class: "handle" }, `@${user.handle}`)),
  );
}

export function profilePage(userId: string, tab: ProfileTab): { element: HTMLElement; dispose: () => void } {
  const error = errorBox();
  const header = h("div", { class: "profile-head", "aria-busy": "true" }, h("p", { class: "list-status" }, "Loading…"));
  let list: InfiniteList<Tweet> | InfiniteList<User>;
  if (tab === "tweets") {
    const tweets: InfiniteList<Tweet> = new InfiniteList<Tweet>({
      label: "Tweets",
      source: iteratorSource(chirp.userTweets(userId)),
      key: (tweet) => tweet.tweetId,
      render: (tweet) => tweetCard(tweet, { onDeleted: (gone) => tweets.remove(gone.tweetId) }),
      empty: "No tweets yet.",
    });
    list = tweets;
  } else {
    list = new InfiniteList<User>({
      label: tab === "followers" ? "Followers" : "Following",
      source: iteratorSource(tab === "followers" ? chirp.followers(userId) : chirp.following(userId)),
      key: (user) => user.userId,
      render: userRow,
      empty: tab === "followers" ? "No followers yet." : "Not following anyone yet.",
    });
  }

  const tabLink = (name: ProfileTab, label: string) =>
    h(
      "a",
      {
        href: name === "tweets" ? `#/u/${userId}` : `#/u/${userId}/${name}`,
        class: "tab",
        "aria-current": name === tab ? "page" : null,
      },
      label,
    );

  const render = (user: User, following: boolean | null, followedBy: boolean) => {
    const isMe = user.userId === chirp.userId;
    const followButton =
      following === null || isMe
        ? null
        : h(
            "button",
            {
              type: "button",
              class: following ? "secondary follow" : "primary follow",
              "aria-pressed": String(following),
            },
            following ? "Unfollow" : "Follow",
          );
    followButton?.addEventListener("click", async () => {
      followButton.disabled = true;
      clearError(error);
      try {
        if (following) await chirp.unfollow(user.userId);
        else await chirp.follow(user.userId);
        const now = !following;
        const counted = { ...user, followerCount: user.followerCount + (now ? 1 : -1) };
        render(counted, now, followedBy);
        if (state.me) state.me = { ...state.me, followingCount: state.me.followingCount + (now ? 1 : -1) };
        announce(now ? `You follow @${user.handle}.` : `You no longer follow @${user.handle}.`);
        header.querySelector<HTMLButtonElement>("button.follow")?.focus();
      } catch (failure) {
        followButton.disabled = false;
        showError(error, failure);
      }
    });
    header.removeAttribute("aria-busy");
    document.title = `${displayName(user)} (@${user.handle}) · Chirp`;
    replaceChildren(
      header,
      h(
        "div",
        { class: "profile-top" },
        avatar(user),
        h(
          "div",
          { class: "profile-names" },
          h("h1", { class: "profile-name" }, displayName(user)),
          h("p", { class: "handle" }, `@${user.handle}`, followedBy && !isMe ? h("span", { class: "badge" }, "Follows you") : null),
        ),
        followButton,
      ),
      h(
        "p",
        { class: "counts" },
        h("a", { href: `#/u/${userId}/following` }, h("strong", null, String(user.followingCount)), " following"),
        h("a", { href: `#/u/${userId}/followers` }, h("strong", null, String(user.followerCount)), user.followerCount === 1 ? " follower" : " followers"),
      ),
    );
  };

  Promise.all([
    chirp.getUser(userId),
    chirp.userId && chirp.userId !== userId ? chirp.relationship(userId) : Promise.resolve(null),
  ]).then(
    ([user, relationship]) => render(user, relationship?.following ?? null, relationship?.followedBy ?? false),
    (failure: unknown) => {
      header.replaceChildren();
      showError(error, failure);
    },
  );

  const element = h(
    "section",
    { class: "profile" },
    error,
    header,
    h(
      "nav",
      { class: "tabs", "aria-label": "Profile" },
      tabLink("tweets", "Tweets"),
      tabLink("followers", "Followers"),
      tabLink("following", "Following"),
    ),
    list.element,
  );
  return { element, dispose: () => list.destroy() };
}
