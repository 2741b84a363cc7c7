import pytest
import torch

from src.errors import UserError
from src.networks import UNET_PRESETS, build_model, network_config


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised output layers make a fresh UNet output 0; give every weight a value."""
    torch.manual_seed(0)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    return model.eval()


@pytest.mark.parametrize("length", [1, 7, 33, 100, 257])
def test_output_shape_equals_input_shape_for_odd_lengths(length):
    model = build_model(network_config("small"))
    x = torch.randn(3, 2, length)
    assert model(x, torch.tensor([0, 500, 999])).shape == x.shape


@pytest.mark.parametrize("model_type", sorted(UNET_PRESETS))
def test_every_preset_builds_and_runs(model_type):
    model = build_model(network_config(model_type))
    x = torch.randn(1, 2, 37)
    assert model(x, torch.tensor([3])).shape == x.shape


def test_output_depends_on_timestep():
    model = randomised(build_model(network_config("small", channels=[8, 16], attention_levels=[False, True])))
    x = torch.randn(2, 2, 40)
    with torch.no_grad():
        early, late = model(x, torch.tensor([10, 10])), model(x, torch.tensor([900, 900]))
    assert (early - late).abs().max() > 1e-3 * early.abs().max()
    assert not torch.allclose(early, late)


def test_output_depends_on_whole_signal_through_attention():
    """A change at the first sample reaches the last output sample only through attention/down-sampling."""
    model = randomised(build_model(network_config("medium", channels=[8, 16, 32])))
    x = torch.randn(1, 2, 64)
    y = x.clone()
    y[..., 0] += 1.0
    with torch.no_grad():
        assert (model(x, torch.tensor([5]))[..., -1] - model(y, torch.tensor([5]))[..., -1]).abs().max() > 1e-6


def test_unknown_model_type_and_bad_sizes_are_user_errors():
    with pytest.raises(UserError, match="unknown --model_type"):
        network_config("huge")
    with pytest.raises(UserError, match="attention_levels"):
        network_config("small", channels=[8, 16], attention_levels=[True])


@pytest.mark.parametrize("length", [1, 7, 100])
def test_wavenet_and_autoencoder_keep_the_shape(length):
    x = torch.randn(2, 2, length)
    for model_type in ("wavenet", "autoencoder"):
        model = build_model(network_config(model_type))
        assert model(x, torch.tensor([1, 2])).shape == x.shape, model_type


def test_wavenet_output_depends_on_timestep_in_every_layer():
    model = randomised(build_model(network_config("wavenet", residual_layers=3, residual_channels=8)))
    x = torch.randn(2, 2, 40)
    with torch.no_grad():
        early, late = model(x, torch.tensor([10, 10])), model(x, torch.tensor([900, 900]))
    assert not torch.allclose(early, late, atol=1e-4)
    for layer in model.layers:  # every layer has its own projection of the step embedding
        assert layer.step_projection.weight.shape == (8, 512)


def test_latent_unet_takes_the_vqvae_channels():
    model = build_model(network_config("small", in_channels=16))
    z = torch.randn(2, 16, 25)
    assert model(z, torch.tensor([3, 4])).shape == z.shape


def test_size_flags_of_another_family_are_refused():
    with pytest.raises(UserError, match="--residual_layers does not apply"):
        network_config("small", residual_layers=4)


def test_both_ways_of_attention_are_the_attention_written_out_by_hand():
    """Random weights (the output projection is zero at init, which would hide the attention); the reference is
    attention written out here in float64. The time-major way (fp32, with and without gradients) and the matmul
    way agree with it to float32 rounding; under CPU bf16 autocast the block takes the matmul way, within bf16's
    rounding."""
    from unittest import mock

    from src.networks.unet import SelfAttention

    torch.manual_seed(0)
    block = SelfAttention(64, 8, 32)
    for parameter in block.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    x = torch.randn(5, 64, 40)
    with torch.no_grad():
        normed = block.norm(x).double()
        qkv = torch.einsum("oc,bcl->bol", block.qkv.weight.squeeze(-1).double(), normed)
        qkv = qkv + block.qkv.bias.double()[None, :, None]
        q, k, v = qkv.reshape(5, 3, 2, 32, 40).unbind(1)  # [B, heads, 32, L]
        weights = torch.softmax(torch.einsum("bhci,bhcj->bhij", q, k) / 32 ** 0.5, dim=-1)
        mixed = torch.einsum("bhij,bhcj->bhci", weights, v).reshape(5, 64, 40)
        expected = x.double() + torch.einsum("oc,bcl->bol", block.proj.weight.squeeze(-1).double(), mixed) + \
            block.proj.bias.double()[None, :, None]
    contribution = (expected - x.double()).norm()
    assert contribution > 0.1 * x.norm()

    def error(output: torch.Tensor) -> float:
        return float((output.detach().double() - expected).norm() / contribution)

    with mock.patch.object(SelfAttention, "by_matmul", autospec=True, side_effect=SelfAttention.by_matmul) as spy:
        with torch.no_grad():
            assert error(block(x)) < 1e-6
        assert error(block(x)) < 1e-6  # with gradients, as in training
        assert spy.call_count == 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert error(block(x)) < 1e-2
        assert spy.call_count == 1
    with torch.no_grad():
        assert error(block.by_matmul(x)) < 1e-6
