"""The line each stage ends with on the console (and in its log), in the tool's words: what it did, counted, read
back from the run folder's files and the stage's record."""

from __future__ import annotations

from . import cluster_watch, layout, stages, storage
from .lines import counted, number, quoted, some


def summary_line(workdir: str, stage: str, resume_hint: str | None = "the same command with --resume") -> str:
    """What a finished stage did, in one line for the console (from its tables and record); an interrupted
    search's line ends with how to continue it (``resume_hint``; None: nothing)."""
    try:
        if stage == "catalog":
            m = storage.read_table(layout.path(workdir, layout.MANIFEST))
            counts = m["status"].value_counts()
            parts = ", ".join(f"{int(n)} {k}" for k, n in counts.items())
            n = m.loc[m["status"] == layout.OK, "label"].nunique()
            alone = " (a classifier needs at least 2: tune will refuse this collection)" if n == 1 else ""
            # families whose every row is unusable (unreadable, too small): gone from the count, unsaid (round 40)
            from .data.catalog_report import no_usable_families

            none_left = no_usable_families(m)
            if none_left:
                alone += (f"; {counted(len(none_left), 'family', 'families')} with no usable image (see catalog.md): "
                          f"{some(f'{quoted(name)} ({why})' for name, why in none_left.items())}")
            done = stages.summary(workdir, "catalog")
            skipped = done.get("skipped_folders") or {}
            if skipped:  # a family folder named '...' is hidden: its files skipped, the family gone (round 48)
                alone += (f"; {counted(len(skipped), 'folder')} at the top skipped as hidden, system or run folders "
                          "(see catalog.md): " + some(f"{quoted(name)} ({counted(n, 'file')})"
                                                     for name, n in skipped.items()))
            empty = done.get("empty_folders") or []
            if empty:
                alone += (f"; {counted(len(empty), 'family folder')} holding no file (see catalog.md): "
                          f"{some(empty, quote=True)}")
            if done.get("nested"):  # a taxonomy tree as folders: its deeper levels are no families
                nest = done["nested"]
                alone += (f"; {counted(nest['files'], 'file')} in subfolders of a family folder "
                          f"{'takes' if nest['files'] == 1 else 'take'} its name "
                          f"(e.g. {nest['example']!r} as {nest['family']!r}; see catalog.md)")
            if done.get("several_frames"):
                frames = done["several_frames"]["files"]
                alone += (f"; {counted(frames, 'image')} of several frames (animations, multi-page TIFFs): "
                          f"{'its first frame is' if frames == 1 else 'their first frames are'} used (see catalog.md)")
            return f"catalog: {counted(len(m), 'row')} ({parts}); {counted(n, 'family', 'families')}{alone}"
        if stage == "clean":
            c = storage.read_table(layout.path(workdir, layout.CLEAN_MANIFEST))
            issues, pairs = stages.table(workdir, layout.LABEL_ISSUES), stages.table(workdir, layout.NEAR_DUPLICATES)
            extra = []
            if issues is not None:  # outliers of the rule that cleanlab flagged too and that fit another family
                kept = stages.summary(workdir, "clean").get("outliers_kept_as_label_issues")
                extra.append(f"{counted(len(issues), 'label issue')} flagged"
                             + (f" ({kept} of them outliers kept: each fits its suggested family)" if kept else ""))
            if pairs is not None:
                extra.append(f"{counted(len(pairs), 'near-duplicate pair')} flagged")
            done = stages.summary(workdir, "clean")
            floor = [counted(n, what) for what, n in (("outlier", done.get("outliers_kept_by_floor")),
                                                      ("label issue", done.get("label_issues_kept_by_floor"))) if n]
            if floor:  # met a rule; --min-per-family kept them
                extra.append(f"{' and '.join(floor)} kept by --min-per-family (see clean.md)")
            near = c.get("reason", c["status"]).astype(str).str.startswith("near-duplicate of")  # dedupe="near"
            dropped = int(((c["status"] == layout.DUPLICATE) & near).sum())
            kept = c.loc[c["status"] == layout.OK, "label"]
            before = stages.table(workdir, layout.MANIFEST)
            lost = sorted(set(before.loc[before["status"] == layout.OK, "label"]) - set(kept)) if before is not None \
                else []
            gone = (f"; {counted(len(lost), 'family', 'families')} left with no image: "
                    f"{some(lost, 3, quote=True)}") if lost else ""
            return (f"clean: {int((c['status'] == layout.REMOVED_STATUS).sum())} removed, "
                    + (f"{dropped} near-duplicates dropped, " if dropped else "")
                    + f"{counted(len(kept), 'image')} kept in {counted(kept.nunique(), 'family', 'families')}{gone}"
                    + "".join(f"; {e}" for e in extra))
        if stage == "tune":  # this search (RUN/trials.csv also holds earlier searches on the same val split)
            record = stages.load(workdir, "tune") or {}
            done, conf = record.get("summary") or {}, record.get("config") or {}
            n, planned = done.get("trials", 0), done.get("planned")
            count = f"{n} trial{'' if n == 1 else 's'}"
            ended_by = ("the cluster going away" if done.get("interrupted") and cluster_watch.GONE.is_set() else
                        "an interrupt (SIGINT/SIGTERM)" if done.get("interrupted") else
                        f"the time budget ({conf.get('time_budget_s', 0):g} s)" if done.get("time_budget_hit") else "")
            if ended_by:  # Tune stopped the trials still training and started no more
                of = planned if planned and n < planned else n
                count = (f"{n}{f' of {of}' if of != n else ''} trial{'' if of == 1 else 's'} "
                         f"before {ended_by} ended the search")
            resume = ""
            if done.get("interrupted") and resume_hint:
                resume = (f"; continue it: {resume_hint} (search {done.get('experiment')!r})"
                          if done.get("resumable", True) else  # records written before resumable: as before
                          "; no trial reported a result, so there is nothing to continue: run the same command "
                          "again without --resume")
            if not done.get("ok"):
                return f"tune: {count}, none finished with a val macro-F1{resume}"
            return (f"tune: {count} ({done['ok']} ok); best val macro-F1 "
                    f"{done[layout.BEST_METRIC]:.3f} (trial {done['best_trial']}, epoch {number(done['best_epoch'])})"
                    f"{resume}")
        if stage == "export":
            done = stages.summary(workdir, "export")
            what = list(dict.fromkeys([done.get("kind"), done.get("model")]))  # a probe's model is 'probe' too
            if done.get("kept"):
                return (f"export: {done.get('bundle')} already holds trial {done.get('trial_id')}'s bundle "
                        f"({', '.join(map(str, what))}) from this search, unchanged since: kept as it is (its "
                        "evaluations and predictions stay its own)")
            return (f"export: {done.get('bundle')} ({', '.join(map(str, what))}, trial {done.get('trial_id')}): "
                    f"{done.get('reason')}" + (f"; it replaced the bundle of {done['replaced']}" if done.get("replaced")
                                               else ""))
    except Exception as err:  # noqa: BLE001 -- a summary line must never fail a finished stage
        return f"{stage}: done ({type(err).__name__} while summarising: {err})"
    return f"{stage}: done"
