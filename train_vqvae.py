"""Train a 1D VQ-VAE on one signal type: the first stage of a latent diffusion model (LDM).

Example:
    python train_vqvae.py --output_dir=runs --model_name=vqvae_QPSK \
        --training_h5file=data/processed/interferenceset_frame/QPSK_raw_data_train.h5 \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5 \
        --n_epochs=30 --batch_size=64 --eval_freq=1 --cache_data=1 --spatial_dimension=1

Writes vqvae_config.json beside checkpoint.pth; TensorBoard shows reconstruction and commitment
losses and codebook perplexity and usage. Then: train_ddpm.py --vqvae_checkpoint=<run>/checkpoint.pth.
"""
from src.cli import Parser, comma_list, options_from, positive_int, run_main
from src.trainers.autoencoders import VQVAESizes, VQVAETrainer
from src.trainers.setup import TrainingJob, add_training_args, train_autoencoding_model


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    add_training_args(parser, n_epochs=30, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--channels", type=lambda v: [int(c) for c in comma_list(v)], default=None,
                        help="widths of the down-sampling levels, each halving the length (default: 32,64)")
    parser.add_argument("--num_res_layers", type=positive_int, default=None,
                        help="residual layers per stack (default: 2)")
    parser.add_argument("--embedding_dim", type=positive_int, default=None, help="latent channels (default: 16)")
    parser.add_argument("--num_embeddings", type=positive_int, default=None, help="codebook size (default: 256)")
    parser.add_argument("--commitment_cost", type=float, default=None, help="commitment loss weight (default: 0.25)")
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    train_autoencoding_model(options_from(TrainingJob, args), options_from(VQVAESizes, args), VQVAETrainer, "vqvae",
                             config_name="vqvae_config.json")


if __name__ == "__main__":
    run_main(main)
