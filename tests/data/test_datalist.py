"""The seeded split: deterministic, machine-independent, disjoint folds; the JSON writer and reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from attnseg_monai.data import load_datalist, make_datalist, select_fold, write_datalist


def _items(root: str, n: int) -> list[dict[str, str]]:
    return [{"image": f"{root}/images/case_{i:03d}.png", "label": f"{root}/labels/case_{i:03d}.png"} for i in range(n)]


def _names(entries: list[dict]) -> list[str]:
    return [Path(e["image"]).name for e in entries]


def test_split_is_deterministic_disjoint_and_complete():
    items = _items("/data/set", 23)
    a = make_datalist(items, val_fraction=0.2, num_folds=5, seed=3)
    b = make_datalist(list(reversed(items)), val_fraction=0.2, num_folds=5, seed=3)
    assert a == b  # input order does not matter
    train, val = _names(a["training"]), _names(a["validation"])
    assert len(val) == 5 and len(train) == 18
    assert not set(train) & set(val) and set(train) | set(val) == set(_names(items))
    folds = [e["fold"] for e in a["training"]]
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    sizes = [folds.count(k) for k in range(5)]
    assert max(sizes) - min(sizes) <= 1
    assert train == sorted(train) and val == sorted(val)
    assert all("fold" not in e for e in a["validation"])
    c = make_datalist(items, val_fraction=0.2, num_folds=5, seed=4)
    assert _names(c["validation"]) != val  # another seed, another split


def test_split_does_not_depend_on_where_the_data_lives():
    here = make_datalist(_items("/home/alice/data", 17), seed=0)
    there = make_datalist(_items("C:/scratch/bob/some/deeper/copy", 17), seed=0)
    assert _names(here["validation"]) == _names(there["validation"])
    assert [e["fold"] for e in here["training"]] == [e["fold"] for e in there["training"]]


def test_extra_keys_kept_and_old_fold_replaced():
    items = [{**item, "fold": 99, "case": i} for i, item in enumerate(_items("/d", 6))]
    out = make_datalist(items, val_fraction=0.0, num_folds=2, seed=0)
    assert out["validation"] == [] and len(out["training"]) == 6
    assert {e["fold"] for e in out["training"]} == {0, 1}
    assert sorted(e["case"] for e in out["training"]) == list(range(6))


def test_tiny_data_sets_and_bad_arguments():
    two = make_datalist(_items("/d", 2), val_fraction=0.1, num_folds=1)
    assert len(two["validation"]) == 1 and len(two["training"]) == 1
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        make_datalist(_items("/d", 4))
    with pytest.raises(ValueError, match="val_fraction"):
        make_datalist(_items("/d", 10), val_fraction=1.0)
    with pytest.raises(ValueError, match="num_folds"):
        make_datalist(_items("/d", 10), num_folds=0)
    with pytest.raises(ValueError, match="seed"):
        make_datalist(_items("/d", 10), seed=-1)
    with pytest.raises(ValueError, match="empty"):
        make_datalist([])
    with pytest.raises(ValueError, match="duplicate"):
        make_datalist(_items("/d", 6) + _items("/d", 1), num_folds=1)
    with pytest.raises(ValueError, match="'image' key"):
        make_datalist([{"label": "x.png"}])


def test_select_fold():
    datalist = make_datalist(_items("/d", 12), val_fraction=0.25, num_folds=3, seed=1)
    train, val = select_fold(datalist, None)
    assert len(train) == 9 and val == datalist["validation"]
    seen: list[str] = []
    for k in range(3):
        train_k, val_k = select_fold(datalist, k)
        assert len(train_k) + len(val_k) == 9 and not set(_names(train_k)) & set(_names(val_k))
        seen += _names(val_k)
    assert sorted(seen) == sorted(_names(datalist["training"]))
    with pytest.raises(ValueError, match="fold 3 not in the datalist"):
        select_fold(datalist, 3)


def test_write_relative_and_read_back_with_monai(tmp_path: Path):
    base = tmp_path / "bundle" / "data"
    items = _items(str(base), 6)
    items.append({"image": "/elsewhere/outside.png", "label": "/elsewhere/outside_mask.png"})
    datalist = make_datalist(items, val_fraction=0.3, num_folds=2)
    path = write_datalist(datalist, tmp_path / "bundle" / "datalist.json", base_dir=base)
    raw = json.loads(path.read_text())
    inside = [e for e in raw["training"] + raw["validation"] if "outside" not in e["image"]]
    assert all(e["image"].startswith("images/") and e["label"].startswith("labels/") for e in inside)
    assert any(e["image"] == "/elsewhere/outside.png" for e in raw["training"] + raw["validation"])
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind

    loaded = load_datalist(path, base_dir=base)
    assert loaded == datalist
    monai_train = load_decathlon_datalist(str(path), data_list_key="training", base_dir=str(base))
    assert [e["image"] for e in monai_train] == [e["image"] for e in datalist["training"]]
    assert [e["fold"] for e in monai_train] == [e["fold"] for e in datalist["training"]]


def test_atomic_write_gives_ordinary_permissions(tmp_path: Path):
    import os

    from attnseg_monai.data import atomic_write_bytes

    umask = os.umask(0)
    os.umask(umask)
    target = atomic_write_bytes(tmp_path / "sub" / "file.bin", b"abc")
    assert target.read_bytes() == b"abc"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
