#!/usr/bin/env python3
"""Browser scenarios for Dogear's web app, driven by Playwright in Debian's headless Chromium.

Run by tests/web.rs against a real `dogear` it started (never on its own in CI):

    python3 tests/browser/web.py SCENARIO --base http://127.0.0.1:PORT --args '{...}'

Each scenario prints one JSON object (what the Rust side checks next) on its last line and
exits 0, or prints what went wrong and exits 1. Controls are found as a person finds them:
by role and accessible name.
"""

import argparse
import base64
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 20_000


def chromium():
    for name in ("chromium", "chromium-browser", "chromium-headless-shell"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("chromium is not installed: run the suite with scripts/test.sh, which installs it")


def rest(base, method, path, token, body=None):
    req = urllib.request.Request(base + path, method=method)
    req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None


def sign_in(page, base, username, password):
    page.goto(base + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Library")).to_be_visible()


UNNAMED = """() => [...document.querySelectorAll('a[href], button, input, select, textarea, iframe, [role=button]')]
    .filter((el) => el.offsetParent !== null || el.getClientRects().length)
    .filter((el) => {
        if (el.type === 'hidden') return false;
        const label = el.getAttribute('aria-label') || el.getAttribute('title')
            || (el.labels && [...el.labels].map((l) => l.textContent).join(' '))
            || (el.tagName !== 'INPUT' && el.tagName !== 'SELECT' ? el.textContent : '');
        return !(label || '').trim();
    })
    .map((el) => el.outerHTML.slice(0, 120))"""


def every_control_named(page, where_):
    """Every visible control has an accessible name (its text, label or aria-label)."""
    unnamed = page.evaluate(UNNAMED)
    assert not unnamed, f"{where_}: controls without a name: {unnamed}"


def where(page):
    return page.locator(".where").text_content() or ""


def percent_shown(page):
    return float(where(page).split("%")[0].strip())


def wait_sent(page):
    """Until every position this page wrote is acknowledged by the server."""
    page.wait_for_function(
        "() => Object.keys(localStorage).filter(k => k.startsWith('dogear.pending.'))"
        ".every(k => JSON.parse(localStorage.getItem(k)).length === 0)",
        timeout=TIMEOUT_MS,
    )


def settled(page):
    """Until the reader has drawn a page and its debounced write has gone out."""
    expect(page.locator(".where")).not_to_be_empty()
    time.sleep(1.2)
    wait_sent(page)


def reading(p, base, a):
    """Sign in; upload an EPUB and see it; search; read five pages; another device's later
    position is offered and taken; a reload keeps session and place; dark theme persists."""
    out = {}
    browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(TIMEOUT_MS)
    sign_in(page, base, a["username"], a["password"])

    every_control_named(page, "library")
    # Upload through the page's own file input, and watch the import finish.
    page.get_by_label("Upload books").set_input_files(a["epub"])
    expect(page.locator(".uploads .state")).to_have_text("added", timeout=60_000)
    title = a["title"]
    expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    if a.get("dropped"):
        # A file dropped on the page uploads the same way.
        with open(a["dropped"], "rb") as f:
            data = base64.b64encode(f.read()).decode()
        page.evaluate(
            """([name, b64]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, { type: 'application/epub+zip' }));
                const main = document.querySelector('main');
                for (const type of ['dragenter', 'dragover', 'drop']) {
                    main.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
                }
            }""",
            [os.path.basename(a["dropped"]), data],
        )
        expect(page.locator(".uploads li")).to_have_count(2)
        expect(page.locator(".uploads li").nth(1).locator(".state")).to_have_text("added", timeout=60_000)
        expect(page.get_by_role("link", name=a["dropped_title"], exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=a["other_title"], exact=True)).to_be_visible()

    if a.get("shots"):
        page.wait_for_timeout(1000)
        page.screenshot(path=os.path.join(a["shots"], "library.png"))
    # Search as you type narrows the grid to the book.
    page.get_by_label("Search").fill(a["search"])
    expect(page.get_by_role("link", name=a["other_title"], exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()

    # A shelf made in the library.
    page.get_by_label("Search").fill("")
    page.get_by_label("New shelf").fill("Tragedies")
    page.get_by_role("button", name="Add shelf").click()
    expect(page.get_by_role("link", name="Tragedies (0)")).to_be_visible()

    page.get_by_label("Search").fill(a["search"])
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    out["book_id"] = page.url.rstrip("/").rsplit("/", 1)[1]
    # The book page: its file downloads whole; it goes on the shelf.
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download EPUB").click()
    out["downloaded_bytes"] = os.path.getsize(dl.value.path())
    out["downloaded_name"] = dl.value.suggested_filename
    page.get_by_role("checkbox", name="Tragedies").check()
    expect(page.get_by_role("status")).to_contain_text("On “Tragedies”")
    page.get_by_role("link", name="Library").click()
    page.get_by_role("link", name="Tragedies (1)").click()
    expect(page.get_by_role("heading", name="Tragedies")).to_be_visible()
    expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    if a.get("shots"):
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(a["shots"], "book.png"))
    every_control_named(page, "book page")
    page.get_by_role("link", name="Read").click()
    next_page = page.get_by_role("button", name="Next page")
    expect(next_page).to_be_visible()
    expect(page.locator(".where")).to_contain_text("page 1 of")
    frame = page.frame_locator("iframe[title='Book text']")
    expect(frame.locator("body")).not_to_be_empty()
    for _ in range(5):
        before = where(page)
        next_page.click()
        expect(page.locator(".where")).not_to_have_text(before)
    # The keyboard turns pages too, and back.
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    settled(page)
    out["after_five"] = percent_shown(page)
    out["progress_after_five"] = rest(base, "GET", f"/v1/books/{out['book_id']}/progress", a["token"])
    out["label_after_five"] = where(page)
    if a.get("shots"):
        page.screenshot(path=os.path.join(a["shots"], "reader.png"))

    every_control_named(page, "reader")
    # Table of contents and settings: named, reachable, closed with Escape.
    page.get_by_role("button", name="Table of contents").click()
    expect(page.get_by_role("navigation", name="Contents")).to_be_visible()
    every_control_named(page, "table of contents")
    page.keyboard.press("Escape")
    expect(page.get_by_role("navigation", name="Contents")).to_be_hidden()

    # Another device writes a later position over REST: the reader offers it.
    body = {
        "event_id": a["event_id"],
        "device_id": a["other_device"],
        "percent": 63.0,
        "client_ts": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    # (Through another node of the cluster when one is given.)
    rest(a.get("rest_base") or base, "POST", f"/v1/books/{out['book_id']}/progress", a["token"], body)
    offer = page.get_by_role("alertdialog")
    expect(offer).to_contain_text(f"Continue from 63 % ({a['other_device_name']})?")
    page.get_by_role("button", name="Continue").click()
    expect(offer).to_be_hidden()
    page.wait_for_function(
        "() => parseFloat(document.querySelector('.where').textContent) >= 60"
    )
    settled(page)
    out["after_offer"] = percent_shown(page)
    label = where(page)

    # A reload keeps the session (no sign-in page) and the place.
    page.reload()
    expect(page.locator(".where")).to_have_text(label)
    assert "/login" not in page.url, page.url

    # Dark theme, chosen in the settings, survives a reload; the book's page follows it.
    page.get_by_role("button", name="Reading settings").click()
    page.get_by_role("radio", name="Dark").check()
    page.keyboard.press("Escape")
    page.reload()
    expect(page.locator(".where")).to_have_text(label)
    theme = page.evaluate("document.documentElement.dataset.theme")
    assert theme == "dark", theme
    bg = page.evaluate(
        "getComputedStyle(document.querySelector('iframe').contentDocument.body).backgroundColor"
    )
    out["frame_background"] = bg
    assert bg == "rgb(18, 18, 18)", bg
    # The library leads with what is being read, straight back to the place.
    page.goto(base + "/library")
    page.get_by_role("link", name=f"Continue {title}").click()
    expect(page.locator(".where")).to_have_text(label)
    # The devices page: a Kobo token and the exact line to paste.
    page.goto(base + "/devices")
    page.get_by_role("button", name="Make a Kobo token").click()
    line = page.get_by_role("textbox", name="Kobo line")
    expect(line).to_have_value(re.compile(r"^api_endpoint=http://127\.0\.0\.1:\d+/kobo/\S+$"))
    out["kobo_line"] = line.input_value()
    every_control_named(page, "devices")
    assert not errors, errors
    browser.close()
    return out


def hostile(p, base, a):
    """A book with a script, an onload handler and a remote image: no script runs, nothing
    is requested from anywhere but the node."""
    browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.set_default_timeout(TIMEOUT_MS)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in(page, base, a["username"], a["password"])
    page.goto(f"{base}/reader/{a['book_id']}")
    expect(page.locator(".where")).to_contain_text("page 1 of")
    frame = page.frame_locator("iframe[title='Book text']")
    expect(frame.get_by_text("An ordinary paragraph")).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    page.wait_for_timeout(1500)
    flags = page.evaluate(
        """() => {
            const w = document.querySelector('iframe').contentWindow;
            const d = document.querySelector('iframe').contentDocument;
            return {
                top: window.pwned === undefined ? null : window.pwned,
                frame: w.pwned === undefined ? null : w.pwned,
                title: d.title,
                scripts: d.querySelectorAll('script').length,
                handlers: d.querySelectorAll('[onload],[onerror],[onclick]').length,
                remote: [...d.querySelectorAll('img')].filter(i => /^(https?:)?\\/\\//.test(i.getAttribute('src') || '')).length,
            };
        }"""
    )
    outside = [u for u in requests if not (u.startswith(base + "/") or u.startswith("data:") or u.startswith("blob:"))]
    browser.close()
    assert flags["top"] is None and flags["frame"] is None, flags
    assert flags["scripts"] == 0 and flags["handlers"] == 0 and flags["remote"] == 0, flags
    assert not outside, outside
    return {"flags": flags, "requests": len(requests)}


def paged(p, base, a):
    """A PDF and a CBZ open page by page; the page is the position."""
    browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.set_default_timeout(TIMEOUT_MS)
    sign_in(page, base, a["username"], a["password"])
    out = {}
    # The owner edits a book's details on its page.
    page.goto(f"{base}/books/{a['pdf']['id']}")
    page.get_by_role("button", name="Edit details").click()
    page.get_by_label("Title").fill(a["new_title"])
    page.get_by_label("Tags (comma between tags)").fill("Poetry, Quartos")
    page.get_by_role("button", name="Save details").click()
    expect(page.get_by_role("heading", name=a["new_title"])).to_be_visible()
    expect(page.get_by_role("link", name="Quartos")).to_be_visible()
    every_control_named(page, "book page with its editor")
    for kind in ("pdf", "cbz"):
        book = a[kind]
        page.goto(f"{base}/reader/{book['id']}")
        pages = book["pages"]
        img = page.get_by_role("img", name=f"Page 1 of {pages}")
        expect(img).to_be_visible()
        page.get_by_role("button", name="Next page").click()
        img = page.get_by_role("img", name=f"Page 2 of {pages}")
        expect(img).to_be_visible()
        page.wait_for_function("() => { const i = document.querySelector('.pageimg'); return i.complete && i.naturalWidth > 0; }")
        width = page.evaluate("document.querySelector('.pageimg').naturalWidth")
        page.get_by_role("button", name="Next page").click()
        expect(page.get_by_role("img", name=f"Page 3 of {pages}")).to_be_visible()
        settled(page)
        out[kind] = {"width": width, "label": where(page)}
    browser.close()
    return out


def register(p, base, a):
    """Registering from the sign-in page when the server takes new accounts (and the reason
    when it does not); signing out ends the session, also for a reload."""
    browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base + "/")
    page.get_by_role("link", name="Create one").click()
    page.get_by_label("Username").fill(a["username"])
    page.get_by_label("Password").fill(a["password"])
    page.get_by_role("button", name="Create account").click()
    out = {}
    if a.get("closed"):
        expect(page.get_by_role("alert")).to_contain_text("does not take new accounts")
        out["registered"] = False
    else:
        expect(page.get_by_role("heading", name="Library")).to_be_visible()
        expect(page.get_by_text("No books here yet")).to_be_visible()
        page.reload()
        expect(page.get_by_role("heading", name="Library")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        page.reload()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        # Straight to a page of the app: the sign-in comes first, then that page.
        page.goto(base + "/devices")
        page.get_by_label("Username").fill(a["username"])
        page.get_by_label("Password").fill(a["password"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Devices and apps")).to_be_visible()
        out["registered"] = True
    browser.close()
    return out


def renew(p, base, a):
    """A reader whose token has run out (a long sitting) gets a new one and goes on: the next
    chapter and the next PDF page still load."""
    browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.set_default_timeout(TIMEOUT_MS)
    sign_in(page, base, a["username"], a["password"])
    page.goto(f"{base}/reader/{a['epub']}")
    expect(page.locator(".where")).to_contain_text("page 1 of")
    first = page.evaluate("document.querySelector('iframe').contentDocument.location.pathname")
    page.wait_for_timeout(a["wait_ms"])
    page.get_by_role("button", name="Table of contents").click()
    page.get_by_role("navigation", name="Contents").get_by_role("button").last.click()
    page.wait_for_function(
        """(first) => {
            const d = document.querySelector('iframe').contentDocument;
            return d && d.location.pathname !== first && d.contentType === 'text/html'
                && d.getElementById('dogear-look') && d.body.innerText.trim().length > 0;
        }""",
        arg=first,
    )
    later = page.evaluate("document.querySelector('iframe').contentDocument.location.pathname")
    page.goto(f"{base}/reader/{a['pdf']}")
    expect(page.get_by_role("img", name="Page 1 of", exact=False)).to_be_visible()
    page.wait_for_timeout(a["wait_ms"])
    page.get_by_role("button", name="Next page").click()
    page.wait_for_function(
        "() => { const i = document.querySelector('.pageimg'); return i.alt.startsWith('Page 2 of') && i.complete && i.naturalWidth > 0; }"
    )
    browser.close()
    return {"first": first, "later": later}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["reading", "hostile", "paged", "register", "renew"])
    ap.add_argument("--base", required=True)
    ap.add_argument("--args", default="{}")
    opts = ap.parse_args()
    args = json.loads(opts.args)
    with sync_playwright() as p:
        scenarios = {"reading": reading, "hostile": hostile, "paged": paged, "register": register, "renew": renew}
        out = scenarios[opts.scenario](p, opts.base, args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
