"""Reconstruct val, in and out signals from several noise levels with a trained run.

Example:
    python reconstruct.py --output_dir=runs --model_name=unet_small_QPSK \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5 \
        --in_ids=data/processed/interferenceset_frame/QPSK_raw_data_test.h5 \
        --out_ids=data/processed/interferenceset_frame/QAM16_raw_data_test.h5,\
data/processed/interferenceset_frame/OFDM_raw_data_test.h5 \
        --num_inference_steps=100 --inference_skip_factor=4 --run_val=1 --run_in=1 --run_out=1

Writes <output_dir>/<model_name>/ood/results_val.csv, results_in.csv and results_<Name>.csv:
one row per (signal, start point t) with its reconstruction errors. The model and scheduler come
from the run's config.json; a flag that contradicts it is an error.
"""
from src.cli import (
    Parser,
    add_dist_args,
    add_loader_args,
    add_run_args,
    comma_list,
    flag,
    options_from,
    positive_int,
    run_main,
)
from src.data.sources import add_data_args
from src.diffusion.engine import MODES
from src.diffusion.schedulers import add_scheduler_args
from src.distributed import distributed
from src.networks import MODEL_TYPES
from src.ood.reconstruction_stage import ReconstructionJob, reconstruct_sets
from src.ood.reconstructors import PLMS_HISTORIES
from src.runtime import PRECISIONS


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    add_run_args(parser)
    parser.add_argument("--model_type", choices=MODEL_TYPES, default=None,
                        help="optional check: must equal the run's model_type")
    parser.add_argument("--validation_h5file", "--validation_ids", dest="validation_h5file", default=None,
                        help="in-distribution signals (processed h5) or images (CSV split file) that calibrate the "
                             "scores")
    parser.add_argument("--vqvae_checkpoint", default=None,
                        help="optional check, as in the research code's command: the VQ-VAE the LDM was trained on")
    parser.add_argument("--in_ids", type=comma_list, default=[],
                        help="held-out in-distribution file(s), comma separated")
    parser.add_argument("--out_ids", type=comma_list, default=[], help="other signal types' files, comma separated")
    parser.add_argument("--num_inference_steps", type=positive_int, default=100,
                        help="PLMS steps (default: %(default)s)")
    parser.add_argument("--inference_skip_factor", type=positive_int, default=1,
                        help="keep every k-th start point: 1 -> 99 start points, 4 -> 25 (default: %(default)s)")
    parser.add_argument("--reconstruction_mode", choices=MODES, default="plms",
                        help="plms: the paper's sampler; ddim: DDIM steps; onestep: one network call per start "
                             "point; path: no noise, the signal's own deterministic DDIM path up through the "
                             "start points, one call each (default: %(default)s)")
    parser.add_argument("--plms_history", choices=PLMS_HISTORIES, default="reset",
                        help="reset: each start point's PLMS chain starts with an empty history (PLMS as defined); "
                             "carry: the research code's loop, one scheduler whose history carries from chain to "
                             "chain (slower: the plain loop, not the batched engine) (default: %(default)s)")
    parser.add_argument("--max_chains", type=positive_int, default=None,
                        help="most signals (start points x batch) in one network call; lower it if memory runs out "
                             "(default: 4096 on CUDA, 256 on CPU)")
    parser.add_argument("--compile", type=flag, default=False, help="1: torch.compile the network (default: 0)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the network's arithmetic: auto (bf16 autocast on CUDA and on a CPU with native bf16 "
                             "that a short probe confirms faster, else fp32; continuing a folder, what it records), "
                             "fp32 or bf16; the scheduler arithmetic stays fp32; reconstruction.json records what ran "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", type=flag, default=False,
                        help="1: discard earlier results in the ood folder; 0: keep finished sets and batches and "
                             "continue where an interrupted run stopped (default: 0)")
    parser.add_argument("--run_val", type=flag, default=True, help="reconstruct the validation file (default: 1)")
    parser.add_argument("--run_in", type=flag, default=True, help="reconstruct the in files (default: 1)")
    parser.add_argument("--run_out", type=flag, default=True, help="reconstruct the out files (default: 1)")
    parser.add_argument("--first_n", type=positive_int, default=None, help="only the first N signals of in/out files")
    parser.add_argument("--first_n_val", type=positive_int, default=None, help="only the first N validation signals")
    add_data_args(parser, from_config=True)
    add_loader_args(parser, batch_size=32)
    add_dist_args(parser)
    add_scheduler_args(parser, training=False)
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    with distributed(args.dist_backend) as dist:
        reconstruct_sets(options_from(ReconstructionJob, args), dist)


if __name__ == "__main__":
    run_main(main)
