"""Train a 1D diffusion model (DDPM) on one signal type, or a latent one (LDM) on VQ-VAE latents.

Examples:
    python train_ddpm.py --output_dir=runs --model_name=unet_small_QPSK --model_type=small \
        --training_h5file=data/processed/interferenceset_frame/QPSK_raw_data_train.h5 \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5 \
        --n_epochs=20 --batch_size=64
    python train_ddpm.py ... --model_type=wavenet --residual_layers=12
    python train_ddpm.py ... --vqvae_checkpoint=runs/vqvae_QPSK/checkpoint.pth   # an LDM

Re-running the same command resumes from checkpoint_last.pth; a larger --n_epochs trains on.
"""
from src.cli import Parser, comma_list, flag, int_list, options_from, positive_int, run_main
from src.diffusion.schedulers import add_scheduler_args
from src.networks import DENOISER_TYPES
from src.trainers.ddpm import DiffusionJob, train_diffusion_model
from src.trainers.setup import add_training_args


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    # Chosen with benchmarks/bench_training.py on the demo data (docs/benchmarks.md, "Training defaults"):
    # the research code's constant 2.5e-5 (or 1e-4) leaves a small model far from converged in a CPU budget.
    add_training_args(parser, n_epochs=120, batch_size=64, learning_rate=1e-3, lr_schedule="cosine",
                      warmup_steps=100, ema_decay=0.999)
    parser.add_argument("--model_type", choices=DENOISER_TYPES, default="small",
                        help="denoiser: a UNet preset or wavenet (default: %(default)s)")
    sizes = parser.add_argument_group("network size (default: the preset's)")
    sizes.add_argument("--channels", type=int_list, default=None, help="UNet widths per level, e.g. 16,32,64")
    sizes.add_argument("--attention_levels", type=lambda v: [flag(c) for c in comma_list(v)], default=None,
                       help="UNet attention per level, e.g. 0,0,1")
    sizes.add_argument("--num_res_blocks", type=positive_int, default=None, help="UNet residual blocks per level")
    sizes.add_argument("--residual_layers", type=positive_int, default=None, help="WaveNet layers (18)")
    sizes.add_argument("--residual_channels", type=positive_int, default=None, help="WaveNet width (64)")
    sizes.add_argument("--dilation_cycle_length", type=positive_int, default=None,
                       help="WaveNet dilations 1..2^(k-1), repeated (6)")
    parser.add_argument("--vqvae_checkpoint", default=None,
                        help="train a latent diffusion model on this VQ-VAE's latents (vqvae_config.json beside it)")
    parser.add_argument("--latent_pad", type=int_list, default=None,
                        help="LDM: zeros added around the latents, torch.nn.functional.pad order (last axis first), "
                             "e.g. [1,1,1,1]; the image networks already pad to what they need (default: none)")
    add_scheduler_args(parser, training=True)
    return parser


def main() -> None:
    train_diffusion_model(options_from(DiffusionJob, create_argparser().parse_args()))


if __name__ == "__main__":
    run_main(main)
