"""Outputs follow the user's umask (issue 15, item 1): the atomic writers' mkstemp/mkdtemp temporaries
would otherwise leave every result 0600 / 0700, unreadable to anybody else on a shared farm."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from spin_io.atomic import atomic_dir, atomic_write_json, atomic_write_png, current_umask, make_temp_dir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_files_and_folders_follow_the_umask(tmp_path, umask):
    js = atomic_write_json(tmp_path / "a" / "report.json", {"ok": True})
    png = atomic_write_png(tmp_path / "a" / "preview.png", np.zeros((4, 4, 3), np.uint8))
    with atomic_dir(tmp_path / "mesh") as d:
        (d / "inner.txt").write_text("x")
    assert _mode(js) == 0o666 & ~umask and _mode(png) == 0o666 & ~umask
    assert _mode(tmp_path / "mesh") == 0o777 & ~umask
    assert _mode(make_temp_dir(tmp_path / "views")) == 0o777 & ~umask
    assert not list((tmp_path / "a").glob(".tmp-*"))  # nothing half-written left behind


def test_a_written_viewset_is_readable_by_others_under_umask_022(tmp_path):
    from recon.synth import procedural_head, render_viewset, ring_views
    from spin_io.viewset import write_viewset

    old = os.umask(0o022)
    try:
        vs = render_viewset(procedural_head(1, voxel_m=0.006, target_faces=4000), ring_views(4), size=32)
        write_viewset(tmp_path / "views", vs)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "views").rglob("*") if p.is_file()]
    assert files and all(_mode(p) == 0o644 for p in files)
    assert all(_mode(p) == 0o755 for p in (tmp_path / "views").rglob("*") if p.is_dir())
