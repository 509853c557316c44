#!/usr/bin/env python3
"""How long the web reader takes to show the first page of a book, in Debian's headless
Chromium driven by Playwright. Two ways of opening it, each RUNS times:

  - from the book page ("Read"): the app is loaded, the reader fetches the book's layout and
    its first document;
  - cold: a new tab straight at /reader/{id} (the app's files from the browser's cache, the
    session restored from its cookie, then the book).

"Visible" is when the book's frame holds the document, styled, with its text laid out (or,
for a cover page, its image decoded) and the reader shows where it is. Timed in the page (performance.now() from the click or the navigation).

    loadtest/scripts/web_first_page.sh [DOGEAR_BINARY]   (starts a server and runs this)
"""

import json
import os
import shutil
import statistics
import sys

from playwright.sync_api import sync_playwright

base, user, password, book = sys.argv[1:5]
runs = int(os.environ.get("RUNS", "20"))
verbose = os.environ.get("VERBOSE")
VISIBLE = """() => {
  const f = document.querySelector('iframe[title="Book text"]');
  const w = document.querySelector('.where');
  if (!f || !w || !w.textContent) return false;
  const d = f.contentDocument;
  if (!d || !d.body || !d.getElementById('dogear-look')) return false;
  // Text laid out, or (a cover) its image decoded.
  return d.body.innerText.trim().length > 0 || [...d.images].some((i) => i.complete && i.naturalWidth > 0);
}"""

with sync_playwright() as p:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto(base + "/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Library").wait_for()
    warm, cold = [], []
    for _ in range(runs):
        page.goto(f"{base}/books/{book}")
        page.get_by_role("link", name="Read").wait_for()
        page.evaluate("() => { window.__t0 = null; document.addEventListener('click', () => { window.__t0 = performance.now(); }, { capture: true, once: true }); }")
        page.get_by_role("link", name="Read").click()
        page.wait_for_function(VISIBLE, polling="raf")
        warm.append(page.evaluate("performance.now() - window.__t0"))
        if verbose:
            print("warm", warm[-1], file=sys.stderr)
    for _ in range(runs):
        tab = ctx.new_page()
        if verbose:
            tab.on("console", lambda m: print("console:", m.text, file=sys.stderr))
        tab.goto(f"{base}/reader/{book}", wait_until="commit")
        tab.wait_for_function(VISIBLE, polling="raf")
        cold.append(tab.evaluate("performance.now()"))
        tab.close()
    browser.close()

def summary(xs):
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 1), "p95_ms": round(xs[int(len(xs) * 0.95) - 1], 1), "max_ms": round(xs[-1], 1)}

print(json.dumps({"runs": runs, "from_book_page": summary(warm), "cold_tab": summary(cold)}, indent=2))
