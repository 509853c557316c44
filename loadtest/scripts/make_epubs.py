#!/usr/bin/env python3
"""Writes N distinct EPUBs for the import benchmark: the fixture EPUBs in turn, each with
a unique zip comment, so every copy has its own content hash (no deduplication) and the
same metadata work as a real book.

usage: make_epubs.py OUT_DIR N [FIXTURES_DIR]
"""
import os, struct, sys

out, n = sys.argv[1], int(sys.argv[2])
fixtures = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "../../tests/fixtures/books/good")
books = sorted(os.path.join(fixtures, f) for f in os.listdir(fixtures) if f.endswith(".epub"))
os.makedirs(out, exist_ok=True)
datas = [open(b, "rb").read() for b in books]
for i in range(n):
    data = datas[i % len(datas)]
    eocd = data.rfind(b"PK\x05\x06")
    comment = b"dogear-bench-%08d" % i
    head = data[: eocd + 20] + struct.pack("<H", len(comment)) + comment
    with open(os.path.join(out, "book-%06d.epub" % i), "wb") as f:
        f.write(head)
print("wrote %d EPUBs to %s" % (n, out))
