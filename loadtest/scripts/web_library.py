#!/usr/bin/env python3
"""The web app's library on a big library, in Debian's headless Chromium (Playwright):
the first screen of covers, then page after page of infinite scroll, a sort turned round,
a filter and searches typed, each timed in the page (performance.now()).

    loadtest/scripts/web_library.sh [BOOKS]   (builds the library, starts a node, runs this)
"""

import json
import shutil
import statistics
import sys

from playwright.sync_api import sync_playwright

base, user, password = sys.argv[1:4]
pages = int(sys.argv[4]) if len(sys.argv) > 4 else 50

CARDS = "document.querySelectorAll('.grid li').length"


def summary(xs):
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(statistics.median(xs), 1),
            "p95_ms": round(xs[max(0, int(len(xs) * 0.95) - 1)], 1), "max_ms": round(xs[-1], 1)}


with sync_playwright() as p:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base + "/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    t0 = page.evaluate("performance.now()")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function(f"() => {CARDS} >= 60", polling="raf")
    first = page.evaluate("performance.now()") - t0

    # Infinite scroll: each step brings one more page of 60 books.
    steps = []
    for _ in range(pages):
        n = page.evaluate(CARDS)
        t = page.evaluate("() => { window.__t = performance.now(); document.querySelector('.sentinel').scrollIntoView(); return window.__t; }")
        page.wait_for_function(f"() => {CARDS} > {n}", polling="raf")
        steps.append(page.evaluate("performance.now()") - t)
        page.wait_for_timeout(50)
    deep = page.evaluate(CARDS)

    def timed_change(action, done):
        page.evaluate("() => { window.__t = performance.now(); }")
        action()
        page.wait_for_function(done, polling="raf")
        return page.evaluate("performance.now() - window.__t")

    SHOWN = "() => new URLSearchParams(document.querySelector('.grid').dataset.query || '').get(%s) === %s"
    sort = timed_change(lambda: page.get_by_label("Sort").select_option("title"), SHOWN % ("'sort'", "'title'"))
    order = timed_change(lambda: page.get_by_label("Order").select_option("desc"), SHOWN % ("'order'", "'desc'"))
    searches = []
    for q in ["the", "sh", "war and", "zz"]:
        page.get_by_label("Search").fill("")
        page.wait_for_timeout(400)
        # From the last key typed to the grid showing the answer (the app waits 200 ms for
        # more keys before it asks: that wait is in the time).
        searches.append(timed_change(lambda: page.get_by_label("Search").fill(q), SHOWN % ("'q'", json.dumps(q))))
    browser.close()

print(json.dumps({
    "first_screen_after_sign_in_ms": round(first, 1),
    "scroll_page_of_60": summary(steps),
    "cards_after_scrolling": deep,
    "sort_by_title_ms": round(sort, 1),
    "order_reversed_ms": round(order, 1),
    "search_typed_ms (the, sh, war and, zz)": [round(x, 1) for x in searches],
}, indent=2))
