"""`spin-to-mesh filter-data DATA -o DIR`: drop training subjects whose views do not keep their identity.

It chains two stages, align's face recogniser (antelopev2 ArcFace) and smr_core's training-data filter, so it
lives in flows (docs/DESIGN.md §1: stages do not import each other). Provides `register(subparsers)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spin_io.cliargs import hidden_alias


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `filter-data` sub-command."""
    f = subparsers.add_parser(
        "filter-data",
        help="drop training subjects whose views do not match their frontal identity (ArcFace)",
        description="Score each subject by the ArcFace similarity of its views to its frontal view (antelopev2 from "
        "--weights or $SMR_WEIGHTS) and drop those below --threshold (and, with --mad-k, the dataset's outliers). "
        "Writes DIR/filter_report.json (every subject, its score and the reason it was kept or dropped) and "
        "DIR/kept.txt (set data.subjects_file to it).",
    )
    f.add_argument("data", type=Path, help="dataset folder (one sub-folder per subject with views/)")
    out = f.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                         help="folder for filter_report.json and kept.txt")
    hidden_alias(f, out, "--out")
    f.add_argument("--weights", default=None, metavar="DIR",
                   help="weights folder with models/antelopev2 (default $SMR_WEIGHTS)")
    f.add_argument("--threshold", type=float, default=0.5, help="minimum mean similarity to keep (default 0.5)")
    f.add_argument("--max-angle", type=float, default=60.0, help="views further than this from the frontal one "
                   "are not scored (default 60 degrees)")
    f.add_argument("--min-views", type=int, default=2, help="scored views a subject needs (default 2)")
    f.add_argument("--mad-k", type=float, default=None, help="also drop scores below median - K * MAD")
    f.add_argument("--write-arcface", action="store_true", help="write SUBJECT/arcface.npy (frontal embedding) "
                   "where missing")
    f.set_defaults(func=_handle_filter)


def _handle_filter(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from align.recogniser import load_recogniser
    from smr_core.train.data import list_subject_dirs
    from smr_core.train.errors import DataError
    from smr_core.train.filtering import FilterConfig, filter_dataset
    from spin_io.preflight import check_output_writable

    if not 0.0 <= args.threshold <= 1.0 or args.max_angle <= 0 or args.min_views < 1:
        raise DataError("--threshold must lie in [0, 1], --max-angle be > 0 and --min-views >= 1")
    check_output_writable(args.output, create=False)  # before scoring every subject
    total = len(list_subject_dirs(args.data))
    recogniser, why = load_recogniser(args.weights)
    if recogniser is None:
        raise DataError(f"filter-data needs the antelopev2 ArcFace model: {why}")
    config = FilterConfig(args.threshold, args.max_angle, args.min_views, args.mad_k)
    with tqdm(total=total, desc="filter-data", unit="subject") as bar:
        report = filter_dataset(
            args.data, recogniser, config, args.output, args.write_arcface, step=lambda _: bar.update()
        )
    for e in report["subjects"]:
        if not e["keep"]:
            print(f"dropped {e['subject']}: {e['reason']}")
    print(f"kept {report['kept']} of {report['kept'] + report['dropped']} subjects; list: {args.output / 'kept.txt'}")
    return 0
