"""Every weight file the pipeline can use: where it goes, where it comes from, how it is checked, its licence.

One typed table, so `weights fetch`, `doctor`, the offline error and the licence records in
report.json / GLB extras all say the same thing. Facts and where they were confirmed:

- SpinMeRound (spmr.ckpt): the Google Drive *folder* linked from the README of
  spin-me-round/SpinMeRound (HEAD 8d94492). File ids inside the folder are not published, so the
  folder is listed with gdown and the file is picked by name. No checksum is published: the sha256
  is recorded on first download (trust on first use) and checked afterwards. The repository is MIT
  and the release states no separate terms for the weights.
- Arc2Face encoder + arcface.onnx: Hugging Face FoivosPar/Arc2Face, pinned to commit 4201089...
  (holds encoder/ and arcface.onnx; the encoder folder has one commit, 2239a6f). The hub reports
  each file's sha256 (LFS) or git blob sha1 (small files), which is verified. Model card licence: MIT.
- scrfd_10g_bnkps.onnx: insightface's antelopev2 pack. Its official home is the insightface v0.7
  GitHub release (a 360 MB zip); the fetcher takes the single file from the Hugging Face mirror
  DIAMONIK7777/antelopev2 pinned to commit ba0c3e1, verified against the hub's sha256. InsightFace
  pretrained models are for non-commercial research only (insightface python-package README).
- 79999_iter.pth: zllrunning/face-parsing.PyTorch (MIT, LICENSE at d2e684c), Google Drive file
  154JgKpzCPW82qINcVieuPH3fZ2e0P812 from its README. No published checksum: trust on first use.
- 3DDFA_V2 files: raw files of cleardusk/3DDFA_V2 at commit 1b6c676 (MIT). Their git blob ids are
  read from that commit's tree and pinned here (raw.githubusercontent.com serves the blob bytes, so
  the git blob sha1 is a real pin); FaceBoxesProd.pth and param_mean_std_62d_120x120.pkl also have
  their sha256 pinned (computed from the blobs). SpinMeRound ships the same blobs of mb1_120x120.pth
  and FaceBoxesProd.pth. bfm_noneck_v3.pkl is the Basel Face Model 2009, academic use only
  (3DDFA_V2 bfm/readme.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from model_fetch.errors import UnknownWeightError

SourceKind = Literal["hf", "gdrive", "gdrive-folder", "url"]
Stage = Literal["align", "views"]

# Commands -> the stages whose weights they need (`ensure_weights(stages=...)` accepts either).
COMMAND_STAGES: dict[str, frozenset[str]] = {
    "align": frozenset({"align"}),
    "views": frozenset({"views"}),
    "run": frozenset({"align", "views"}),
    "flow": frozenset({"align", "views"}),
}

ARC2FACE_REPO = "FoivosPar/Arc2Face"
ARC2FACE_REVISION = "42010894039c07f91afcf0daaf0bf62aa3401e40"
ANTELOPE_MIRROR_REPO = "DIAMONIK7777/antelopev2"
ANTELOPE_MIRROR_REVISION = "ba0c3e10f4548361eb9a63265d87ce1140ab5a05"
SPMR_DRIVE_FOLDER = "11JHSuMHzEZ56_bIsrEQc9NGfpHloCkXD"
TDDFA_COMMIT = "1b6c67601abffc1e9f248b291708aef0e43b55ae"
_TDDFA_RAW = f"https://raw.githubusercontent.com/cleardusk/3DDFA_V2/{TDDFA_COMMIT}"

MIT = "MIT"
INSIGHTFACE_NC = "InsightFace pretrained models: non-commercial research only"


@dataclass(frozen=True)
class WeightFile:
    """One file of the weights folder and everything needed to fetch, verify and credit it."""

    name: str  # short id for `--only NAME`
    relpath: str  # where it goes under the weights folder
    kind: SourceKind
    locator: str  # hf: repo id; gdrive: file id; gdrive-folder: folder id; url: the URL
    licence: str
    commercial: bool  # whether the licence text permits commercial use
    needed_for: frozenset[str]  # stages that use it: fetched for them when online
    path_in_source: str = ""  # hf: filename in the repo; gdrive-folder: accepted names, "|"-separated
    revision: str | None = None  # hf: commit pinned
    sha256: str | None = None  # pinned sha256, where one is known
    git_sha1: str | None = None  # pinned git blob id, where the file is served from git
    required_for: frozenset[str] = frozenset()  # stages that cannot run without it (the others fall back)
    licence_source: str = ""  # where the licence was read
    note: str = ""
    manual: str = ""  # how to get it by hand (shown by the offline error)
    alternatives: tuple[str, ...] = field(default=())  # other relpaths the loaders accept in its place

    def is_required(self, stages: frozenset[str] | None = None) -> bool:
        """Whether a missing copy stops `stages` (any stage when None)."""
        return bool(self.required_for & stages) if stages is not None else bool(self.required_for)

    @property
    def pinned(self) -> bool:
        """True when the code carries a checksum; otherwise the first download's sha256 is recorded."""
        return self.sha256 is not None or self.git_sha1 is not None

    def source_text(self) -> str:
        """Where the file comes from, in one phrase (for error messages and doctor)."""
        if self.kind == "hf":
            return f"huggingface.co/{self.locator} ({self.path_in_source} @ {(self.revision or 'main')[:7]})"
        if self.kind == "gdrive":
            return f"Google Drive https://drive.google.com/uc?id={self.locator}"
        if self.kind == "gdrive-folder":
            return f"Google Drive folder https://drive.google.com/drive/folders/{self.locator}"
        return self.locator

    def licence_record(self) -> dict[str, object]:
        """The licence fields copied into report.json and GLB asset.extras."""
        record: dict[str, object] = {
            "name": self.name,
            "file": self.relpath,
            "licence": self.licence,
            "commercial_use": self.commercial,
            "source": self.source_text(),
        }
        if self.note:
            record["note"] = self.note
        return record


MANIFEST: tuple[WeightFile, ...] = (
    WeightFile(
        name="spmr",
        relpath="spmr.ckpt",
        kind="gdrive-folder",
        locator=SPMR_DRIVE_FOLDER,
        path_in_source="spmr.ckpt|smpr.ckpt",  # the repo's weights note spells it "smpr.ckpt"
        alternatives=("spmr.safetensors",),
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"views"}),
        required_for=frozenset({"views"}),
        licence_source="spin-me-round/SpinMeRound LICENSE (the Drive release states no separate terms)",
        note="fine-tuned from Arc2Face / Stable Diffusion 1.5; no checksum published (sha256 recorded on first use)",
        manual="open the Google Drive folder linked in https://github.com/spin-me-round/SpinMeRound "
        "(README, Quick Start step 4) and download spmr.ckpt",
    ),
    WeightFile(
        name="encoder-config",
        relpath="models/encoder/config.json",
        kind="hf",
        locator=ARC2FACE_REPO,
        path_in_source="encoder/config.json",
        revision=ARC2FACE_REVISION,
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"views"}),
        required_for=frozenset({"views"}),
        licence_source="huggingface.co/FoivosPar/Arc2Face model card (license: mit)",
        manual=f"huggingface-cli download {ARC2FACE_REPO} encoder/config.json --revision {ARC2FACE_REVISION} "
        "--local-dir WEIGHTS/models",
    ),
    WeightFile(
        name="encoder",
        relpath="models/encoder/pytorch_model.bin",
        kind="hf",
        locator=ARC2FACE_REPO,
        path_in_source="encoder/pytorch_model.bin",
        alternatives=("models/encoder/model.safetensors",),
        revision=ARC2FACE_REVISION,
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"views"}),
        required_for=frozenset({"views"}),
        licence_source="huggingface.co/FoivosPar/Arc2Face model card (license: mit)",
        note="Arc2Face CLIP text encoder, fine-tuned from SD-1.5's; trained on a restored WebFace42M",
        manual=f"huggingface-cli download {ARC2FACE_REPO} encoder/pytorch_model.bin --revision {ARC2FACE_REVISION} "
        "--local-dir WEIGHTS/models",
    ),
    WeightFile(
        name="arcface",
        relpath="models/antelopev2/arcface.onnx",
        kind="hf",
        locator=ARC2FACE_REPO,
        path_in_source="arcface.onnx",
        alternatives=("models/antelopev2/glintr100.onnx",),  # antelopev2's own recogniser
        revision=ARC2FACE_REVISION,
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"align", "views"}),
        required_for=frozenset({"views"}),  # views from a photo need its ArcFace identity
        licence_source="huggingface.co/FoivosPar/Arc2Face model card (license: mit)",
        note="ArcFace trained on WebFace42M (Arc2Face's README: use it instead of antelopev2's glintr100.onnx)",
        manual=f"huggingface-cli download {ARC2FACE_REPO} arcface.onnx --revision {ARC2FACE_REVISION} "
        "--local-dir WEIGHTS/models/antelopev2",
    ),
    WeightFile(
        name="scrfd",
        relpath="models/antelopev2/scrfd_10g_bnkps.onnx",
        kind="hf",
        locator=ANTELOPE_MIRROR_REPO,
        path_in_source="scrfd_10g_bnkps.onnx",
        revision=ANTELOPE_MIRROR_REVISION,
        licence=INSIGHTFACE_NC,
        commercial=False,
        needed_for=frozenset({"align", "views"}),
        required_for=frozenset({"views"}),
        licence_source="insightface python-package README, 'License'",
        note="SCRFD-10GF face detector of insightface's antelopev2 pack (Hugging Face mirror of the official zip)",
        manual="download https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip and "
        "unzip scrfd_10g_bnkps.onnx into WEIGHTS/models/antelopev2/",
    ),
    WeightFile(
        name="bisenet",
        relpath="79999_iter.pth",
        kind="gdrive",
        locator="154JgKpzCPW82qINcVieuPH3fZ2e0P812",
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"align"}),
        licence_source="zllrunning/face-parsing.PyTorch LICENSE",
        note="BiSeNet face parsing trained on CelebAMask-HQ (non-commercial dataset terms); "
        "no checksum published (sha256 recorded on first use)",
        manual="download 'our pre-trained model' from https://github.com/zllrunning/face-parsing.PyTorch (README) "
        "as WEIGHTS/79999_iter.pth",
    ),
    WeightFile(
        name="tddfa",
        relpath="3ddfa/mb1_120x120.pth",
        kind="url",
        locator=f"{_TDDFA_RAW}/weights/mb1_120x120.pth",
        git_sha1="bb78e0cd616fa578febb725b4be3a3ddd546f6b4",
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"align"}),
        licence_source="cleardusk/3DDFA_V2 LICENSE",
        manual=f"download {_TDDFA_RAW}/weights/mb1_120x120.pth",
    ),
    WeightFile(
        name="tddfa-stats",
        relpath="3ddfa/param_mean_std_62d_120x120.pkl",
        kind="url",
        locator=f"{_TDDFA_RAW}/configs/param_mean_std_62d_120x120.pkl",
        sha256="090d7150f77cb66c29ddae21e4508fbde59123dcd1dea7facc24a7ed06d1c795",
        git_sha1="110c0f3eda9f7c610dd20a4ac96de848b76de443",
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"align"}),
        licence_source="cleardusk/3DDFA_V2 LICENSE",
        manual=f"download {_TDDFA_RAW}/configs/param_mean_std_62d_120x120.pkl",
    ),
    WeightFile(
        name="bfm",
        relpath="3ddfa/bfm_noneck_v3.pkl",
        kind="url",
        locator=f"{_TDDFA_RAW}/configs/bfm_noneck_v3.pkl",
        git_sha1="7a44e1e29d658fc5d7303eb07cd820b23daab34a",
        licence="Basel Face Model 2009: academic use only",
        commercial=False,
        needed_for=frozenset({"align"}),
        licence_source="cleardusk/3DDFA_V2 bfm/readme.md",
        note="commercial use needs a BFM licence from the University of Basel",
        manual=f"download {_TDDFA_RAW}/configs/bfm_noneck_v3.pkl",
    ),
    WeightFile(
        name="faceboxes",
        relpath="3ddfa/FaceBoxesProd.pth",
        kind="url",
        locator=f"{_TDDFA_RAW}/FaceBoxes/weights/FaceBoxesProd.pth",
        sha256="c0cb2b1e40710c0aa5fc32a8759b1496a0fe0a126c907ca0ffe35b4bd0709d09",
        git_sha1="89c411c20eb55668e224b04cba549687ea242b57",
        licence=MIT,
        commercial=True,
        needed_for=frozenset({"align"}),
        licence_source="cleardusk/3DDFA_V2 LICENSE",
        manual=f"download {_TDDFA_RAW}/FaceBoxes/weights/FaceBoxesProd.pth",
    ),
)

# Models that ship inside pip packages (not fetched), for the licence records of runs that used them.
PACKAGED: dict[str, dict[str, object]] = {
    "dlib5": {
        "name": "dlib5",
        "file": "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
        "licence": "dlib-models: public domain (5-point landmarker)",
        "commercial_use": True,
        "source": "pip face-recognition-models==0.3.0",
    },
    "dlib68": {
        "name": "dlib68",
        "file": "face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
        "licence": "iBUG 300-W: non-commercial use only",
        "commercial_use": False,
        "source": "pip face-recognition-models==0.3.0",
    },
}


def by_name() -> dict[str, WeightFile]:
    """The manifest keyed by `name` (for `--only`)."""
    return {f.name: f for f in MANIFEST}


def stages_of(stages: Iterable[str]) -> frozenset[str]:
    """Expand command names (run, flow) into the stages (align, views) they run."""
    out: set[str] = set()
    for stage in stages:
        out |= COMMAND_STAGES.get(stage, frozenset({stage}))
    unknown = out - {"align", "views"}
    if unknown:
        raise UnknownWeightError(f"unknown stage(s) {sorted(unknown)}; known: align, views, run, flow")
    return frozenset(out)


def select(stages: Iterable[str] | None = None, only: Iterable[str] | None = None) -> list[WeightFile]:
    """The files needed by `stages` (all when None), narrowed to the names in `only` when given."""
    files = list(MANIFEST)
    if stages is not None:
        wanted = stages_of(stages)
        files = [f for f in files if f.needed_for & wanted]
    if only:
        names = list(only)
        known = by_name()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UnknownWeightError(f"unknown weight file(s) {unknown}; choose from: {', '.join(known)}")
        files = [f for f in files if f.name in names]
    return files
