"""A small document store: JSON documents in an in-memory SQLite table,
inserted, queried, decoded and aggregated."""
import json
import random
import sqlite3

rng = random.Random(1)
db = sqlite3.connect(":memory:")
db.execute("create table docs (id integer primary key, kind text, body text)")
for i in range(15000):
    doc = {"id": i, "kind": rng.choice("abcde"), "tags": [rng.randrange(100) for _ in range(rng.randrange(20))],
           "text": "x" * rng.randrange(2000)}
    db.execute("insert into docs values (?, ?, ?)", (i, doc["kind"], json.dumps(doc)))
db.commit()
total = 0
for kind in "abcde":
    rows = db.execute("select body from docs where kind = ? order by id", (kind,)).fetchall()
    total += sum(len(json.loads(body)["tags"]) for (body,) in rows)
print(total)
