"""Issue 15 (items 5, 7, 8, 9, 15): every user mistake in the stage commands is ONE line with a documented exit code.

Devices are checked before any model loads, the output folder before any work, photos are read with
messages that name the file, large photos are downscaled instead of printing Pillow's warning, and the
commands share one option vocabulary (old names still parse).
"""

import argparse
import errno
import logging
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from align.errors import ImageReadError
from align.image import LARGE_PIXELS, load_image
from flows.cli import build_parser, main
from spin_io.errors import (
    EXIT_CODES,
    EXIT_DEVICE,
    EXIT_OUTPUT,
    EXIT_USAGE,
    EXIT_WEIGHTS,
    OutputNotWritableError,
)
from spin_io.preflight import check_output_writable

SPIN_TO_MESH = Path(sys.executable).with_name("spin-to-mesh")


def _one_line_error(err: str, command: str) -> str:
    """The single error line of `err`, checked to be the only line and to carry no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith(f"spin-to-mesh {command}: error: ")
    return lines[0]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds one empty row: Pillow reads the size, never the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


@pytest.fixture
def no_weights(monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)


# ----------------------------------------------------------------------------------- item 7: photos


def test_align_given_a_folder_says_it_takes_one_photo(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert main(["align", str(tmp_path / "photos"), "-o", str(tmp_path / "x")]) == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err, "align")
    assert "photos is a folder: `spin-to-mesh align` takes one photo" in line
    assert f"use `spin-to-mesh run {tmp_path / 'photos'} -o OUT`" in line and "no such file" not in line
    assert not (tmp_path / "x").exists()


def test_a_glob_given_to_align_points_to_run(tmp_path, capsys):
    assert main(["align", str(tmp_path / "*.jpg"), "-o", str(tmp_path / "x")]) == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err, "align")
    assert "*.jpg: no such file" in line and "`spin-to-mesh run` takes folders and globs" in line


def _unreadable(tmp_path, kind, monkeypatch):
    if kind == "text":
        (tmp_path / "notes.jpg").write_text("hello, not a photo")
        return tmp_path / "notes.jpg", "notes.jpg: not a readable image (not a format Pillow knows)"
    if kind == "truncated":
        Image.fromarray(skimage.data.astronaut()).save(tmp_path / "full.jpg")
        data = (tmp_path / "full.jpg").read_bytes()
        (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
        return tmp_path / "cut.jpg", "cut.jpg: not a readable image (damaged or truncated: image file is truncated"
    path = tmp_path / "locked.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    real = Path.read_bytes

    def read_bytes(self):  # tests may run as root, where chmod 000 does not stop a read
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return path, "locked.png: cannot be read (permission denied); check the file and its permissions"


@pytest.mark.parametrize("kind", ["text", "truncated", "unreadable"])
def test_unreadable_photos_are_one_line_naming_the_file(tmp_path, capsys, monkeypatch, no_weights, kind):
    path, message = _unreadable(tmp_path, kind, monkeypatch)
    code = main(["align", str(path), "-o", str(tmp_path / "x"), "--backend", "offline", "--device", "cpu"])
    assert code == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err, "align")
    assert str(path) in line and message in line
    assert "BytesIO" not in line and "<_io" not in line
    assert not (tmp_path / "x").exists()


# -------------------------------------------------------------------------------- item 9: large photos


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_a_photo_over_89_mpx_is_downscaled_with_one_log_line_and_no_pil_warning(tmp_path, caplog, fmt):
    path = tmp_path / f"dslr.{fmt}"
    # 9500 x 9500 = 90.25 Mpx, just over Pillow's warning threshold; flat, so it compresses to ~100 kB
    Image.new("1" if fmt == "png" else "L", (9500, 9500), 1 if fmt == "png" else 200).save(path)
    assert 9500 * 9500 > LARGE_PIXELS
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="align.image"):
        warnings.simplefilter("error")  # the old loader let Pillow's DecompressionBombWarning through
        src = load_image(path)
    assert src.rgb.shape == (4750, 4750, 3)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 9500x9500 px (90 Mpx) is over 89 Mpx, so it was downscaled to 4750x4750 px on load"
    ]


def test_a_photo_over_179_mpx_is_refused_in_one_line_with_its_size(tmp_path, capsys, no_weights):
    path = tmp_path / "panorama.png"
    path.write_bytes(_png_header(20000, 10000))
    with pytest.raises(ImageReadError, match=r"panorama.png: 200 Mpx is over the 179 Mpx limit; downscale"):
        load_image(path)
    code = main(["align", str(path), "-o", str(tmp_path / "x"), "--backend", "offline", "--device", "cpu"])
    assert code == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err, "align")
    assert "200 Mpx is over the 179 Mpx limit" in line and "decompression bomb" not in line.lower()


# ------------------------------------------------------------------------ items 5 and 8: device, output


def _stage_argv(command, photo, tmp_path):
    (tmp_path / "views").mkdir(exist_ok=True)
    config = tmp_path / "train.toml"
    config.write_text(
        '[data]\nroot = "data"\n[model]\ninit = "tiny-random"\n[run]\noutput_dir = "run"\nmax_steps = 1\n'
    )
    return {
        "align": ["align", str(photo), "--backend", "offline"],
        "views": ["views", str(photo), "--tiny-random"],
        "recon": ["recon", str(tmp_path / "views")],
        "train": ["train", str(config)],
    }[command]


def _cuda_devices():
    import torch

    devices = ["cuda:99"]  # on every machine: there is no 100th GPU
    if not torch.cuda.is_available():
        devices.append("cuda")  # the case: --device cuda on a machine without CUDA
    return devices


@pytest.mark.parametrize("device", _cuda_devices())
@pytest.mark.parametrize("command", ["align", "views", "recon", "train"])
def test_an_unavailable_device_is_one_line_exit_5_before_any_work(photo, tmp_path, capsys, no_weights, command,
                                                                  device):
    argv = [*_stage_argv(command, photo, tmp_path), "-o", str(tmp_path / "out"), "--device", device]
    assert main(argv) == EXIT_DEVICE
    line = _one_line_error(capsys.readouterr().err, command)
    assert f"--device {device}" in line and ("use --device cpu" in line or "cuda:0..cuda:" in line)
    assert not (tmp_path / "out").exists()


def test_a_device_in_the_training_config_is_checked_the_same_way(photo, tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text('[data]\nroot = "data"\n[model]\ninit = "tiny-random"\n'
                      '[run]\noutput_dir = "run"\nmax_steps = 1\ndevice = "cuda:99"\n')
    assert main(["train", str(config)]) == EXIT_DEVICE
    assert f"{config}: run.device: --device cuda:99" in _one_line_error(capsys.readouterr().err, "train")
    from smr_core.train_cli import main as train_main  # the `accelerate launch -m smr_core.train_cli` entry

    assert train_main(["train", str(config)]) == EXIT_DEVICE
    err = capsys.readouterr().err
    assert "Traceback" not in err and "run.device" in err


@pytest.mark.parametrize("command", ["align", "views", "recon", "train", "filter-data"])
def test_an_output_that_is_a_file_is_exit_4_before_any_work(photo, tmp_path, capsys, no_weights, command):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("a file where the output folder should go")
    if command == "filter-data":
        (tmp_path / "data").mkdir()
        argv = ["filter-data", str(tmp_path / "data")]
    else:
        argv = [*_stage_argv(command, photo, tmp_path), "--device", "cpu"]
    assert main([*argv, "-o", str(blocker / "out")]) == EXIT_OUTPUT
    line = _one_line_error(capsys.readouterr().err, command)
    assert f"output {blocker / 'out'}: {blocker} is a file, not a folder: choose a folder with -o/--output" in line


def test_the_output_check_can_leave_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_output_writable(target, create=False) == target.resolve()
    assert list(tmp_path.iterdir()) == []  # neither the folders nor the probe file
    assert check_output_writable(target) == target.resolve() and target.is_dir()  # the default creates it
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputNotWritableError, match="is a file, not a folder"):
        check_output_writable(tmp_path / "f" / "out", create=False)


# ------------------------------------------------------------------------- OSErrors on the user's paths


@pytest.fixture
def align_raising(monkeypatch):
    """`align` whose handler raises the given exception (registered afresh, so the patch is used)."""
    import align.cli

    def use(exc):
        def handler(args):
            raise exc(args)

        monkeypatch.setattr(align.cli, "_handle", handler)

    return use


def test_permission_denied_in_the_output_folder_is_one_line_exit_4(align_raising, tmp_path, capsys):
    align_raising(lambda a: PermissionError(errno.EACCES, "Permission denied", str(Path(a.output) / "crop.png")))
    assert main(["align", "p.jpg", "-o", str(tmp_path / "o")]) == EXIT_OUTPUT
    line = _one_line_error(capsys.readouterr().err, "align")
    assert f"cannot write {tmp_path / 'o' / 'crop.png'} (permission denied): choose another -o/--output" in line


def test_a_missing_input_file_is_one_line_exit_2(align_raising, tmp_path, capsys):
    align_raising(lambda a: FileNotFoundError(errno.ENOENT, "No such file or directory", a.photo))
    assert main(["align", str(tmp_path / "p.jpg"), "-o", str(tmp_path / "o")]) == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err, "align")
    assert f"cannot read {tmp_path / 'p.jpg'} (no such file or directory): check the path" in line


def test_a_missing_weights_file_is_exit_3(align_raising, tmp_path, capsys):
    align_raising(lambda a: FileNotFoundError(errno.ENOENT, "No such file", str(Path(a.weights) / "x.onnx")))
    assert main(["align", "p.jpg", "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "w")]) == EXIT_WEIGHTS


def test_align_errors_are_one_line_with_their_exit_codes(align_raising, tmp_path, capsys):
    from align.errors import AlignWeightsNotFoundError, NoFaceError

    cases = ((NoFaceError("no face found"), EXIT_USAGE), (AlignWeightsNotFoundError("no models"), EXIT_WEIGHTS))
    for exc, code in cases:
        align_raising(lambda a, exc=exc: exc)
        assert main(["align", "p.jpg", "-o", str(tmp_path / "o")]) == code
        assert _one_line_error(capsys.readouterr().err, "align") == f"spin-to-mesh align: error: {exc}"


def test_a_full_disk_is_one_line_exit_4_even_without_a_file_name(align_raising, tmp_path, capsys):
    align_raising(lambda a: OSError(errno.ENOSPC, "No space left on device"))
    assert main(["align", "p.jpg", "-o", str(tmp_path / "o")]) == EXIT_OUTPUT
    line = _one_line_error(capsys.readouterr().err, "align")
    assert "the disk is full (no space left on device): free space or choose another -o/--output" in line


def test_an_os_error_outside_the_users_paths_keeps_its_traceback(align_raising, tmp_path):
    align_raising(lambda a: FileNotFoundError(errno.ENOENT, "No such file", "/nonexistent/package/data.bin"))
    with pytest.raises(FileNotFoundError):  # a bug: main re-raises, the interpreter prints the traceback
        main(["align", str(tmp_path / "p.jpg"), "-o", str(tmp_path / "o")])


# ------------------------------------------------------------------------------ usage errors, exit codes


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["views", "--views", "4"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == (
        "spin-to-mesh views: error: the following arguments are required: -o/--output "
        "(see: spin-to-mesh views --help)"
    )


def test_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", out, re.M), (code, out)


def test_error_classes_carry_their_exit_codes():
    from align.errors import (
        AlignCheckpointError,
        AlignError,
        AlignInputError,
        AlignWeightsNotFoundError,
        ExtremePoseError,
        FaceCutError,
        FaceTooSmallError,
        NoFaceError,
        SeveralFacesError,
    )
    from recon.errors import ConventionError, DegenerateResultError, ReconError, ViewSetInputError
    from smr_core.errors import CheckpointError, InputError, SMRError, WeightsNotFoundError
    from smr_core.train.errors import DataError, TrainingError
    from spin_io.errors import exit_code_of

    assert exit_code_of(WeightsNotFoundError("x")) == EXIT_WEIGHTS
    assert exit_code_of(AlignWeightsNotFoundError("x")) == EXIT_WEIGHTS
    usage = (SMRError, InputError, CheckpointError, ImageReadError, NoFaceError, FaceTooSmallError, ExtremePoseError,
             FaceCutError, SeveralFacesError, AlignError, AlignInputError, AlignCheckpointError,
             TrainingError, DataError, ReconError, ViewSetInputError, ConventionError, DegenerateResultError)
    assert {cls.__name__: exit_code_of(cls("x")) for cls in usage} == {cls.__name__: EXIT_USAGE for cls in usage}


# --------------------------------------------------------------------------------- item 15: vocabulary


def _sub(command):
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]


@pytest.mark.parametrize(
    "command, argv, dest, value",
    [
        ("align", ["p.jpg", "--out", "o"], "output", "o"),
        ("views", ["p.jpg", "--out", "o"], "output", Path("o")),
        ("views", ["p.jpg", "-o", "o", "--cfg", "2.5"], "cfg_scale", 2.5),
        ("filter-data", ["d", "--out", "o"], "output", Path("o")),
        ("train", ["c.toml", "--output-dir", "o"], "output", Path("o")),
    ],
)
def test_old_option_names_still_parse_but_are_not_advertised(command, argv, dest, value):
    sub = _sub(command)
    assert getattr(sub.parse_args(argv), dest) == value
    old = next(a for a in argv if a.startswith("--"))
    assert not re.search(rf"{re.escape(old)}\b(?!-)", sub.format_help()), sub.format_help()


@pytest.mark.parametrize("command", ["align", "views", "recon", "train", "filter-data"])
def test_every_stage_command_speaks_the_same_vocabulary(command):
    sub = _sub(command)
    options = {s: a for a in sub._actions for s in a.option_strings}
    assert options["-o"] is options["--output"] and options["--output"].metavar == "DIR"
    if "--device" in options:
        assert "auto" in options["--device"].help and options["--device"].default in ("auto", None)
    if "--weights" in options:
        assert options["--weights"].metavar == "DIR"
    if command in ("align", "views", "recon"):
        assert options["--device"].default == "auto"
    if command == "recon":
        assert options["--texture-size"].default == 2048 and "side of the baked albedo" in options[
            "--texture-size"
        ].help


# ------------------------------------------------------------------------------------ the real console


def test_the_console_script_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "big.png").write_bytes(_png_header(20000, 10000))
    cases = [
        (["align", str(tmp_path / "photos"), "-o", str(tmp_path / "x")], EXIT_USAGE, "takes one photo"),
        (["align", str(tmp_path / "big.png"), "-o", str(tmp_path / "x"), "--backend", "offline"], EXIT_USAGE,
         "200 Mpx is over the 179 Mpx limit"),
        (["recon", str(tmp_path / "photos"), "-o", str(tmp_path / "x"), "--device", "cuda:99"], EXIT_DEVICE,
         "--device cuda:99"),
        (["views", "--pitch", "up", "-o", "x"], EXIT_USAGE, "comma-separated degrees"),
        (["recon", str(tmp_path / "photos"), "-o", str(tmp_path / "x"), "--target-faces", "-5"], EXIT_USAGE,
         "--target-faces -5: give the fitted mesh's face budget, at least 1000"),
    ]
    for argv, code, message in cases:
        done = subprocess.run([str(SPIN_TO_MESH), *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == code, (argv, done.stderr)
        assert message in _one_line_error(done.stderr, argv[0]), done.stderr
        assert "Warning" not in done.stderr and not (tmp_path / "x").exists()
