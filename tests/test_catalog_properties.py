"""Property-based: for generated manifests and folder trees, every input row or file ends as exactly one
manifest row with one status (and a reason unless ``ok``), labels round-trip byte for byte through
``manifest.parquet``, and the catalog writes nothing outside its run folder.

Examples are small (8x8 images, a handful of rows) so that ~30 of each run in a few seconds in the default suite.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from speciesfam import layout
from speciesfam.config import CatalogConfig
from speciesfam.data.catalog import run_catalog
from speciesfam.errors import SourceError

CFG = CatalogConfig(min_images=3)
STATUSES = {"ok", "duplicate", "unreadable", "too_small", "invalid", "conflict", "skipped", "no_family"}
FROM_IMAGE = {"ok", "duplicate", "too_small"}  # what a readable image can end as
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text a person might type, unicode included (no lone surrogates: no file or CSV can hold them).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
TRICKY = st.sampled_from(["007", "7", "7.0", "NA", "N/A", "null", "nan", "None", "", " ", "\t", "..", ".",
                          "../../../../tmp/x", "a/b", "x" * 300, "Félidae", "猫科", "1e3", "True", '"q"', "a,b"])
LABELS = st.one_of(TRICKY, TEXT, st.integers(-10**6, 10**6).map(str))


def make_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (seed * 37 % 256, seed * 11 % 256, 5)).save(path, format="PNG")


def snapshot(root: Path, skip: Path) -> dict[str, float]:
    """Every path under ``root`` but ``skip`` with its modification time (a write anywhere changes it)."""
    return {str(p): p.lstat().st_mtime_ns for p in root.rglob("*") if not p.is_relative_to(skip)} | {
        str(root): root.stat().st_mtime_ns}


def catalog(source: str, run: Path) -> pd.DataFrame:
    """run_catalog, also when nothing is usable (it then raises after writing its outputs)."""
    try:
        run_catalog(source, str(run), CFG)
    except SourceError as err:
        assert "no usable image" in str(err)
    return pd.read_parquet(run / layout.MANIFEST)


def check_rows(m: pd.DataFrame) -> None:
    assert set(m["status"]) <= STATUSES
    assert m["status"].notna().all()
    bad = m[m["status"] != "ok"]
    assert (bad["reason"].fillna("").str.strip().str.len() > 0).all(), bad[["status", "reason"]]


# One manifest row: which file it names (an image of the pool, a missing one, a text file, an unsupported
# URI, or nothing), written how (relative, absolute, with ./ or ..), and its label.
ROW = st.tuples(st.sampled_from(["img0", "img1", "img2", "img3", "missing", "text", "http", "ftp", "empty"]),
                st.sampled_from(["rel", "abs", "dot", "up"]), st.one_of(LABELS, st.none()))


@SETTINGS
@given(rows=st.lists(ROW, min_size=1, max_size=14), fmt=st.sampled_from(["csv", "parquet"]),
       relative_source=st.booleans())
def test_manifest_rows_are_all_accounted(rows, fmt, relative_source):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        for i in range(4):
            make_image(data / "imgs" / f"img{i}.png", i)
        (data / "imgs" / "text.png").write_text("not an image")
        paths, labels = [], []
        for target, form, label in rows:
            name = f"imgs/{target}.png"
            path = {"rel": name, "abs": str(data / name), "dot": f"./{name}", "up": f"imgs/../{name}"}[form]
            path = {"http": "http://example.org/a.png", "ftp": "ftp://example.org/a.png", "empty": ""}.get(target, path)
            if fmt == "csv" and label is None:
                label = ""  # a CSV has no null cell: it reads as empty text
            paths.append(path)
            labels.append(label)
        source = data / f"list.{fmt}"
        if fmt == "csv":
            pd.DataFrame({"path": paths, "label": labels}).to_csv(source, index=False, quoting=csv.QUOTE_ALL)
        else:
            pq.write_table(pa.table({"path": pa.array(paths, pa.string()), "label": pa.array(labels, pa.string())}),
                           source)
        run = tmp / "run"
        run.mkdir()  # made here, so that a write anywhere else under tmp changes tmp's own mtime
        before = snapshot(tmp, run)
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            m = catalog("data/" + source.name if relative_source else str(source), run)
        finally:
            os.chdir(cwd)
        assert snapshot(tmp, run) == before  # nothing written outside RUN
        check_rows(m)
        assert sorted(m["source_row"]) == list(range(len(rows)))
        m = m.set_index("source_row").sort_index()
        stored = pq.read_table(run / layout.MANIFEST).to_pydict()
        assert dict(zip(stored["source_row"], stored["label"])) == dict(enumerate(labels))  # byte for byte
        # The status each row must get, from the rows alone (an oracle independent of the catalog's code).
        valid = {}
        for i, ((target, _, _), label) in enumerate(zip(rows, labels)):
            st_ = m.loc[i, "status"]
            if target == "empty" or label is None or not label.strip():
                assert st_ == "invalid"
            elif target in ("http", "ftp"):
                assert st_ == "unreadable" and "unsupported URI scheme" in m.loc[i, "reason"]
            else:
                valid.setdefault(target, []).append((i, label))
        for target, listed in valid.items():
            if len({lab for _, lab in listed}) > 1:
                assert all(m.loc[i, "status"] == "conflict" for i, _ in listed)
                continue
            first, *again = [i for i, _ in listed]
            assert all(m.loc[i, "status"] == "duplicate" for i in again)
            assert os.path.isabs(m.loc[first, "path"])
            if target == "missing":
                assert m.loc[first, "status"] == "unreadable" and m.loc[first, "reason"] == "file not found"
            elif target == "text":
                assert m.loc[first, "status"] == "unreadable"
            else:
                assert m.loc[first, "status"] in FROM_IMAGE
                assert m.loc[first, "path"] == str(data / "imgs" / f"{target}.png")


# Folder names as a file system takes them: no '/', no NUL, not '.' or '..', at most 255 bytes.
FOLDER = st.one_of(TRICKY, TEXT, st.text(st.characters(codec="utf-8", blacklist_categories=("Cs",)), min_size=100,
                                         max_size=120)).filter(
    lambda s: s not in ("", ".", "..") and "/" not in s and "\x00" not in s and len(s.encode()) <= 255)
# One file: its family folder (None: at the root), whether a hidden folder lies between, its kind.
FILE = st.tuples(st.one_of(st.none(), FOLDER), st.booleans(), st.sampled_from(["image", "image", "text", "hidden"]))


@SETTINGS
@given(files=st.lists(FILE, min_size=1, max_size=14))
def test_every_file_of_a_generated_tree_is_accounted(files):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        src.mkdir()
        expect: dict[str, tuple[str | None, set[str]]] = {}
        for i, (fam, under_hidden, kind) in enumerate(files):
            folder = src if fam is None else src / fam / (".thumbs" if under_hidden else "")
            name = f".f{i}.png" if kind == "hidden" else f"f{i}.png"
            path = folder / name
            if kind == "text":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("notes")
            else:
                make_image(path, i)
            hidden = kind == "hidden" or (fam is not None and (fam.startswith(".") or under_hidden))
            label = fam if fam is not None and not fam.startswith(".") else None
            status = ({"skipped"} if hidden else {"no_family"} if fam is None else
                      {"invalid"} if not fam.strip() else {"unreadable"} if kind == "text" else FROM_IMAGE)
            expect[str(path)] = (label, status)
        run = tmp / "run"
        run.mkdir()  # made here, so that a write anywhere else under tmp changes tmp's own mtime
        before = snapshot(tmp, run)
        m = catalog(str(src), run)
        assert snapshot(tmp, run) == before
        check_rows(m)
        assert len(m) == len(expect) and set(m["path"]) == set(expect)
        for r in m.itertuples():
            label, status = expect[r.path]
            assert r.status in status, (r.path, r.status, r.reason)
            assert (r.label if isinstance(r.label, str) else None) == label  # the folder name, byte for byte
        text = (run / layout.CATALOG_MD).read_text()
        assert f"files seen: {len(expect)}, rows written: {len(expect)}" in text


@pytest.mark.parametrize("label", ["\r", "a\r\nb", '"', "\ufeff", " "])
def test_csv_oddities_round_trip(label, tmp_path):
    """Cells hypothesis rarely finds: carriage returns, quotes, a byte-order mark, a lone space.

    Quoted cells: pandas' writer leaves a lone carriage return unquoted, which any reader takes as a line end.
    """
    for i in range(3):
        make_image(tmp_path / f"{i}.png", i)
    rows = [(f"{i}.png", label) for i in range(3)]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(tmp_path / "m.csv", index=False, quoting=csv.QUOTE_ALL)
    m = catalog(str(tmp_path / "m.csv"), tmp_path / "run")
    assert m["label"].tolist() == [label] * 3
    assert set(m["status"]) == ({"invalid"} if not label.strip() else {"ok"})


@SETTINGS
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=6), min_size=1, max_size=4),
       st.lists(st.integers(0, 5), min_size=4, max_size=4), st.integers(0, 2**16))
def test_group_splits_give_every_family_train_val_and_test(group_sizes, ungrouped, seed):
    """With --group-split, each family with >= 3 groups (a row without a group is a group of its own) has
    images in train, val and test, each group in one split, and train the most images: a group holding most
    of a family once filled test and left train empty (hostile tester, 2026-12-01)."""
    from speciesfam.data.catalog import _assign_splits

    rows = []
    for f, sizes in enumerate(group_sizes):
        rows += [{"label": f"F{f}", "group": f"F{f}g{g}", "path": f"F{f}/{g}/{i}.jpg"}
                 for g, size in enumerate(sizes) for i in range(size)]
        rows += [{"label": f"F{f}", "group": None, "path": f"F{f}/none/{i}.jpg"} for i in range(ungrouped[f])]
    df = pd.DataFrame(rows)
    units = df["group"].fillna(df["path"]).groupby(df["label"]).nunique()
    df = df[df["label"].map(units) >= 3].reset_index(drop=True)  # catalog marks the others too_small
    if df.empty:
        return
    df["split"] = _assign_splits(df, CatalogConfig(group_split=True, seed=seed))
    assert (df.dropna(subset=["group"]).groupby("group")["split"].nunique() == 1).all()
    counts = df.groupby(["label", "split"]).size().unstack(fill_value=0).reindex(
        columns=["train", "val", "test"], fill_value=0)
    assert (counts > 0).all().all(), counts
    largest = df.groupby(["label", df["group"].fillna(df["path"])]).size().groupby(level=0).max()
    assert (counts["train"] >= largest).all(), counts
