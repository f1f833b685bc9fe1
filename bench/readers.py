"""A reader study of 500 cases, 5 readers and 3 conditions: created, scheduled, read, exported
and summarised, against a bare baseline in the same run.

Makes a gateway database with 500 done jobs (SQLite by default, ``--database-url`` for
PostgreSQL), then times what ``cxr-gateway readers`` does: ``create`` (the cases from a
file of UIDs, 7,500 scheduled reads), ``export`` (reads.csv and answers.csv) and
``summary`` (every statistic, 2,000 bootstrap resamples per group, the four charts) after
every read is filled in with simulated times and answers.  The baseline is the floor of
the same work: 7,500 rows written with one executemany into a plain table and the same
rows written as CSV from memory.  The scheduling rule is checked on the stored schedule:
every reader's reads follow the paper's order per case, no case twice in a row, and the
same seed made again gives the same schedule.  Ends with
``RESULT create_s=... export_s=... summary_s=... create_over_baseline=...``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select, update

from worker.readers import cases, export, figures, summary
from worker.runtime import Runtime, configure
from worker.settings import load_settings
from worker.store import reader_design as design
from worker.store import reader_studies
from worker.store.db import Job, now
from worker.store.reader_studies import ReaderAnswer, ReaderRead

READERS = [f"dr-{c}" for c in "abcde"]


def _jobs(rt: Runtime, n: int) -> list[str]:
    uids = [f"1.2.826.0.1.3680043.10.77.{i}" for i in range(1, n + 1)]
    result = json.dumps({"status": "ok", "labels": ["Edema"], "backend": "openai",
                         "is_mock": False, "reasoning": "r", "report_text": "FINDINGS: x"})
    with rt.db.session() as s:
        s.execute(insert(Job), [{"study_instance_uid": u, "sop_instance_uid": u + ".1",
                                 "state": "done", "created_at": now(), "updated_at": now(),
                                 "source_header": "{}", "result": result} for u in uids])
        s.commit()
    return uids


def _create(rt: Runtime, uids_file: Path, name: str, seed: int) -> float:
    t = time.perf_counter()
    with rt.db.session() as s:
        chosen = cases.choose(s, str(uids_file))
        reader_studies.create(s, name, chosen.cases, READERS, seed, ("FINDINGS", "IMPRESSION"),
                              source=chosen.source)
    return time.perf_counter() - t


def _schedule_of(rt: Runtime, name: str) -> dict[str, list[tuple[int, str]]]:
    from worker.store.reader_studies import ReaderCase

    with rt.db.session() as s:
        study = reader_studies.named(s, name)
        assert study is not None
        rows = s.execute(select(ReaderRead.reader, ReaderCase.number, ReaderRead.condition)
                         .join(ReaderCase, ReaderCase.id == ReaderRead.case_id)
                         .where(ReaderRead.study_id == study.id)
                         .order_by(ReaderRead.reader, ReaderRead.position)).all()
    out: dict[str, list[tuple[int, str]]] = {}
    for reader, number, condition in rows:
        out.setdefault(reader, []).append((number, condition))
    return out


def _read_everything(rt: Runtime, seed: int) -> None:
    """Every read shown, reported and answered, with times like the paper's."""
    rng = random.Random(seed)
    t0 = now()
    with rt.db.session() as s:
        reads = s.execute(select(ReaderRead.id, ReaderRead.condition)).all()
        minutes = {design.NO_AI: 5.5, design.LABELS: 4.5, design.FULL: 2.5}
        for read_id, condition in reads:
            took = rng.uniform(0.5, 1.5) * minutes[condition] * 60
            s.execute(update(ReaderRead).where(ReaderRead.id == read_id).values(
                shown_at=t0, reported_at=t0 + took, done_at=t0 + took + 20,
                active_seconds=took * 0.9, report="FINDINGS: simulated"))
        s.execute(insert(ReaderAnswer), [
            {"read_id": read_id, "item": item.code, "value": rng.randint(2, 5)}
            for read_id, condition in reads for item in design.items_for(condition)])
        s.commit()


def _baseline(rows: int) -> float:
    """The floor: the same number of rows in one executemany, and as CSV from memory."""
    t = time.perf_counter()
    db = sqlite3.connect(":memory:")
    db.execute("create table r (study int, reader text, position int, cas int, cond text)")
    data = [(1, READERS[i % 5], i, i % 500, design.CONDITIONS[i % 3]) for i in range(rows)]
    db.executemany("insert into r values (?, ?, ?, ?, ?)", data)
    db.commit()
    csv.writer(io.StringIO()).writerows(db.execute("select * from r"))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--database-url", default="", help="e.g. postgresql+psycopg://...")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extra = {"database_url": args.database_url} if args.database_url else {}
        rt = configure(load_settings(None, {}, data_dir=root / "data", **extra))
        uids = _jobs(rt, args.cases)
        (root / "uids.txt").write_text("\n".join(uids) + "\n")
        create_s = _create(rt, root / "uids.txt", "bench", seed=34)
        again_s = _create(rt, root / "uids.txt", "bench-again", seed=34)
        plan, again = _schedule_of(rt, "bench"), _schedule_of(rt, "bench-again")
        problems = [p for slots in plan.values() for p in design.schedule_problems(
            slots, args.cases)]
        rows = sum(len(v) for v in plan.values())
        print(f"create: {rows} reads of {len(plan)} readers over {args.cases} cases in "
              f"{create_s:.2f} s (made again: {again_s:.2f} s)")
        print(f"schedule rule: {len(problems)} problem(s); same seed, same schedule: "
              f"{plan == again}")
        _read_everything(rt, seed=1)
        with rt.db.session() as s:
            study = reader_studies.named(s, "bench")
            assert study is not None
            t = time.perf_counter()
            export.write_csvs(s, study, root / "export")
            export_s = time.perf_counter() - t
            t = time.perf_counter()
            made = summary.of_study(s, study)
            figures.write(made, root / "summary")
            summary_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (root / "export").iterdir())
        ratio = {r["group"]: r for r in made["ratios"]}["all"]
        print(f"export: reads.csv + answers.csv ({size / 1e6:.1f} MB) in {export_s:.2f} s")
        print(f"summary: {made['reads_done']} reads, full/no-AI {ratio['ratio']:.3f} "
              f"[{ratio['ci_low']:.3f}, {ratio['ci_high']:.3f}], charts, in {summary_s:.2f} s")
        base = _baseline(rows)
        print(f"baseline: {rows} bare rows written and read back as CSV in {base:.3f} s")
        ok = not problems and plan == again
        print(f"RESULT create_s={create_s:.2f} export_s={export_s:.2f} summary_s={summary_s:.2f}"
              f" create_over_baseline={create_s / base:.1f} schedule_ok={ok}")


if __name__ == "__main__":
    main()
