"""Issue 16 leftover: a flow run whose worker died (second SIGTERM) must not crash on BrokenPipeError.

The worker reads the flow run's stdout/stderr through pipes; a dead worker leaves them without a reader.
Here a child process writes into a pipe whose reader is gone, as the orphaned flow run does, with and
without flows.streams.guard_pipes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import logging, sys, time
sys.path.insert(0, {repo!r})
if {guard}:
    from flows.streams import guard_pipes
    assert guard_pipes() == ["stdout", "stderr"]
handler = logging.StreamHandler(sys.stderr)  # like Prefect's console handler, set up before the guard
logging.getLogger().addHandler(handler)
print("ready", flush=True)
sys.stdin.readline()  # the parent closes the reading ends and then lets us go on
for i in range(200):
    print("still working", i, flush=True)
    sys.stderr.write("progress %d\n" % i); sys.stderr.flush()
    logging.getLogger().warning("log line %d", i)
open(sys.argv[1], "w").write("finished")
"""


def _orphaned_child(tmp_path: Path, guard: bool) -> tuple[int, str, bool]:
    done = tmp_path / f"done-{guard}"
    code = CHILD.format(repo=str(REPO), guard=guard)
    child = subprocess.Popen([sys.executable, "-c", code, str(done)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    child.stdout.close()  # the worker is gone: nobody reads the pipes any more
    child.stderr.close()
    child.stdin.write(b"go\n")
    child.stdin.close()
    rc = child.wait(timeout=60)
    return rc, done.read_text() if done.exists() else "", done.exists()


def test_without_the_guard_an_orphaned_run_dies_of_a_broken_pipe(tmp_path):
    rc, _, finished = _orphaned_child(tmp_path, guard=False)
    assert rc != 0 and not finished


def test_with_the_guard_an_orphaned_run_finishes_its_work(tmp_path):
    rc, text, finished = _orphaned_child(tmp_path, guard=True)
    assert rc == 0 and finished and text == "finished"
