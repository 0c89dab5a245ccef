"""One torch thread for CPU-heavy test modules.

OpenMP threads spin-wait badly when other test processes share the 2 cores of a CI machine (10-20x
slower). Import the fixture into a test module to make it autouse there:

    from threads import one_thread_module  # noqa: F401
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def one_thread_module() -> Iterator[None]:
    with one_torch_thread():
        yield
