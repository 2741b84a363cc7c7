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
from src.cli import Parser, add_scheduler_args, comma_list, flag, int_list, positive_int, run_main
from src.data.datasets import make_loader
from src.diffusion.latent import VQVAELatents, latent_config, latent_scale, load_space, load_vqvae
from src.diffusion.schedulers import scheduler_config
from src.errors import UserError
from src.networks import DENOISER_TYPES, network_config
from src.trainers.ddpm import DiffusionTrainer, data_section, ddpm_config
from src.distributed import distributed
from src.trainers.setup import add_training_args, load_training_sets, settings_from, start_run


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
    args = create_argparser().parse_args()
    with distributed(args.dist_backend) as dist:
        train(args, dist)


def train(args, dist) -> None:
    train_set, val_set, options = load_training_sets(args)
    latent, in_channels = None, train_set.channels
    if args.vqvae_checkpoint:
        vqvae, vqvae_config = load_vqvae(args.vqvae_checkpoint, dist.device)
        if vqvae_config["network"].get("spatial_dims", 1) != args.spatial_dimension:
            raise UserError(f"{args.vqvae_checkpoint} is a VQ-VAE for --spatial_dimension="
                            f"{vqvae_config['network'].get('spatial_dims', 1)}, not {args.spatial_dimension}")
        check_vqvae_carrier(vqvae_config, args.vqvae_checkpoint, options)
        scale = latent_scale(vqvae, make_loader(train_set, args.batch_size, shuffle=False), dist.device)
        latent = latent_config(args.vqvae_checkpoint, scale, args.latent_pad)
        in_channels = vqvae_config["network"]["embedding_dim"]
    sizes = {key: getattr(args, key) for key in ("channels", "attention_levels", "num_res_blocks", "residual_layers",
                                                   "residual_channels", "dilation_cycle_length")}
    network = network_config(args.model_type, in_channels=in_channels, spatial_dims=args.spatial_dimension, **sizes)
    scheduler = scheduler_config(args.beta_schedule, args.beta_start, args.beta_end, args.prediction_type,
                                 args.b_scale, args.snr_shift)
    data = data_section(train_set, args.training_h5file, args.validation_h5file, options)
    run, config = start_run(args, ddpm_config(network, scheduler, data, latent), dist)
    if latent and config["latent"]["vqvae_checkpoint"] != latent["vqvae_checkpoint"]:
        raise UserError(f"{run.config_path} was trained on {config['latent']['vqvae_checkpoint']}, not "
                        f"{latent['vqvae_checkpoint']}; use another --model_name")
    # a resumed LDM keeps the scale it started with
    space = (VQVAELatents(vqvae, config["latent"]["scale_factor"], config["latent"].get("latent_pad")) if latent
             else load_space(config, dist.device))
    DiffusionTrainer(run, config, settings_from(args), train_set, val_set, dist, space=space).fit()


def check_vqvae_carrier(vqvae_config: dict, checkpoint: str, options) -> None:
    """An LDM must see its data as its VQ-VAE saw them: the same carrier recovery."""
    trained = vqvae_config.get("data", {}).get("carrier_order", 0)
    if trained != options.carrier_order:
        raise UserError(f"{checkpoint} is a VQ-VAE trained with carrier recovery order {trained or 'off'}, but these "
                        f"data are read with {options.carrier_order or 'off'}; pass the VQ-VAE's --carrier_recovery")


if __name__ == "__main__":
    run_main(main)
