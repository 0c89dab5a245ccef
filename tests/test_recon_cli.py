"""`spin-to-mesh recon`'s options map onto recon's own defaults: the head is de-lit unless asked otherwise."""

from __future__ import annotations

import pytest

from flows.cli import build_parser, main
from recon.cli import config_from_args
from recon.pipeline import ReconConfig
from recon.sweep import SweepConfig
from recon.volume import VolumeConfig
from spin_io.errors import EXIT_USAGE


def _config(*options: str) -> ReconConfig:
    args = build_parser().parse_args(["recon", "views", "-o", "mesh", "--device", "cpu", *options])
    return config_from_args(args)


def test_defaults_are_recons_own_with_the_lighting_divided_out():
    cfg, default = _config(), ReconConfig()
    assert cfg.texture == default.texture and cfg.texture.delight.enabled
    assert (cfg.hull_voxel, cfg.target_faces, cfg.fusion.rounds) == (default.hull_voxel, 100_000, 8)
    assert cfg.camera_align.enabled and not cfg.camera_align.mask_offset and cfg.volume.sweep.enabled
    assert cfg.volume.sweep == SweepConfig()  # searching in front as well (session 12)
    # views up to the generator's 512 px are integrated at their own size (session 15)
    assert cfg.volume.max_size == VolumeConfig().max_size == 512


def test_chosen_options_reach_the_config():
    cfg = _config("--texture-size", "1024", "--unwrap", "xatlas", "--fit-masks", "--no-open-pockets", "--rounds", "3")
    assert (cfg.texture.size, cfg.texture.unwrap, cfg.fusion.rounds) == (1024, "xatlas", 3)
    assert cfg.texture.delight.enabled and cfg.camera_align.mask_offset and not cfg.volume.sweep.enabled
    assert _config("--open-pockets").volume.sweep.enabled  # the old opt-in flag still works
    assert _config("--depth-size", "256").volume.max_size == 256


def test_a_depth_size_too_small_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    code = main(["recon", str(tmp_path / "views"), "-o", str(tmp_path / "mesh"), "--depth-size", "8"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "--depth-size 8: give the depth integration's largest side in pixels" in err
    assert "Traceback" not in err and not (tmp_path / "mesh").exists()


def test_an_unknown_unwrap_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _config("--unwrap", "lscm")
    assert exc.value.code == 2
    assert "invalid choice: 'lscm'" in capsys.readouterr().err
