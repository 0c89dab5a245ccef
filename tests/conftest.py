"""Test-wide settings: no network access from any Hugging Face library; the longest files start first."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the cores (pytest -n 2): one thread each, for this process and the commands it starts.
    # OpenMP threads spin-wait when another process holds the other core (tests/threads.py).
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
    import torch

    torch.set_num_threads(1)


# The files that take minutes (a Prefect server with its workers) start first: with `pytest -n 2 --dist loadfile`
# each file runs in one worker, and a long file handed out last would keep the other worker idle.
LONG_FIRST = ("test_flows_server.py", "test_flows_storage.py", "test_flows.py", "test_bench_sweep.py")


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the order inside a file and among the other files is kept
