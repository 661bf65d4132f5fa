"""The SQLite fast path of executemany writes what SQLAlchemy's ordinary path writes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from corral.store import Store
from corral.store import schema as t
from corral.store.bulk import executemany


def test_bulk_insert_and_update_match_sqlalchemy(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    run = {"id": "r1", "identity": "x", "pipeline": "p", "source": "s", "params": {"a": [1, 2]},
           "workdir": ".", "executor": {"kind": "local"}, "state": "running", "created_at": 1.0}
    store.create_run(run)
    base = {"run_id": "r1", "grp": "g", "kind": "python", "key": "k", "state": "pending",
            "params": {"x": 1, "s": "é"}, "inputs": None, "upstream": {}, "resources": {"cores": 2}}
    fast = [{**base, "idx": i, "name": f"fast{i}"} for i in range(3)]
    slow = [{**base, "idx": i, "name": f"slow{i}"} for i in range(3)]
    with store.transaction() as c:
        executemany(c, t.tasks.insert(), fast, "test.insert")
        c.execute(t.tasks.insert(), slow)
    rows = {r["name"]: r for r in store.tasks("r1")}
    for i in range(3):
        a, b = rows[f"fast{i}"], rows[f"slow{i}"]
        for col in ("params", "upstream", "resources", "attempts", "cached", "state"):
            assert a[col] == b[col], col
        assert a["attempts"] == 0 and a["cached"] is False  # column defaults applied
        assert a["inputs"] is None
    update = (t.tasks.update().where(t.tasks.c.id == sa.bindparam("_id"))
              .values(state=sa.bindparam("state"), params=sa.bindparam("params")))
    with store.transaction() as c:
        executemany(c, update, [{"_id": rows["fast0"]["id"], "params": {"y": [None]},
                                 "state": "cached"}], "test.update")
    again = {r["name"]: r for r in store.tasks("r1")}
    assert again["fast0"]["state"] == "cached" and again["fast0"]["params"] == {"y": [None]}
    assert again["fast1"]["state"] == "pending"
