"""Prediction with a bundle: a few files in this process, or a whole collection with Ray Data.

    speciesfam predict RUN/bundle a.jpg b.jpg                   # console: top-k per file, in this process
    speciesfam predict RUN/bundle --manifest M --out P.parquet   # batch: Ray Data, resumable
    speciesfam predict RUN/bundle photos/ --out P.parquet        # batch over every file under a folder

Batch prediction reads and decodes files in Ray Data tasks and predicts in a pool of actors, each holding
one ``load_bundle`` predictor (one actor per GPU, fp16 embedders there; CPU actors otherwise). Every input
row gets exactly one output row in ``predictions.parquet`` (columns ``predict_resume.PREDICTION_COLUMNS``): its top-k
families and probabilities, or an ``error`` (unreadable, not an image) with empty predictions. Results are
written in parts as they arrive (``<out>.parts/``) and merged at the end, so a killed run resumes where it
stopped: rows whose path is already in the output or its parts are skipped, unless the file changed since
(column ``stamp``: a local file's size and modification time; such a row is predicted again and replaced).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any, Iterator

from . import console, pathtext, seen, storage
from .errors import SpeciesfamError, inner_error
from .lines import counted
from .predict_resume import (CARRIED, check_resume, file_stamps, key_columns, merged, read_done, to_predict,
                             todo_line, without_own_output)

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_OUT = "predictions.parquet"
SKIPPED = "skipped: "  # the error of a hidden or system file in a folder: left out, as catalog leaves it, no failure


@contextlib.contextmanager
def _actors_said() -> Iterator[None]:
    """An actor's own refusal (a bundle whose model does not load there, say) as that one line, not Ray's
    traceback (hostile tester round 45); the rows already written stay for a re-run to continue."""
    try:
        yield
    except Exception as err:
        inner = inner_error(err)
        if inner is None:
            raise
        raise SpeciesfamError(str(inner)) from err


def predict_files(bundle: str, paths: list[str], top_k: int = 3, batch_size: int = 32,
                  weights_dir: str | None = None) -> list[dict[str, Any]]:
    """Top-k families per file, in this process (a handful of files). A file that cannot be read gets an
    ``error`` entry and the others go on."""
    from .bundle import load_bundle
    from .data.images import DecodeError, read_rgb_sha256
    from .data.sources import resolve_path, skip_reason

    check_top_k(top_k)

    predictor, splits = load_bundle(bundle, weights_dir), seen.splits(bundle)
    out, images, where = [], [], []
    for f in paths:
        name = pathtext.shown(f)  # a byte that is not UTF-8 as '\xff', as catalog's and a folder's rows show it
        problem = resolve_path(f, os.getcwd())[1]  # an http:// URL: the words catalog uses
        skipped = skip_reason(f, listed=True)  # Thumbs.db from a glob: as in a folder, no failure (round 49)
        if skipped or problem:
            out.append({"path": name, "error": f"{SKIPPED}{skipped}" if skipped else problem})
            continue
        try:
            image, content = read_rgb_sha256(f)
            images.append(image)
            where.append(len(out))
            out.append({"path": name, **({"seen": splits[content]} if splits and content in splits else {})})
        except DecodeError as err:
            out.append({"path": name, "error": str(err) or type(err).__name__})
    probs = predictor.predict(images, batch_size=batch_size)
    for i, top in zip(where, predictor.top_k(probs, top_k)):
        out[i]["top"] = top
    return out


def files_outcome(results: list[dict[str, Any]], bundle: str = "") -> int:
    """After ``predict FILES`` printed its results (data, on stdout): the log keeps which inputs failed and why,
    stderr counts the files skipped and those that failed (exit 1 with no word where stdout went to a file:
    hostile tester round 66) and names those the model has seen. Returns the exit status: 1 when a file failed."""
    import logging

    from .lines import some

    for r in results:
        if "error" in r:
            logging.getLogger("speciesfam.predict").info("not predicted: %s: %s", r.get("path"), r["error"])
    skipped = sum(r.get("error", "").startswith(SKIPPED) for r in results)
    if skipped:  # as a folder's batch prediction says it (README: the count is said)
        console.say_err(f"predict: {counted(skipped, 'hidden or system file')} skipped")
    failed = [r["path"] for r in results if "error" in r and not r["error"].startswith(SKIPPED)]
    if failed:
        console.say_err(f"predict: {len(failed)} of {counted(len(results), 'file')} could not be predicted "
                        f"({some(failed)}): the output says why")
    if note := seen.files_note(results):
        console.say_err(note)
    elif bundle and not os.path.exists(os.path.join(bundle, seen.SEEN)) and len(results) > len(failed):
        console.say_err(f"predict: note: {seen.CANNOT_TELL}")
    return 1 if failed else 0


def table_line(result: dict[str, Any], alike: frozenset[str] = frozenset()) -> str:
    """``predict --format table``'s line for one file: its path, then each family with its probability (or the
    error), tab-separated, names shown with ``markdown.visible`` (a newline or tab in a family or path kept
    one file on one line, and the fields apart); a family of ``alike`` (``markdown.twins``: 'Café' in two Unicode
    forms) as its JSON string, as the reports show it."""
    import json

    from .markdown import own_text, visible
    from .pathtext import shown_escaped

    def name(label: str) -> str:
        return json.dumps(label) if label in alike else visible(label)

    error = result.get("error", "")  # a file skipped (Thumbs.db) is no failure: not labelled one (round 50)
    fields = [f"{name(lab)} {p:.3f}" for lab, p in result.get("top", [])] or [
        f"SKIPPED: {own_text(error[len(SKIPPED):])}" if error.startswith(SKIPPED) else f"ERROR: {own_text(error)}"]
    return "\t".join([result["path"] if shown_escaped(error) else visible(result["path"]), *fields])


def print_results(results: list[dict[str, Any]], fmt: str, labels: list[str] | None = None) -> None:
    """``predict FILES``' results on stdout as ``fmt``: json, csv (a row per family ranked, or the file's error;
    column ``seen``: train or val for an image the model was trained on or chosen by)
    or table (``table_line``; a family that renders as another of the bundle's ``labels`` as JSON, whether the
    other is among the top ones or not)."""
    import sys

    if fmt == "json":
        import json

        print(json.dumps(results, indent=1))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "rank", "family", "probability", "error", "seen"])  # seen: as json's (round 67)
        for r in results:
            for rank, (lab, p) in enumerate(r.get("top", []), 1):
                writer.writerow([r["path"], rank, lab, f"{p:.6f}", "", r.get("seen", "")])
            if "error" in r:
                writer.writerow([r["path"], "", "", "", r["error"], ""])
    else:
        from .markdown import twins

        alike = twins(set(labels or []) | {lab for r in results for lab, _ in r.get("top", [])})
        for r in results:
            print(table_line(r, alike))


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise SpeciesfamError(f"--top-k {top_k}: give 1 or more (the number of families listed per image)")


def check_counts(batch_size: int, num_actors: int | None) -> None:
    """Refuse impossible --batch-size / --num-actors before any work (Ray raised them with a traceback)."""
    if batch_size < 1:
        raise SpeciesfamError(f"--batch-size {batch_size} is invalid: expected an integer >= 1 (images per "
                              "predictor call)")
    if num_actors is not None and num_actors < 1:
        raise SpeciesfamError(f"--num-actors {num_actors} is invalid: expected an integer >= 1, or none for one "
                              "per GPU (else one per node)")


def failed(table: "pd.DataFrame") -> "pd.Series":
    """Rows that could not be predicted: an error that is not a file skipped (.DS_Store, Thumbs.db: no failure)."""
    return (table["error"] != "") & ~table["error"].str.startswith(SKIPPED)


def input_rows(source: str | None = None, manifest: str | None = None,
               table: dict[str, list[str | None]] | None = None,
               columns: dict[str, str] | None = None) -> "pd.DataFrame":
    """The rows to predict: every file under folder ``source`` (recursively), or every row of ``manifest``
    (CSV or Parquet with a ``path`` column, read as catalog reads it: labels as text exactly as written,
    relative paths resolved against the manifest's folder; ``table``: its columns when the caller has read them
    already with ``read_text_table``; ``columns``: the manifest's columns read as path and label, e.g.
    ``{"path": "file_path"}``). Column ``error``: why a row is not read, set here for hidden files, empty
    or null paths and URI schemes nothing here reads ("" for the others)."""
    import pandas as pd

    from .data.sources import skip_reason

    if manifest:
        from .data.sources import no_path, resolve_path
        from .data.text_table import header_hint, read_text_table

        if table is None and not storage.exists(manifest):
            raise SpeciesfamError(f"--manifest {manifest} does not exist")
        raw = read_text_table(manifest, columns) if table is None else table
        if "path" not in raw:
            hint = header_hint(list(raw)) or " (--path-column names the one that holds the image paths)"
            raise SpeciesfamError(f"{manifest} has no 'path' column (columns: {list(raw)}){hint}")
        base = storage.parent(manifest)
        paths, errors = [], []
        for i, p in enumerate(raw["path"]):
            path, problem = resolve_path(p, base) if p is not None and p.strip() else ("", no_path(raw, i))
            skipped = skip_reason(path, listed=True) if path else ""
            paths.append(path), errors.append(f"{SKIPPED}{skipped}" if skipped else problem)
        return pd.DataFrame({"path": paths, **{c: raw[c] for c in CARRIED if c in raw}, "error": errors,
                             "stamp": file_stamps(paths, errors)})
    if not source:
        raise SpeciesfamError("give a folder of images or --manifest M")
    from .listing import walk

    # every entry, broken links and unreadable files included: each gets its row (an error row if it cannot be
    # read); hidden and system files (.DS_Store, ._IMG.jpg, Thumbs.db) are skipped with a reason, as catalog skips
    # them. A link to a file is a row of its own, as in catalog; links to folders already listed are not walked
    # twice (loops): attrs["aliases"] counts them.
    entries, aliases = walk(source, file_links=True)
    if not entries:
        raise SpeciesfamError(f"{source}: no files in it, nothing to predict; give a folder of images, a file, "
                              "or --manifest M")
    entries = sorted(entries, key=lambda e: e.path)
    # a hidden or system file is skipped; a file whose name is not UTF-8 (or a FIFO, ...) keeps the walk's reason
    errors = [f"{SKIPPED}{why}" if (why := skip_reason(e.rel)) else e.problem for e in entries]
    df = pd.DataFrame({"path": [e.path for e in entries], "error": errors,
                       "stamp": file_stamps([e.path for e in entries], errors)})
    df.attrs["aliases"] = aliases
    return df


def linked_out(out: str) -> str:
    """The file a --out that is a link names (the user's link to their predictions: it was read through for a
    resume, then replaced by a file: round 70); ``out`` otherwise."""
    if not storage.is_remote(out) and os.path.islink(storage.local_path(out)):
        return os.path.realpath(storage.local_path(out))
    return out


def check_out(out: str, source: str | None = None, given: bool = True) -> None:
    """Predictions go to one Parquet file: a CSV would not keep the top-k lists or empty errors, and a folder
    was found only once every row had been predicted. Not inside ``source``, the folder predicted: the next
    predict of it would list the predictions and their parts as files to predict. ``given``: False for the
    default --out, which the messages name as such (the user typed no --out)."""
    if out.endswith(("/", os.sep)) or storage.is_dir(out):
        raise SpeciesfamError(f"--out {out} is a folder; give a file in it, e.g. --out "
                              f"{storage.join(out, DEFAULT_OUT)}")
    if not out.lower().endswith(".parquet"):
        raise SpeciesfamError(f"--out {out}: predictions are written as Parquet (each row's top-k families are "
                              f"lists); give a name ending in .parquet, e.g. --out {os.path.splitext(out)[0]}.parquet")
    if source and storage.within(out, source):
        outside = storage.join(storage.parent(source.rstrip("/")), DEFAULT_OUT)
        raise SpeciesfamError(f"{'' if given else 'the default '}--out {out} is inside the folder being predicted "
                              f"({source}): predicting that folder "
                              f"again would take the predictions for images; write them outside it, e.g. "
                              f"--out {outside}")
    if not storage.is_remote(out):
        from .bundle import bundle_around

        parts = storage.local_path(out) + ".parts"
        if os.path.islink(parts):  # its folder is deleted at the end: the link's target was (round 70)
            raise SpeciesfamError(f"--out {out}: {parts} is a link (-> {os.path.realpath(parts)}); predict writes the "
                                  "predictions' parts in that folder and deletes it at the end: remove the link")

        folder = os.path.dirname(storage.filesystem(out)[1])  # absolute; a file:// URI's path
        around = bundle_around(folder)
        if around:  # its folder holds only its own files: a later export there is refused
            raise SpeciesfamError(f"--out {out} is inside a bundle ({around}); write the predictions outside it")
        storage.require_creatable(folder, "--out", "the predictions", given=out)  # under a file, /proc: before the work


class PredictActor:
    """Ray Data actor: one predictor per actor; top-k families for the decoded rows of a batch."""

    def __init__(self, bundle: str, top_k: int, bundle_id: str, threads: int = 0, weights_dir: str | None = None):
        from .bundle import load_bundle
        from .raycluster import use_actor_threads

        self.predictor = load_bundle(bundle, weights_dir)
        use_actor_threads(threads)
        self.top_k, self.bundle_id, self.seen = top_k, bundle_id, seen.splits(bundle)

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        good = [i for i, e in enumerate(batch["error"]) if not e]
        tops: list[list[tuple[str, float]]] = [[] for _ in range(len(batch))]
        if good:
            probs = self.predictor.predict([batch["image"].iloc[i] for i in good])
            for i, top in zip(good, self.predictor.top_k(probs, self.top_k)):
                tops[i] = top
        out = batch.drop(columns=["image", "content"])
        out["seen"] = [None if self.seen is None else self.seen.get(c, "") for c in batch["content"]]  # (''
        # for an error row, as for a new image; None: the bundle cannot tell)
        out["family"] = [t[0][0] if t else None for t in tops]
        out["probability"] = [t[0][1] if t else None for t in tops]
        out["top_families"] = [[f for f, _ in t] for t in tops]
        out["top_probabilities"] = [[p for _, p in t] for t in tops]
        out["bundle_id"] = self.bundle_id
        return out


def predict_collection(bundle: str, out: str | None = None, source: str | None = None, manifest: str | None = None,
                       top_k: int = 3, batch_size: int = 32, num_actors: int | None = None,
                       use_gpu: bool = True, part_rows: int = 1024, weights_dir: str | None = None,
                       path_column: str = "path") -> "pd.DataFrame":
    """Predict every file under ``source`` (or row of ``manifest``) with Ray Data into Parquet ``out``.

    Args:
        out: the predictions file (None: ``DEFAULT_OUT`` in the working directory).
        part_rows: rows per part file written while running (what a killed run keeps).
        use_gpu: one actor per GPU when the cluster has GPUs (False: CPU actors).
        path_column: the manifest's column of image paths.

    Returns:
        The whole output table (earlier rows included), one row per input row.
    """
    import pandas as pd
    import pyarrow as pa
    import ray

    from .bundle import bundle_id, read_config
    from .bundle_embedder import embedder_config
    from .data.embedding import decode_batch
    from .raycluster import actor_pool, check_shared, init_ray

    check_top_k(top_k)
    check_counts(batch_size, num_actors)
    given, out = bool(out), linked_out(out or DEFAULT_OUT)
    check_out(out, source, given)
    bundle = os.path.abspath(bundle)
    config, bid = read_config(bundle), bundle_id(bundle)
    if config["kind"] == "probe":  # its weights files gone or replaced: one line here, not an actor's traceback
        embedder_config(config["embedder"], weights_dir)
    rows = input_rows(source, manifest, columns={"path": path_column})
    if manifest and not len(rows):  # wrote 0 rows and exited 0 (catalog and evaluate refuse it: round 45)
        raise SpeciesfamError(f"{manifest} has no rows, nothing to predict; give a manifest with a row per image")
    if source:
        rows = without_own_output(rows, out)
    done = read_done(out)
    check_resume(done, rows, out, bid, min(top_k, len(config["labels"])))
    columns = key_columns(rows)
    todo = to_predict(rows, done)
    console.say(todo_line(rows, done, todo, out))
    parts = out + ".parts"
    if len(todo):
        init_ray()
        check_shared(todo["path"].iloc[0], "image path")
        check_shared(bundle, "bundle")
        actors, threads, gpus = actor_pool(num_actors, use_gpu)  # sized like clean's embedding pool
        size = int(config["image_size"]) if config["kind"] == "cnn" else None
        ds = ray.data.from_pandas([todo.iloc[i:i + batch_size] for i in range(0, len(todo), batch_size)])
        # CNN bundles: decoded straight to the model's size (its predictor would resize anyway; less to move).
        ds = ds.map_batches(decode_batch, fn_kwargs={"size": size, "digest": True}, batch_format="pandas",
                            batch_size=batch_size)
        ds = ds.map_batches(PredictActor, fn_constructor_kwargs={"bundle": bundle, "top_k": top_k, "bundle_id": bid,
                                                                  "threads": threads, "weights_dir": weights_dir},
                            batch_format="pandas", batch_size=batch_size,
                            compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0)
        buffer: list[pd.DataFrame] = []
        written = 0

        def flush() -> None:
            nonlocal written
            # Ray hands back Arrow-backed pandas columns whose dtype names pandas cannot read back from
            # Parquet metadata (list<item: string>[pyarrow]): store plain Arrow types, no pandas metadata.
            part = pa.Table.from_pandas(pd.concat(buffer, ignore_index=True), preserve_index=False)
            part = part.replace_schema_metadata(None).to_pandas()
            storage.write_table(part, storage.join(parts, f"part-{uuid.uuid4().hex[:12]}.parquet"))
            written += len(part)
            buffer.clear()
            console.say(f"predict: {written} of {counted(len(todo), 'row')} written")

        with console.quiet_stderr("the prediction pipeline", python_too=False), _actors_said():
            for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
                buffer.append(batch)
                if sum(len(b) for b in buffer) >= part_rows:
                    flush()
            if buffer:
                flush()
    table = merged(read_done(out), rows, columns)
    if "seen" not in table:
        table["seen"] = None
    older, knows = table["seen"].isna(), os.path.exists(os.path.join(bundle, seen.SEEN))
    if older.any() and knows:  # rows an older predict wrote: a resume
        table.loc[older, "seen"] = seen.of_rows(table[older], bundle)  # said nothing of their training images
    storage.write_table(table, out)
    if storage.exists(parts):
        fs, path = storage.filesystem(parts)
        fs.delete_dir(path)
    errors, skipped = int(failed(table).sum()), int(table["error"].str.startswith(SKIPPED).sum())
    console.say(f"predict: wrote {out}: {counted(len(table), 'row')}, "  # '1 rows, 0 with an error' (round 50)
                + (f"{errors} with an error (see its 'error' column)" if errors else "none with an error")
                + (f", {counted(skipped, 'hidden or system file')} skipped" if skipped else ""))
    if not knows:
        console.say(f"predict: note: {seen.CANNOT_TELL}: column 'seen' is empty")
    elif note := seen.predict_note(table["seen"][table["seen"].fillna("") != ""]):
        console.say(note)
    return table
