"""bench/recon_eval.py's per-region table says where a head loses its normal consistency."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

EVAL = Path(__file__).resolve().parents[1] / "bench" / "recon_eval.py"


@pytest.fixture(scope="module")
def recon_eval():
    spec = importlib.util.spec_from_file_location("recon_eval", EVAL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["recon_eval"] = module
    spec.loader.exec_module(module)
    return module


def _region(nc: float, samples: int) -> dict:
    keys = ("fscore@2.5mm", "fscore@5mm", "fscore@10mm", "chamfer_l1_mm", "signed_offset_mm", "accuracy_mm",
            "completeness_mm")
    return {**dict.fromkeys(keys, 0.0), "normal_consistency": nc, "gt_samples": samples}


def test_a_small_region_far_under_the_bar_can_lose_most(recon_eval):
    # ears: 5 % of the samples at NC 0.8 lose 0.01; face: 95 % at 0.99 lose 0.0095
    shares = recon_eval.nc_loss_shares({"face": _region(0.99, 9500), "ears": _region(0.80, 500)})
    assert shares["ears"] == pytest.approx(0.01 / 0.0195)
    assert shares["face"] == pytest.approx(0.0095 / 0.0195)
    assert math.isnan(shares["back"])  # a region without samples has no share, not 0


def test_the_region_table_prints_the_shares(recon_eval, capsys):
    regions = {"face": _region(0.99, 9500), "ears": _region(0.80, 500)}
    recon_eval.print_regions([{"head": "zoe", "variant": "as_generated", "views": 16, "size": 256,
                               "regions": regions}])
    rows = {line.split(" | ")[4]: line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["ears"][-1] == "0.51" and rows["face"][-1] == "0.49"
    assert rows["neck"][-1] == "-"
