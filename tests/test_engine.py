"""The batched engine against the plain per-start-point loops built on MONAI's schedulers."""
import pytest
import torch
from monai.networks.schedulers import DDIMScheduler

from conftest import OracleDenoiser
from src.diffusion.engine import reconstruct_batched
from src.diffusion.multistart import reconstruct, sample_noise, start_points
from src.diffusion.schedulers import build_pndm_scheduler, scheduler_config
from src.networks import build_model, network_config


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(network_config("small", channels=[8, 16])).eval()
    for parameter in model.parameters():  # a fresh UNet outputs 0; give it some behaviour
        torch.nn.init.normal_(parameter, std=0.05)
    return model


def setup(prediction_type="epsilon", skip=1, steps=100):
    config = scheduler_config("scaled_linear_beta", 0.0015, 0.0195, prediction_type, 1.0, 1.0)
    scheduler = build_pndm_scheduler(config, steps)
    starts = start_points(scheduler, skip)
    x0 = torch.randn(3, 2, 24, generator=torch.Generator().manual_seed(1))
    return config, scheduler, starts, x0, sample_noise(torch.arange(3), len(starts), (2, 24), seed=0)


def close(a, b):
    return (a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max())


@pytest.mark.parametrize("prediction_type, skip, steps", [("epsilon", 1, 40), ("v_prediction", 3, 100),
                                                          ("epsilon", 16, 100), ("v_prediction", 64, 100)])
def test_engine_reproduces_the_monai_plms_loop(prediction_type, skip, steps):
    _, scheduler, starts, x0, noise = setup(prediction_type, skip, steps)
    model = tiny_model()
    plain = reconstruct(model, scheduler, x0, starts, noise, b_scale=2.0)
    batched = reconstruct_batched(model, scheduler, x0, starts, noise, b_scale=2.0, max_chains=256)
    assert close(batched, plain)


def test_engine_with_coarse_steps_and_any_chunking():
    _, scheduler, starts, x0, noise = setup(skip=4, steps=25)
    model = tiny_model()
    plain = reconstruct(model, scheduler, x0, starts, noise)
    assert close(reconstruct_batched(model, scheduler, x0, starts, noise, max_chains=2), plain)
    assert close(reconstruct_batched(model, scheduler, x0, starts, noise, max_chains=10_000), plain)


def test_ddim_mode_reproduces_monai_ddim_steps():
    config, scheduler, starts, x0, noise = setup(skip=8)
    model = tiny_model()
    ddim = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                         beta_end=0.0195, clip_sample=False, set_alpha_to_one=False)
    ddim.set_timesteps(100)  # MONAI's DDIM grid is 999, 989, ...: step it over the PLMS grid 990, 980, ... instead
    expected = []
    with torch.no_grad():
        for start, start_noise in zip(starts, noise):
            x = ddim.add_noise(x0, start_noise, torch.full((3,), start))
            for t in scheduler.timesteps[scheduler.timesteps <= start]:
                x, _ = ddim.step(model(x, t.expand(3)), int(t), x)
            expected.append(x)
    assert close(reconstruct_batched(model, scheduler, x0, starts, noise, mode="ddim"), torch.stack(expected))


def test_onestep_with_an_ideal_denoiser_is_exact():
    _, scheduler, starts, x0, noise = setup(skip=4)
    oracle = OracleDenoiser(x0, scheduler.alphas_cumprod)
    recon = reconstruct_batched(oracle, scheduler, x0, starts, noise, mode="onestep")
    assert recon.shape == (len(starts), *x0.shape)
    assert (recon - x0).abs().max() < 1e-3


class LinearEpsilon(torch.nn.Module):
    """eps(x, t) = c x: a model whose DDIM path is easy to follow by hand."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c, self.calls = c, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), sorted(set(t.tolist()))))
        return self.c * x


def test_path_mode_follows_the_ddim_inversion_by_hand_one_call_per_start_point():
    _, scheduler, _, x0, noise = setup()
    starts = [10, 410, 810]
    model, c = LinearEpsilon(0.3), 0.3
    path = reconstruct_batched(model, scheduler, x0, starts, noise[:3], b_scale=2.0, mode="path")
    a = [float(scheduler.alphas_cumprod[t]) ** 0.5 for t in starts]  # sqrt(abar_t)
    s = [(1 - float(scheduler.alphas_cumprod[t])) ** 0.5 for t in starts]  # sqrt(1 - abar_t)
    x, expected = 2.0 * x0, []  # the path starts at the scaled signal itself, no noise
    for k in range(3):
        if k:
            x = a[k] * expected[-1] * 2.0 + s[k] * c * x  # DDIM step up with the last call's epsilon
        expected.append((x - s[k] * c * x) / a[k] / 2.0)  # the x0 prediction at t_k, unscaled
    assert close(path, torch.stack(expected))
    assert model.calls == [(3, [10]), (3, [410]), (3, [810])]
    other_noise = reconstruct_batched(model, scheduler, x0, starts, torch.randn_like(noise[:3]), b_scale=2.0,
                                      mode="path")
    assert torch.equal(other_noise, path)  # deterministic: the noise draw plays no part


def test_path_mode_of_an_ideal_denoiser_predicts_what_it_learned_at_every_start_point():
    _, scheduler, starts, x0, noise = setup(skip=4)
    learned = torch.randn_like(x0)
    path = reconstruct_batched(OracleDenoiser(learned, scheduler.alphas_cumprod), scheduler, x0, starts, noise,
                               mode="path")
    assert path.shape == (len(starts), *x0.shape)
    assert (path - learned).abs().max() < 1e-3  # a signal it never saw is explained by what it learned
    same = reconstruct_batched(OracleDenoiser(x0, scheduler.alphas_cumprod), scheduler, x0, starts, noise, mode="path")
    assert (same - x0).abs().max() < 1e-3


def research_loop(model, config, x0, starts, noise):
    """The research code's reconstruction loop, restated: one scheduler per batch, set_timesteps once,
    every start point's chain (ascending t) stepped through that same scheduler."""
    scheduler = build_pndm_scheduler(config, 100)
    scheduler.set_timesteps(100)
    results = []
    for t_start, start_noise in zip(starts, noise):
        sample = scheduler.add_noise(x0, start_noise, torch.full((len(x0),), t_start, dtype=torch.long))
        for step in scheduler.timesteps[scheduler.timesteps <= t_start]:
            output = model(sample, torch.full((len(x0),), int(step), dtype=torch.long))
            sample, _ = scheduler.step(output, int(step), sample)
        results.append(sample)
    return torch.stack(results)


@torch.no_grad()
def test_plms_history_reset_per_chain_by_default_and_carried_over_on_request():
    config, scheduler, starts, x0, noise = setup(skip=16)
    model = tiny_model()
    research = research_loop(model, config, x0, starts, noise)
    carried = reconstruct(model, scheduler, x0, starts, noise, reset_history=False)
    assert close(carried, research)  # --plms_history=carry is the research code's loop
    engine = reconstruct_batched(model, scheduler, x0, starts, noise, max_chains=256)
    fresh = torch.stack([reconstruct(model, build_pndm_scheduler(config, 100), x0, [s], n[None])[0]
                         for s, n in zip(starts, noise)])
    assert close(engine, fresh)  # the default: each chain with a scheduler of its own
    assert close(engine[0], research[0])  # the first chain has no history to inherit either way
    assert not close(engine[1:], research[1:])  # every later chain differs


@torch.no_grad()
def test_bf16_precision_runs_the_network_in_bf16_and_keeps_the_scheduler_in_float32():
    from src.runtime import WithPrecision
    _, scheduler, starts, x0, noise = setup(skip=16)
    model = tiny_model()
    fp32 = reconstruct_batched(model, scheduler, x0, starts, noise, max_chains=256)
    bf16 = reconstruct_batched(WithPrecision(model, "bf16"), scheduler, x0, starts, noise, max_chains=256)
    assert bf16.dtype == torch.float32
    relative = ((bf16 - fp32).norm() / fp32.norm()).item()
    assert 0 < relative < 2e-2  # bf16 keeps 8 bits of mantissa: different, but close
    forced = reconstruct_batched(WithPrecision(model, "fp32"), scheduler, x0, starts, noise, max_chains=256)
    assert torch.equal(forced, fp32)
