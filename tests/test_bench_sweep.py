"""bench/gpu_sweep.py must run where a GPU session will run it: here on the CPU, eager part, tiny network."""

import importlib.util
import json
import sys
from pathlib import Path

from threads import one_torch_thread

SWEEP = Path(__file__).resolve().parents[1] / "bench" / "gpu_sweep.py"


def test_sweep_eager_part_records_every_backend_and_its_accuracy(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_sweep", SWEEP)
    sweep = importlib.util.module_from_spec(spec)
    sys.modules["gpu_sweep"] = sweep  # dataclasses look their module up while the class is built
    spec.loader.exec_module(sweep)
    out = tmp_path / "sweep.json"
    with one_torch_thread():
        assert sweep.main(["--device", "cpu", "--config", "reduced", "--views", "4", "--steps", "2",
                           "--variants", "eager", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["variants"]) == {"eager/auto", "eager/cudnn", "eager/flash", "eager/efficient"}
    for row in results["variants"].values():
        assert row["forward_s"] > 0
        assert 1e-4 < row["rel_diff"] < 3e-2  # bf16 weights against the fp32 reference: close, not equal
    assert "fastest eager attention backend" in capsys.readouterr().out
