#!/usr/bin/env python3
"""Times OPDS feed pages as an app reads them: one keep-alive connection, HTTP Basic,
following `next` (and `previous` back from `last`) links. Prints p50/p99/max per feed kind.

usage: opds_pages.py BASE_URL USER PASSWORD
"""
import base64, http.client, json, re, statistics, sys, time, urllib.parse

base, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(url):
    p = urllib.parse.urlsplit(url)
    path = p.path + ("?" + p.query if p.query else "")
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": auth})
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    if r.status != 200:
        sys.exit(f"{url}: {r.status} {body[:200]!r}")
    return body.decode(), ms


def atom_link(body, rel):
    m = re.search(r'<link rel="%s" href="([^"]+)"' % re.escape(rel), body)
    return m.group(1).replace("&amp;", "&") if m else None


def walk_atom(start, rel, limit_pages):
    times, books, url = [], 0, start
    while url and len(times) < limit_pages:
        body, ms = get(url)
        times.append(ms)
        books += body.count("<entry>")
        url = atom_link(body, rel)
    return times, books


def walk_json(start, limit_pages):
    times, books, url = [], 0, start
    while url and len(times) < limit_pages:
        body, ms = get(url)
        times.append(ms)
        d = json.loads(body)
        books += len(d.get("publications", [])) + len(d.get("navigation", []))
        url = next((l["href"] for l in d["links"] if l.get("rel") == "next"), None)
    return times, books


def report(name, times, items):
    s = sorted(times)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    print(f"{name:44} pages={len(s):4} items={items:6} p50={statistics.median(s):6.2f} ms "
          f"p99={p(0.99):6.2f} ms max={s[-1]:6.2f} ms")


v1, v2 = f"{base}/opds/v1.2", f"{base}/opds/v2"
get(f"{v1}/catalog")  # connection and sign-in warm
for sort in ["title", "author", "added", "series"]:
    report(f"v1.2 all?sort={sort} (every page, next)", *walk_atom(f"{v1}/all?sort={sort}", "next", 10_000))
report("v1.2 all, from last=1 back by previous", *walk_atom(f"{v1}/all?last=1", "previous", 10_000))
report("v1.2 new (newest first, 100 pages)", *walk_atom(f"{v1}/new", "next", 100))
report("v1.2 all?format=epub (100 pages)", *walk_atom(f"{v1}/all?format=epub", "next", 100))
report("v2 all (every page, next)", *walk_json(f"{v2}/all", 10_000))
report("v1.2 authors (browse list, every page)", *walk_atom(f"{v1}/authors", "next", 10_000))
report("v1.2 tags (browse list)", *walk_atom(f"{v1}/tags", "next", 10_000))
report("v1.2 series (browse list, every page)", *walk_atom(f"{v1}/series", "next", 10_000))
report("v1.2 authors/<one author> (acquisition)", *walk_atom(f"{v1}/authors/Author%200007%20Writer", "next", 10_000))
report("v1.2 search?q=Author 0007 (every page)", *walk_atom(f"{v1}/search?q=Author%200007", "next", 10_000))
