"""``cxr-gateway ask JOB "question"`` and ``cxr-gateway thread JOB``: follow-up questions
on a processed study from a terminal (issue 25).

``ask`` records the question in the gateway's database (who asked: ``operator``, or with
``--as NAME`` a name a live token has, checked by ``worker.store.callers``; never patient
data), wakes a GPU worker through the gateway's broker,
and waits for the answer (``--no-wait``: print the question id and leave), then prints
the reasoning and the answer (``--json``: the question as the API gives it).
``--to-pacs`` also writes the thread as an addendum SR, delivered like the first SR.
``thread`` prints the study's conversation: every turn verbatim, then the questions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from worker.cli.common import add_data_dir, add_reader, read_runtime
from worker.cli.errors import CommandError

if TYPE_CHECKING:
    from worker.cli.common import Commands
    from worker.runtime import Runtime

DONE_STATES = ("answered", "failed")


def register(commands: Commands) -> None:
    ask = commands.add_parser("ask", help="ask the model a follow-up question about a job's "
                              "study and print its reasoning and answer")
    ask.add_argument("job_id", type=int, metavar="JOB", help="the job")
    ask.add_argument("question", help="the question, e.g. \"Where is the effusion?\"")
    ask.add_argument("--no-wait", action="store_true", help="print the question id, do not "
                     "wait for the answer")
    ask.add_argument("--json", action="store_true", help="the question and answer as JSON")
    ask.add_argument("--to-pacs", action="store_true", help="also send the thread as an "
                     "addendum SR to the job's destinations")
    ask.add_argument("--as", dest="asked_by", default="operator",
                     help="who asks: operator (the default: the CLI has the database) or "
                          "the name of a live token ('cxr-gateway tokens add NAME')")
    ask.add_argument("--timeout", type=float, default=3600.0,
                     help="seconds to wait for the answer (default 3600)")
    add_data_dir(ask)
    ask.set_defaults(func=cmd_ask, quiet=True)
    thread = add_reader(commands, "thread", "print a job's conversation with the model and "
                        "its follow-up questions", cmd_thread, json_option=True)
    thread.add_argument("job_id", type=int, metavar="JOB", help="the job")


def cmd_ask(args: argparse.Namespace) -> int:
    from worker.cli.jobs import publish
    from worker.pipeline import followups, tasks
    from worker.pipeline.celery_app import configure_celery
    from worker.store import callers, questions

    rt = read_runtime(args)
    with rt.db.session() as s:
        try:
            asked_by = callers.claimed(s, args.asked_by, "--as")
            q = followups.ask(s, args.job_id, args.question, asked_by, args.to_pacs,
                              rt.settings)
        except (questions.QuestionRefused, callers.UnknownCaller) as exc:
            raise CommandError(str(exc)) from None
        qid = q.id
    configure_celery(rt.settings)
    publish(rt, tasks.enqueue_question, qid)
    if args.no_wait:
        print(json.dumps({"question_id": qid, "state": "waiting"}) if args.json
              else f"question {qid} asked; 'cxr-gateway thread {args.job_id}' shows the answer")
        return 0
    view = wait_for(rt, qid, args.timeout)
    if args.to_pacs and view["state"] == "answered":
        view = wait_for(rt, qid, args.timeout, addendum=True)
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(render_answer(view))
    failed = view["state"] != "answered" or (args.to_pacs and view["addendum"]["state"] !=
                                            "written")
    return 1 if failed else 0


def wait_for(rt: Runtime, question_id: int, timeout: float,
             addendum: bool = False) -> dict[str, Any]:
    """The question once answered or failed (``addendum``: once its addendum SR is
    written or failed); a CommandError after ``timeout`` seconds."""
    from worker.store import questions
    from worker.store.db import Question

    deadline = time.monotonic() + timeout
    while True:
        with rt.db.session() as s:
            q = s.get(Question, question_id)
            assert q is not None
            view = questions.question_view(q)
        if addendum and (view["addendum"] or {}).get("state") in ("written", "failed"):
            return view
        if not addendum and view["state"] in DONE_STATES:
            return view
        if time.monotonic() > deadline:
            raise CommandError(f"question {question_id} not answered within {timeout:.0f} s "
                               "(is a GPU worker running?); it stays asked")
        time.sleep(0.2)


def render_answer(view: dict[str, Any]) -> str:
    if view["state"] == "failed":
        return f"question {view['question_id']} not answered: {view['error']}"
    lines = []
    if view.get("status") == "mock":
        lines.append("MOCK backend: no model read the image.")
    if view.get("reasoning"):
        lines += ["Reasoning:", view["reasoning"], ""]
    lines.append(view["answer"] or "(empty answer)")
    if view.get("status") not in ("answered", "mock"):
        lines.append(f"[{view['status']}]")
    if view.get("addendum"):
        add = view["addendum"]
        lines.append(f"addendum SR: {add['state']} {add['sop_instance_uid']} "
                     f"({add['detail']})".rstrip())
    return "\n".join(lines)


def cmd_thread(args: argparse.Namespace) -> int:
    from worker.store import questions
    from worker.store.db import Job

    rt = read_runtime(args)
    with rt.db.session() as s:
        job = s.get(Job, args.job_id)
        if job is None:
            raise CommandError(f"no job {args.job_id}")
        t = questions.thread(s, job)
    if args.json:
        print(json.dumps(t, indent=2))
        return 0
    sys.stdout.write(render_thread(t))
    return 0


def render_thread(t: dict[str, Any]) -> str:
    lines = [f"job {t['job_id']} v{t['version']} ({t['state']}); image: {t['image']}", ""]
    if not t["turns"]:
        lines.append("(no conversation yet: the study's first turns have not run)")
    for turn in t["turns"]:
        lines.append(f"[{turn['seq']}] {turn['role']} ({turn['kind']})"
                     + (f" + image {turn['image']}" if turn["image"] else "") + ":")
        lines.append(turn["text"])
        lines.append("")
    for q in t["questions"]:
        lines.append(f"Q{q['question_id']} {q['state']} - asked by {q['asked_by']} at "
                     f"{q['asked_at']}: {q['question']}")
        if q["state"] == "answered":
            lines.append(f"  {q['answer']}")
        elif q["state"] == "failed":
            lines.append(f"  not answered: {q['error']}")
        elif q.get("waiting_for"):
            lines.append(f"  waiting for {q['waiting_for']}")
    return "\n".join(lines) + "\n"
