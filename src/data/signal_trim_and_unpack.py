"""Prepare raw IQ recordings for training: the research code's command, a thin entry point.

    python src/data/signal_trim_and_unpack.py --data_root=data/raw --trim_length=3000 --new_data_root=data/processed

Every raw input below --data_root (RF Challenge ``*_raw_data.h5``, SigMF, ``.npy``) is cut into
windows of --trim_length samples, split by frame into ``<Name>_raw_data_{train,val,test}.h5``.
What the files hold and why: :mod:`src.data.prep`.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python src/data/signal_trim_and_unpack.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src.cli import Parser, fraction, run_main, setup_logging
from src.data.prep import NORMALIZATIONS, trim_and_unpack
from src.data.recordings import ACCEPTED_KINDS, DEFAULT_FRAME_LENGTH


def build_parser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--data_root", required=True, help=f"folder searched recursively for {ACCEPTED_KINDS}")
    parser.add_argument("--new_data_root", required=True, help="output root (same relative folders)")
    parser.add_argument("--trim_length", type=int, default=3000, help="samples per window (default: %(default)s)")
    parser.add_argument("--num_samples", type=int, default=None,
                        help="max windows kept per raw file over all splits (default: all)")
    parser.add_argument("--val_split", type=fraction, default=0.2, help="fraction of frames for val (default: 0.2)")
    parser.add_argument("--test_split", type=float, default=0.2,
                        help="fraction of frames for test; 0 writes no test file (default: 0.2)")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="rms",
                        help="rms: scale each window to unit power; none: keep raw scale (default: rms)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the frame split (default: %(default)s)")
    parser.add_argument("--frame_length", type=int, default=DEFAULT_FRAME_LENGTH,
                        help="samples per frame cut from a SigMF recording or 1-D .npy stream; the tail is "
                             "dropped (default: %(default)s, the RF Challenge frame length)")
    return parser


def main() -> None:
    setup_logging()
    args = build_parser().parse_args()
    trim_and_unpack(args.data_root, args.new_data_root, args.trim_length, args.num_samples, args.val_split,
                    args.test_split, args.normalize, args.seed, args.frame_length)


if __name__ == "__main__":
    run_main(main)
