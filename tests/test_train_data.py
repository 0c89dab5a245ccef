"""Training data: groups of F frames, conditioning views, camera mapping, normals frames, config errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import IMAGE_SIZE, one_thread, write_synthetic_dataset  # noqa: F401 (autouse fixture)

from smr_core.cameras import model_angles
from smr_core.train.config import DataConfig, load_config
from smr_core.train.data import GroupDataset, ResumableSampler, collate_groups, load_subjects, normals_to_frame
from smr_core.train.errors import DataError, TrainingError


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.getbasetemp() / "train-data"
    if not (root / "subject1" / "arcface.npy").is_file():
        write_synthetic_dataset(root)
    return root


def _config(root: Path, **kw) -> DataConfig:
    return DataConfig(root=root, image_size=IMAGE_SIZE, num_frames=4, **kw)


def test_groups_have_conditioning_views_first_and_the_right_shapes(train_data):
    ds = GroupDataset(_config(train_data), seed=0)
    counts: Counter[int] = Counter()
    for index in range(300):
        _, frames, n_cond = ds.choose(index)
        assert len(set(frames)) == 4
        counts[n_cond] += 1
    assert set(counts) == {0, 1, 3}
    assert all(abs(c / 300 - 1 / 3) < 0.1 for c in counts.values())
    group = ds[7]
    n_cond = int((~group["is_target"]).sum())
    assert group["rgb"].shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE) and group["normal"].shape == group["rgb"].shape
    assert group["rays"].shape == (4, 144, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    assert group["is_target"].tolist() == [False] * n_cond + [True] * (4 - n_cond)
    assert float(group["rgb"].min()) >= -1 and float(group["rgb"].max()) <= 1
    batch = collate_groups([ds[0], ds[1]])
    assert batch["rgb"].shape[0] == 8 and batch["id_emb"].shape == (2, 512)


def test_choices_are_a_pure_function_of_seed_and_index(train_data):
    a, b = GroupDataset(_config(train_data), seed=3), GroupDataset(_config(train_data), seed=3)
    assert [a.choose(i) for i in range(20)] == [b.choose(i) for i in reversed(range(20))][::-1]
    assert [a.choose(i) for i in range(20)] != [GroupDataset(_config(train_data), seed=4).choose(i) for i in range(20)]
    # every epoch visits every subject once
    assert sorted(a.subject_index(i) for i in range(2, 4)) == [0, 1]


def test_frontal_view_conditions_when_asked(train_data):
    ds = GroupDataset(_config(train_data, p_frontal_conditioning=1.0, conditioning_views=(1, 3),
                              conditioning_probs=(0.5, 0.5)), seed=0)
    for index in range(40):
        s, frames, _ = ds.choose(index)
        assert frames[0] == ds.subjects[s].frontal


def test_cameras_map_to_the_pipelines_model_angles(train_data):
    """The ViewSet's geometric cameras become exactly the angles the inference pipeline feeds for them."""
    from smr_core.cameras import ViewCamera

    ds = GroupDataset(_config(train_data), seed=0)
    subject = ds.subjects[0]
    assert subject.frames[subject.frontal].is_input
    expected = [(0.0, 0.0), (0.0, 72.0), (0.0, 144.0), (0.0, -144.0), (0.0, -72.0), (20.0, 30.0)]
    for info, (e, a) in zip(subject.frames, expected, strict=True):
        angles = ds.model_angles(info)
        assert np.allclose(angles, model_angles(ViewCamera(a, e), "angles"), atol=1e-6)
    rays = GroupDataset(_config(train_data, camera_encoding="rays"), seed=0)
    for info in subject.frames:
        assert np.allclose(rays.model_angles(info), model_angles(info.camera(), "rays"), atol=1e-5)


def test_normals_are_brought_to_the_configured_frame(train_data):
    """Subject 0 stores camera-frame normals, subject 1 world-frame: both load in the requested frame."""
    rng = np.random.default_rng(0)
    n = rng.standard_normal((5, 5, 3)).astype(np.float32)
    from smr_core.cameras import ViewCamera

    c2w = ViewCamera(40.0, 10.0).c2w()
    back = normals_to_frame(normals_to_frame(n, "world", "camera", c2w), "camera", "world", c2w)
    np.testing.assert_allclose(back, n, atol=1e-6)
    # the frame of a side view: a world normal along the camera's viewing axis becomes +Z in camera axes
    to_cam = normals_to_frame(c2w[:3, 2][None, None].astype(np.float32), "world", "camera", c2w)
    np.testing.assert_allclose(to_cam[0, 0], [0, 0, 1], atol=1e-6)

    world = GroupDataset(_config(train_data, normal_frame="world"), seed=0)
    camera = GroupDataset(_config(train_data, normal_frame="camera"), seed=0)
    subject = world.subjects[1]  # stored in world axes
    info = subject.frames[1]  # a side view
    _, n_world = world.load_frame(info)
    _, n_cam = camera.load_frame(info)
    R = torch.tensor(info.c2w[:3, :3], dtype=torch.float32)
    torch.testing.assert_close(torch.einsum("ij,jhw->ihw", R.T, n_world), n_cam, atol=1e-5, rtol=0)


def test_sampler_splits_micro_batches_across_processes():
    it = iter(ResumableSampler(batch_size=2, start_batch=3, rank=1, world_size=2))
    assert [next(it) for _ in range(4)] == [14, 15, 18, 19]


def test_bad_data_gives_clear_errors(train_data, tmp_path):
    with pytest.raises(DataError, match="no subject folders"):
        load_subjects(_config(tmp_path))
    with pytest.raises(DataError, match="num_frames=7"):
        load_subjects(DataConfig(root=train_data, image_size=IMAGE_SIZE, num_frames=7))
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(train_data / "subject0", copy / "subject0")
    (copy / "subject0" / "arcface.npy").unlink()
    with pytest.raises(DataError, match="arcface.npy: missing"):
        load_subjects(_config(copy))
    with pytest.raises(ValueError, match="leave a target"):
        DataConfig(root=train_data, num_frames=3, conditioning_views=(0, 1, 3))


def test_config_file_paths_are_relative_to_the_file(tmp_path):
    cfg = tmp_path / "cfg" / "run.toml"
    cfg.parent.mkdir()
    cfg.write_text('[data]\nroot = "data"\nimage_size = 64\nnum_frames = 4\n[model]\ninit = "tiny-random"\n'
                   '[run]\noutput_dir = "runs/a"\nmax_steps = 3\n')
    config = load_config(cfg, {"run": {"max_steps": 5}})
    assert config.data.root == (cfg.parent / "data").resolve()
    assert config.run.output_dir == (cfg.parent / "runs" / "a").resolve() and config.run.max_steps == 5
    cfg.write_text('[data]\nroot = "data"\n[model]\ninit = "spinmeround"\n[run]\noutput_dir = "x"\nmax_steps = 1\n')
    with pytest.raises(TrainingError, match="needs model.weights"):
        load_config(cfg)
