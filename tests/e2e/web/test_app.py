"""The web app in a real browser, against a real stack behind Envoy: two people in two browser
contexts, the home timeline's live bar and infinite scroll, errors, keyboard use and a phone."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from chirp.graph.v1 import graph_pb2
from chirp.tweets.v1 import tweets_pb2
from chirp.users.v1 import users_pb2
from tests.e2e.web.conftest import PHONE, NewPage
from tests.helpers.api import Api, as_user
from tests.helpers.browser import PASSWORD, compose, dusk_png, log_in, rpc, sign_up, timeline, tweet

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "screenshot.png"


async def test_two_people_follow_post_pictures_reply_edit_and_delete(
    new_page: NewPage, tmp_path: Path
) -> None:
    ada = await new_page()
    bob = await new_page()
    ada_id = await sign_up(ada, "ada", "Ada Lovelace")
    await compose(ada).get_by_label("What's happening?").fill("Notes on the Analytical Engine, part one.")
    await compose(ada).get_by_role("button", name="Post").click()
    await expect(tweet(timeline(ada), "part one")).to_be_visible()

    # Bob follows Ada from her profile.
    await sign_up(bob, "bob", "Bob")
    await bob.goto(f"/#/u/{ada_id}")
    await expect(bob.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    await bob.get_by_role("button", name="Follow").click()
    await expect(bob.get_by_role("button", name="Unfollow")).to_be_visible()
    await expect(bob.get_by_role("link", name="1 follower")).to_be_visible()
    await bob.get_by_role("link", name="Home").click()
    await expect(bob.get_by_role("heading", name="Home")).to_be_visible()
    await expect(bob.locator(".infinite-list")).to_have_attribute("aria-busy", "false")
    await expect(bob.locator("section.home")).to_have_attribute("data-live", "connected")

    # Ada posts a picture: it uploads straight to the store with a progress bar, then the tweet.
    picture = tmp_path / "dusk.png"
    picture.write_bytes(dusk_png())
    form = compose(ada)
    await form.locator("input[type=file]").set_input_files(str(picture))
    attachment = form.get_by_role("list", name="Pictures to post").get_by_role("listitem")
    await expect(attachment.get_by_role("img", name="Picture 1 to post: dusk.png")).to_be_visible()
    await expect(attachment.get_by_role("progressbar")).to_have_attribute("value", "100")
    await expect(attachment).to_contain_text("Uploaded")
    await form.get_by_label("What's happening?").fill("Dusk over the hills, from the garden.")
    await form.get_by_role("button", name="Post").click()
    posted = tweet(timeline(ada), "Dusk over the hills")
    await expect(posted.get_by_role("img", name="Picture 1 of 1 by @ada")).to_be_visible()
    await expect(form.get_by_role("list", name="Pictures to post").get_by_role("listitem")).to_have_count(0)

    # Bob sees it arrive live, as a bar he asks to show; what he reads does not move before.
    bar = bob.get_by_role("button", name=re.compile(r"^\d+ new tweets?$"))
    await expect(bar).to_have_text("1 new tweet")
    await expect(tweet(timeline(bob), "Dusk over the hills")).to_have_count(0)
    await bar.click()
    ada_on_bob = tweet(timeline(bob), "Dusk over the hills")
    await expect(ada_on_bob).to_be_visible()
    image = ada_on_bob.get_by_role("img", name="Picture 1 of 1 by @ada")
    await expect(image).to_be_visible()
    await expect(image).to_have_js_property("naturalWidth", 480)
    await expect(bar).to_be_hidden()

    # Bob replies from his timeline.
    await ada_on_bob.get_by_role("button", name="Reply").click()
    reply_box = bob.get_by_role("form", name="Reply to Ada Lovelace")
    await expect(reply_box.get_by_role("textbox")).to_be_focused()
    await reply_box.get_by_role("textbox").fill("Lovely light! Which hills are those?")
    await reply_box.get_by_role("button", name="Reply").click()
    await expect(tweet(timeline(bob), "Which hills")).to_be_visible()
    await expect(reply_box).to_be_hidden()

    # Ada opens the conversation and finds Bob's reply.
    await posted.get_by_role("link", name=re.compile("now|min", re.I)).click()
    await expect(ada.get_by_role("heading", name="Conversation")).to_be_visible()
    await expect(tweet(ada.get_by_role("list", name="Replies"), "Which hills")).to_be_visible()

    # She edits her tweet; Bob, after a reload, sees the new text and its history.
    main = ada.locator(".conversation-main").get_by_role("article")
    await main.get_by_role("button", name="Edit").click()
    editor = ada.get_by_role("textbox", name="Edit your tweet")
    await expect(editor).to_be_focused()
    await editor.fill("Dusk over the Malvern hills, from the garden.")
    await ada.get_by_role("button", name="Save").click()
    await expect(main).to_contain_text("Malvern")
    await expect(main).to_contain_text("edited")

    await bob.reload()
    edited = tweet(timeline(bob), "Malvern")
    await expect(edited).to_be_visible()
    await expect(edited.get_by_role("img", name="Picture 1 of 1 by @ada")).to_be_visible()
    await expect(tweet(timeline(bob), "Which hills")).to_be_visible()
    await edited.get_by_role("button", name="History").click()
    history = edited.get_by_role("region", name="Edit history")
    await expect(history.get_by_role("listitem")).to_have_count(2)
    await expect(history.get_by_role("listitem").first).to_contain_text("Version 2")
    await expect(history.get_by_role("listitem").nth(1)).to_contain_text(
        "Dusk over the hills, from the garden."
    )
    await expect(edited.get_by_role("img")).to_have_js_property("complete", True)
    await bob.evaluate("window.scrollTo(0, 0)")
    await bob.wait_for_timeout(300)  # the toast of the reply has gone by now; let layout settle
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await bob.screenshot(path=str(SCREENSHOT), full_page=True)

    # Follower and following lists.
    await bob.get_by_role("navigation", name="Main").get_by_role("link", name="@bob").click()
    await bob.get_by_role("navigation", name="Profile").get_by_role("link", name="Following").click()
    await expect(bob.get_by_role("list", name="Following").get_by_role("link")).to_have_text(
        ["Ada Lovelace @ada"]
    )
    await ada.goto(f"/#/u/{ada_id}/followers")
    followers = ada.get_by_role("list", name="Followers")
    await expect(followers.get_by_role("link")).to_have_text(["Bob @bob"])
    await expect(ada.get_by_text("Follows you")).to_have_count(0)  # her own page has no badge

    # Ada deletes the tweet; it is gone from Bob's timeline, the reply stays.
    await ada.goto("/")
    doomed = tweet(timeline(ada), "Malvern")
    await doomed.get_by_role("button", name="Delete").click()
    await doomed.get_by_role("button", name="Delete for good").click()
    await expect(tweet(timeline(ada), "Malvern")).to_have_count(0)
    await expect(ada.get_by_role("status").filter(has_text="deleted")).to_be_visible()
    await bob.goto("/")
    await expect(tweet(timeline(bob), "Which hills")).to_be_visible()
    await expect(tweet(timeline(bob), "Malvern")).to_have_count(0)

    # Bob unfollows from her profile.
    await bob.goto(f"/#/u/{ada_id}")
    await bob.get_by_role("button", name="Unfollow").click()
    await expect(bob.get_by_role("button", name="Follow")).to_be_visible()
    await expect(bob.get_by_role("link", name="0 followers")).to_be_visible()


async def test_the_home_timeline_loads_older_pages_while_scrolling(new_page: NewPage, api: Api) -> None:
    writer = await api.new_user("writer")
    reader = await api.new_user("reader", password=PASSWORD)
    await rpc(
        api.graph.Follow(
            graph_pb2.FollowRequest(follower_id=reader.user_id, followee_id=writer.user_id),
            metadata=as_user(reader.user_id),
        )
    )
    for n in range(45):
        await rpc(
            api.tweets.CreateTweet(
                tweets_pb2.CreateTweetRequest(user_id=writer.user_id, content=f"tweet number {n}"),
                metadata=as_user(writer.user_id),
            )
        )
    page = await new_page()
    await log_in(page, "reader")
    items = timeline(page).get_by_role("article")
    await expect(items).to_have_count(20)
    await expect(items.first).to_contain_text("tweet number 44")
    for _ in range(10):
        await page.mouse.wheel(0, 20_000)
        if await items.count() == 45:
            break
        await page.wait_for_timeout(200)
    await expect(items).to_have_count(45)
    texts = [re.findall(r"tweet number (\d+)", text)[0] for text in await items.all_inner_texts()]
    assert texts == [str(n) for n in range(44, -1, -1)], texts
    await expect(page.get_by_text("You're all caught up.")).to_be_visible()

    # A new tweet while the reader is far down: the bar says so, the page does not move.
    await expect(page.locator("section.home")).to_have_attribute("data-live", "connected")
    await items.nth(30).scroll_into_view_if_needed()
    reading = await items.nth(30).bounding_box()
    await rpc(
        api.tweets.CreateTweet(
            tweets_pb2.CreateTweetRequest(user_id=writer.user_id, content="tweet number 45"),
            metadata=as_user(writer.user_id),
        )
    )
    bar = page.get_by_role("button", name="1 new tweet")
    await expect(bar).to_be_visible()
    assert await items.nth(30).bounding_box() == reading
    await bar.click()
    await expect(items).to_have_count(46)
    await expect(items.first).to_contain_text("tweet number 45")
    assert await page.evaluate("window.scrollY") == 0


async def test_errors_are_told_in_words(new_page: NewPage, api: Api) -> None:
    page = await new_page()
    await api.new_user("carol", password=PASSWORD)
    await page.goto("/#/login")
    await page.get_by_label("Handle").fill("carol")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong handle or password.")
    await expect(page.get_by_label("Password")).to_be_focused()

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Sign up").click()
    # The sign-up form replaces the log-in form: fill it, not the one on its way out.
    await expect(page.get_by_role("heading", name="Join Chirp")).to_be_visible()
    await page.get_by_label("Handle").fill("carol")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("alert")).to_have_text("That handle is taken. Pick another one.")

    # The test limits allow 5 tweets a minute: the sixth is refused with the wait in seconds.
    await page.get_by_label("Handle").fill("dave")
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    box = compose(page).get_by_label("What's happening?")
    for n in range(5):
        await box.fill(f"counting {n}")
        await box.press("Control+Enter")
        await expect(tweet(timeline(page), f"counting {n}")).to_be_visible()
    await box.fill("one too many")
    await box.press("Control+Enter")
    await expect(compose(page).get_by_role("alert")).to_have_text(
        re.compile(r"^Too many requests\. Try again in \d+ s\.$")
    )
    await expect(box).to_have_value("one too many")


async def test_posting_with_the_keyboard_only(new_page: NewPage, api: Api) -> None:
    page = await new_page()
    await api.new_user("erin", password=PASSWORD)
    await log_in(page, "erin")
    box = compose(page).get_by_label("What's happening?")
    await page.reload()
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    await page.keyboard.press("Tab")  # from the top: the skip link first
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(10):
        if await box.evaluate("element => element === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    await expect(box).to_be_focused()
    await page.keyboard.type("Typed, not clicked.")
    await page.keyboard.press("Control+Enter")
    await expect(tweet(timeline(page), "Typed, not clicked.")).to_be_visible()
    await expect(box).to_have_value("")

    # Tab to the Post button and press Enter.
    await box.focus()
    await page.keyboard.type("Posted with the button.")
    post = compose(page).get_by_role("button", name="Post")
    for _ in range(4):
        await page.keyboard.press("Tab")
        if await post.evaluate("element => element === document.activeElement"):
            break
    await expect(post).to_be_focused()
    outline = await post.evaluate("element => getComputedStyle(element).outlineStyle")
    assert outline != "none", "no visible focus on the Post button"
    await page.keyboard.press("Enter")
    await expect(tweet(timeline(page), "Posted with the button.")).to_be_visible()


async def test_on_a_phone_nothing_scrolls_sideways(new_page: NewPage, api: Api, tmp_path: Path) -> None:
    frank = await api.new_user("frank", password=PASSWORD)
    await rpc(
        api.tweets.CreateTweet(
            tweets_pb2.CreateTweetRequest(
                user_id=frank.user_id, content="a" * 120 + " https://example.com/" + "very-long-path-" * 6
            ),
            metadata=as_user(frank.user_id),
        )
    )
    page = await new_page(viewport=PHONE)
    await log_in(page, "frank")
    picture = tmp_path / "wide.png"
    picture.write_bytes(dusk_png(1200, 300))
    await compose(page).locator("input[type=file]").set_input_files([str(picture)] * 4)
    await expect(compose(page).get_by_text("Uploaded")).to_have_count(4)
    await compose(page).get_by_role("button", name="Post").click()
    await expect(timeline(page).get_by_role("img")).to_have_count(4)
    await _no_sideways_scroll(page)
    await timeline(page).get_by_role("article").first.get_by_role("button", name="Reply").click()
    await _no_sideways_scroll(page)
    user = await rpc(api.users.GetUser(users_pb2.GetUserRequest(user_id=frank.user_id)))
    await page.goto(f"/#/u/{user.user_id}")
    await expect(page.get_by_role("heading", name="Frank")).to_be_visible()
    await _no_sideways_scroll(page)


async def _no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px viewport"
