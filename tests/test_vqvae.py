import math

import pytest
import torch
import torch.nn.functional as F

from src.networks.vqvae import VQVAE1D, EMAQuantizer, codebook_usage

TINY = dict(channels=(8, 16), embedding_dim=4, num_embeddings=16)


def tiny_model(seed: int = 0, **overrides) -> VQVAE1D:
    torch.manual_seed(seed)
    return VQVAE1D(**{**TINY, **overrides})


def sinusoids(batch: int = 8, length: int = 64) -> torch.Tensor:
    """Unit-power complex tones [batch, 2, length] with assorted frequencies and phases."""
    n = torch.arange(length, dtype=torch.float32)
    freqs = torch.linspace(0.05, 0.35, batch)[:, None]
    phases = torch.linspace(0.0, 5.0, batch)[:, None]
    return torch.stack([torch.cos(freqs * n + phases), torch.sin(freqs * n + phases)], dim=1)


def set_codebook(quantizer: EMAQuantizer, codebook: list, cluster_size: list | None = None) -> None:
    """Write a codebook and consistent EMA statistics (embed_sum = embedding * cluster_size)."""
    embedding = torch.tensor(codebook, dtype=torch.float32)
    sizes = torch.ones(len(codebook)) if cluster_size is None else torch.tensor(cluster_size, dtype=torch.float32)
    quantizer.embedding.copy_(embedding)
    quantizer.cluster_size.copy_(sizes)
    quantizer.embed_sum.copy_(embedding * sizes[:, None])


def as_latents(points: list, batch: int) -> torch.Tensor:
    """Rows of ``points`` (ordered batch-major, then position) as z_e [batch, D, len(points) // batch]."""
    flat = torch.tensor(points, dtype=torch.float32)
    return flat.reshape(batch, -1, flat.shape[1]).permute(0, 2, 1).contiguous()


def gap_to_nearest(codes: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """For each code [K, D], the largest coordinate difference to its closest row of vectors [N, D]."""
    return (codes[:, None] - vectors[None]).abs().amax(dim=-1).amin(dim=1)


def buffers(module: torch.nn.Module) -> dict:
    return {name: tensor.clone() for name, tensor in module.named_buffers()}


@pytest.mark.parametrize("length", [1, 7, 33, 100, 257])
def test_forward_keeps_shape_and_latents_have_ceil_length(length):
    model = tiny_model()
    x = torch.randn(3, 2, length)
    recon, loss, codes = model(x)
    latent_length = math.ceil(length / 4)
    assert model.downsampling == 4
    assert recon.shape == x.shape
    assert loss.shape == ()
    assert codes.shape == (3, latent_length) and codes.dtype == torch.long
    assert model.encode(x).shape == (3, 4, latent_length)


@pytest.mark.parametrize("length", [5, 64])
def test_decode_of_quantized_latents_restores_shape(length):
    model = tiny_model().eval()
    x = torch.randn(2, 2, length)
    z_q = model.encode_quantized(x)
    assert z_q.shape == (2, 4, math.ceil(length / 4))
    assert model.decode(z_q, length=length).shape == x.shape
    assert model.decode(z_q).shape == (2, 2, 4 * math.ceil(length / 4))


def test_downsampling_is_two_to_the_number_of_levels():
    model = tiny_model(channels=(8, 8, 16))
    assert model.downsampling == 8
    assert model.encode(torch.randn(1, 2, 17)).shape == (1, 4, 3)


def test_codebook_usage_on_hand_made_codes():
    assert codebook_usage(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx((2.0, 0.5))
    assert codebook_usage(torch.full((2, 5), 3), 8) == pytest.approx((1.0, 1 / 8))
    assert codebook_usage(torch.arange(8).repeat(3).reshape(4, 6), 8) == pytest.approx((8.0, 1.0))
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert codebook_usage(torch.tensor([[2, 2], [2, 0]]), 5) == pytest.approx((expected, 2 / 5))
    with pytest.raises(ValueError):
        codebook_usage(torch.tensor([0, 4]), 4)


def test_quantize_picks_nearest_code_and_eval_leaves_buffers_alone():
    quantizer = EMAQuantizer(num_embeddings=4, embedding_dim=2, commitment_cost=0.5).eval()
    set_codebook(quantizer, [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    points = [[-5.0, 1.0], [0.4, 0.2], [0.6, -0.1], [1.49, 0.3], [2.51, 0.0], [10.0, -2.0]]
    expected_codes = [0, 0, 1, 1, 3, 3]
    z_e = as_latents(points, batch=2)
    before = buffers(quantizer)

    z_q, loss, codes = quantizer(z_e)

    assert codes.tolist() == [expected_codes[:3], expected_codes[3:]]
    expected_z_q = as_latents([[float(k), 0.0] for k in expected_codes], batch=2)
    assert torch.equal(z_q, expected_z_q)
    squared = sum((p[0] - k) ** 2 + p[1] ** 2 for p, k in zip(points, expected_codes))
    assert loss.item() == pytest.approx(0.5 * squared / (2 * len(points)))
    for name, tensor in buffers(quantizer).items():
        assert torch.equal(tensor, before[name]), name


def test_ema_step_moves_used_code_toward_mean_of_its_vectors():
    d, eps = 0.9, 1e-5
    quantizer = EMAQuantizer(num_embeddings=2, embedding_dim=2, decay=d, dead_code_threshold=0.0).train()
    set_codebook(quantizer, [[-1.0, 0.5], [10.0, 10.0]])
    points = [[1.0, 0.0], [0.0, 2.0], [2.0, 1.0]]  # all nearest code 0; mean (1, 1)

    _, _, codes = quantizer(as_latents(points, batch=1))

    assert codes.tolist() == [[0, 0, 0]]
    n0, n1 = d * 1 + (1 - d) * 3, d * 1
    m0 = [d * -1.0 + (1 - d) * 3.0, d * 0.5 + (1 - d) * 3.0]
    m1 = [d * 10.0, d * 10.0]
    total = n0 + n1
    s0, s1 = ((n + eps) / (total + 2 * eps) * total for n in (n0, n1))
    assert quantizer.cluster_size.tolist() == pytest.approx([n0, n1])
    assert quantizer.embed_sum.tolist() == [pytest.approx(m0), pytest.approx(m1)]
    new = quantizer.embedding
    assert new[0].tolist() == pytest.approx([m0[0] / s0, m0[1] / s0])
    assert new[1].tolist() == pytest.approx([m1[0] / s1, m1[1] / s1])
    old_gap = torch.tensor([-1.0, 0.5]) - 1.0
    assert (new[0] - 1.0).norm() < old_gap.norm()  # closer to the mean (1, 1) than before
    assert new[1].tolist() == pytest.approx([10.0, 10.0], abs=1e-3)  # unused code stays put


def test_dead_codes_restart_at_encoder_outputs():
    model = tiny_model().train()
    quantizer = model.quantizer
    quantizer.embedding.copy_(1000.0 + torch.randn(16, 4))  # far from every encoder output
    quantizer.cluster_size.zero_()  # stale: even the one code that gets used stays below 1
    quantizer.embed_sum.zero_()
    x = sinusoids(batch=4, length=64)
    z_e = model.encode(x).detach().permute(0, 2, 1).reshape(-1, 4)

    torch.manual_seed(1)
    model(x)

    assert gap_to_nearest(quantizer.embedding, z_e).max() < 1e-6  # every code is some z_e vector
    assert torch.all(quantizer.cluster_size == 1.0)
    assert torch.allclose(quantizer.embed_sum, quantizer.embedding)
    restarted = quantizer.embedding.clone()
    model.quantizer.embedding.copy_(1000.0 + torch.randn(16, 4))
    quantizer.cluster_size.zero_()
    quantizer.embed_sum.zero_()
    torch.manual_seed(1)
    model(x)
    assert torch.equal(quantizer.embedding, restarted)  # deterministic under manual_seed


def test_only_codes_below_threshold_restart():
    quantizer = EMAQuantizer(num_embeddings=3, embedding_dim=2, decay=0.5, dead_code_threshold=1.0).train()
    set_codebook(quantizer, [[0.0, 0.0], [50.0, 50.0], [-50.0, 50.0]], cluster_size=[4.0, 4.0, 1.0])
    points = [[0.1, 0.0], [0.0, 0.1], [-0.1, 0.0], [0.0, -0.1]]

    quantizer(as_latents(points, batch=2))

    # code 0: used 4 times; code 1: unused but N = 0.5 * 4 = 2 >= 1; code 2: N = 0.5 < 1 -> restarted
    assert quantizer.embedding[0].norm() < 0.1
    assert quantizer.embedding[1].tolist() == pytest.approx([50.0, 50.0], rel=1e-3)
    assert gap_to_nearest(quantizer.embedding[2:], torch.tensor(points)).max() < 1e-6
    assert quantizer.cluster_size.tolist() == pytest.approx([4.0, 2.0, 1.0])


def test_quantizer_works_in_float32_under_autocast():
    quantizer = EMAQuantizer(num_embeddings=4, embedding_dim=2).eval()
    set_codebook(quantizer, [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    z_e = as_latents([[0.3, 0.0], [1.8, 0.1], [2.9, 0.0], [1.2, 0.0]], batch=2).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_q, loss, codes = quantizer(z_e)
    assert z_q.dtype == torch.float32 and loss.dtype == torch.float32
    assert codes.tolist() == [[0, 2], [3, 1]]


def test_straight_through_gradient_reaches_encoder():
    model = tiny_model().train()
    x = sinusoids(batch=2, length=32)
    recon, _, _ = model(x)
    F.mse_loss(recon, x).backward()  # reconstruction only: reaches the encoder only via straight-through
    grad = model.encoder[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(not tensor.requires_grad for tensor in model.quantizer.buffers())


def test_short_training_reduces_reconstruction_error_fivefold():
    model = tiny_model(seed=0)
    x = sinusoids(batch=8, length=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def eval_mse() -> float:
        model.eval()
        with torch.no_grad():
            mse = F.mse_loss(model(x)[0], x).item()
        model.train()
        return mse

    start = eval_mse()
    for _ in range(150):
        recon, commitment, _ = model(x)
        loss = F.mse_loss(recon, x) + commitment
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_mse() < start / 5


def test_state_dict_round_trip_gives_identical_outputs():
    model = tiny_model(seed=0).train()
    x = sinusoids(batch=4, length=40)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        recon, commitment, _ = model(x)
        optimizer.zero_grad()
        (F.mse_loss(recon, x) + commitment).backward()
        optimizer.step()
    state = model.state_dict()
    assert {"quantizer.embedding", "quantizer.cluster_size", "quantizer.embed_sum"} <= set(state)
    assert all(isinstance(value, torch.Tensor) for value in state.values())

    fresh = tiny_model(seed=123)
    assert not torch.equal(fresh.quantizer.embedding, model.quantizer.embedding)
    fresh.load_state_dict(state)
    model.eval(), fresh.eval()
    with torch.no_grad():
        for ours, theirs in zip(model(x), fresh(x)):
            assert torch.equal(ours, theirs)
