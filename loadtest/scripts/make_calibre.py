#!/usr/bin/env python3
"""Builds a Calibre library of N books for the indexing benchmark: the fixture library's
metadata.db (calibre 6.13's schema) emptied and refilled with N books by 1,000 authors,
with series, tags, ratings, identifiers, comments and one small EPUB each (distinct bytes).

usage: make_calibre.py OUT_DIR N [FIXTURES_DIR]
"""
import os, shutil, sqlite3, struct, sys, uuid

out, n = sys.argv[1], int(sys.argv[2])
fixtures = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "../../tests/fixtures")
os.makedirs(out, exist_ok=True)
db_path = os.path.join(out, "metadata.db")
shutil.copy(os.path.join(fixtures, "calibre-library/metadata.db"), db_path)
epub = open(os.path.join(fixtures, "books/good/apache-2.0.epub"), "rb").read()
eocd = epub.rfind(b"PK\x05\x06")
db = sqlite3.connect(db_path)
db.create_function("title_sort", 1, lambda t: t)
db.create_function("uuid4", 0, lambda: str(uuid.uuid4()))
for t in ["books_authors_link", "books_tags_link", "books_series_link", "books_ratings_link",
          "books_publishers_link", "books_languages_link", "identifiers", "comments", "data", "books"]:
    db.execute("DELETE FROM %s" % t)
db.execute("INSERT OR IGNORE INTO languages (lang_code) VALUES ('eng')")
eng = db.execute("SELECT id FROM languages WHERE lang_code = 'eng'").fetchone()[0]
for a in range(1000):
    db.execute("INSERT OR IGNORE INTO authors (id, name, sort, link) VALUES (?, ?, ?, '')",
               (10000 + a, "Author %04d Writer" % a, "Writer, Author %04d" % a))
for s in range(200):
    db.execute("INSERT OR IGNORE INTO series (id, name, sort) VALUES (?, ?, ?)", (10000 + s, "Series %03d" % s, "Series %03d" % s))
for t in range(50):
    db.execute("INSERT OR IGNORE INTO tags (id, name) VALUES (?, ?)", (10000 + t, "Tag %02d" % t))
for i in range(1, n + 1):
    author = 10000 + i % 1000
    title = "Book %06d of the benchmark" % i
    path = "Author %04d Writer/%s (%d)" % (i % 1000, title, i)
    db.execute(
        "INSERT INTO books (id, title, sort, timestamp, pubdate, series_index, author_sort, path, uuid, has_cover, last_modified)"
        " VALUES (?, ?, ?, '2026-01-01 00:00:00+00:00', '2001-01-01 00:00:00+00:00', ?, ?, ?, ?, 0, '2026-01-01 00:00:00+00:00')",
        (i, title, title, float(i % 7 + 1), "Writer, Author %04d" % (i % 1000), path, str(uuid.uuid4())))
    db.execute("INSERT INTO books_authors_link (book, author) VALUES (?, ?)", (i, author))
    if i % 3 == 0:
        db.execute("INSERT INTO books_series_link (book, series) VALUES (?, ?)", (i, 10000 + i % 200))
    db.execute("INSERT INTO books_tags_link (book, tag) VALUES (?, ?)", (i, 10000 + i % 50))
    db.execute("INSERT OR IGNORE INTO books_tags_link (book, tag) VALUES (?, ?)", (i, 10000 + (i * 7 + 1) % 50))
    db.execute("INSERT INTO books_languages_link (book, lang_code, item_order) VALUES (?, ?, 0)", (i, eng))
    db.execute("INSERT INTO identifiers (book, type, val) VALUES (?, 'isbn', ?)", (i, "979899%07d" % i))
    db.execute("INSERT INTO comments (book, text) VALUES (?, ?)", (i, "<p>Benchmark book %d.</p>" % i))
    name = "%s - Author %04d Writer" % (title, i % 1000)
    comment = b"dogear-calibre-%08d" % i
    data = epub[: eocd + 20] + struct.pack("<H", len(comment)) + comment
    db.execute("INSERT INTO data (book, format, uncompressed_size, name) VALUES (?, 'EPUB', ?, ?)", (i, len(data), name))
    folder = os.path.join(out, path)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".epub"), "wb") as f:
        f.write(data)
db.commit()
db.close()
print("wrote a Calibre library of %d books to %s" % (n, out))
