"""--precision: what auto chooses (capability and probe mocked), that it chooses the same in every process
(a probe robust to a noisy clock, the per-machine cache), bf16 against fp32, and that the recorded precision is
the one that ran (reconstruct.py, score.py, training)."""
import json
import random

import pytest
import torch

import src.runtime as runtime
from conftest import make_processed, run_inline
from src.networks import build_model, network_config
from src.ood.reconstructors import reconstruction_precision, scoring_precision
from src.runtime import WithPrecision, choose_precision

CPU = torch.device("cpu")
NATIVE = {"avx512_bf16": True, "amx": False, "onednn_bf16": True}
EMULATED = {"avx512_bf16": False, "amx": False, "onednn_bf16": True}
BF16_TOLERANCE = 2e-2  # relative output deviation: bf16 keeps 8 bits of mantissa (~4e-3 a rounding)
TINY = {"unet": network_config("small", channels=[8, 16]),
        "wavenet": network_config("wavenet", residual_layers=3, residual_channels=8)}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test keeps auto's per-machine cache in its own folder, never in the real home."""
    monkeypatch.setenv(runtime.CACHE_DIR_VARIABLE, str(tmp_path / "cache"))
    runtime.cpu_precision_choice.cache_clear()
    yield tmp_path / "cache" / runtime.CACHE_FILE
    runtime.cpu_precision_choice.cache_clear()


@pytest.fixture
def cpu_reports(monkeypatch):
    """Set what the CPU reports and what the probe measures (None: probing fails the test)."""
    runtime.cpu_precision_choice.cache_clear()

    def report(flags, speedup=None):
        monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda: flags)
        monkeypatch.setattr(runtime, "bf16_speedup", lambda: speedup if speedup is not None else pytest.fail("probed"))
    yield report
    runtime.cpu_precision_choice.cache_clear()


def test_native_bf16_that_measures_fast_is_chosen(cpu_reports):
    cpu_reports(NATIVE, speedup=2.0)
    choice, why = choose_precision("auto", CPU)
    assert choice == "bf16" and "avx512_bf16 yes" in why and "2.00x" in why


def test_native_bf16_that_measures_slow_stays_fp32(cpu_reports):
    cpu_reports({**NATIVE, "avx512_bf16": False, "amx": True}, speedup=runtime.BF16_MIN_SPEEDUP - 0.05)
    choice, why = choose_precision("auto", CPU)
    assert choice == "fp32" and "amx yes" in why and "1.15x" in why


def test_no_native_bf16_is_fp32_without_probing(cpu_reports):
    cpu_reports(EMULATED)
    assert choose_precision("auto", CPU)[0] == "fp32"


def test_cuda_and_explicit_precisions_do_not_probe(cpu_reports):
    cpu_reports(EMULATED)
    assert choose_precision("auto", torch.device("cuda"))[0] == "bf16"  # as before
    assert [choose_precision(p, CPU)[0] for p in ("fp32", "bf16")] == ["fp32", "bf16"]


def test_the_probe_and_flags_run_here(monkeypatch):
    assert set(runtime.cpu_bf16_flags()) == {"avx512_bf16", "amx", "onednn_bf16"}
    assert runtime.bf16_speedup((64, 32, 32), repeats=1) > 0
    threads_seen = []
    timed = runtime.time_matmul

    def noting_threads(a, b):
        threads_seen.append(torch.get_num_threads())
        return timed(a, b)
    monkeypatch.setattr(runtime, "time_matmul", noting_threads)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runtime.bf16_speedup((64, 32, 32), repeats=2)
        assert set(threads_seen) == {1} and torch.get_num_threads() == 2  # probed on one thread, then restored
    finally:
        torch.set_num_threads(before)


class NoisyClock:
    """Matmul seconds as a loaded machine reports them: the true time (fp32 1 ms, bf16 1 ms / ``ratio``) plus, on
    half the calls, a preemption of up to 1.5 ms. A single fp32/bf16 pair lands anywhere from 0.5x to 3.7x."""

    def __init__(self, ratio: float, seed: int) -> None:
        self.true = {torch.float32: 1e-3, torch.bfloat16: 1e-3 / ratio}
        self.rng = random.Random(seed)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> float:
        preempted = self.rng.random() < 0.5
        return self.true[a.dtype] + (self.rng.uniform(0, 1.5e-3) if preempted else 0.0)


@pytest.mark.parametrize("ratio, expected", [(1.5, "bf16"), (0.95, "fp32")])
def test_a_noisy_clock_around_the_threshold_gives_one_choice(monkeypatch, tmp_path, ratio, expected):
    one_pair = []
    for seed in range(40):  # the noise is real: one timed pair each would choose both ways
        monkeypatch.setattr(runtime, "time_matmul", NoisyClock(ratio, seed))
        one_pair.append(runtime.bf16_speedup((8, 8, 8), repeats=0) >= runtime.BF16_MIN_SPEEDUP)
    assert 0 < sum(one_pair) < len(one_pair)
    monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda: NATIVE)
    choices = []
    for seed in range(40):  # each call a fresh process on a fresh machine: no cache to lean on
        monkeypatch.setattr(runtime, "time_matmul", NoisyClock(ratio, seed))
        monkeypatch.setenv(runtime.CACHE_DIR_VARIABLE, str(tmp_path / f"machine{seed}"))
        runtime.cpu_precision_choice.cache_clear()
        choices.append(choose_precision("auto", CPU)[0])
    assert set(choices) == {expected}


def test_later_processes_follow_the_cached_measurement(cpu_reports, own_cache):
    cpu_reports(NATIVE, speedup=runtime.BF16_MIN_SPEEDUP + 0.05)  # a CPU near the threshold
    choice, why = choose_precision("auto", CPU)
    assert choice == "bf16" and "measured now, cached in" in why
    kept = json.loads(own_cache.read_text())["probes"]
    assert list(kept) == [runtime.probe_key(NATIVE)] and kept[runtime.probe_key(NATIVE)]["speedup"] == 1.25
    for _ in range(3):  # later processes: this time the probe would say fp32, but they do not probe
        runtime.cpu_precision_choice.cache_clear()
        cpu_reports(NATIVE, speedup=None)
        choice, why = choose_precision("auto", CPU)
        assert choice == "bf16" and "1.25x" in why and f"cached in {own_cache}" in why and "measured now" not in why


def test_the_threshold_applies_to_the_cached_ratio(cpu_reports, monkeypatch):
    cpu_reports(NATIVE, speedup=1.5)
    assert choose_precision("auto", CPU)[0] == "bf16"
    runtime.cpu_precision_choice.cache_clear()
    cpu_reports(NATIVE, speedup=None)
    monkeypatch.setattr(runtime, "BF16_MIN_SPEEDUP", 2.0)
    assert choose_precision("auto", CPU)[0] == "fp32"


@pytest.mark.parametrize("change", ["torch", "cpu"])
def test_another_key_is_measured_again(cpu_reports, own_cache, monkeypatch, change):
    cpu_reports(NATIVE, speedup=2.0)
    assert choose_precision("auto", CPU)[0] == "bf16"
    first_key = runtime.probe_key(NATIVE)
    if change == "torch":
        monkeypatch.setattr(torch, "__version__", "9.9.9+other")
    else:
        monkeypatch.setattr(runtime, "cpu_model", lambda: "Another CPU 9000")
    runtime.cpu_precision_choice.cache_clear()
    cpu_reports(NATIVE, speedup=1.1)  # this one measures slow
    choice, why = choose_precision("auto", CPU)
    assert choice == "fp32" and "1.10x" in why and "measured now" in why
    kept = json.loads(own_cache.read_text())["probes"]
    assert set(kept) == {first_key, runtime.probe_key(NATIVE)} and first_key != runtime.probe_key(NATIVE)
    assert kept[first_key]["speedup"] == 2.0  # the other machine's entry is kept


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[]", b'{"probes": []}', b"KEYED_TEXT",
                                     b"KEYED_NEGATIVE", b"KEYED_BOOL", b"KEYED_LIST"])
def test_a_corrupt_cache_file_is_measured_again(cpu_reports, own_cache, content):
    key = json.dumps(runtime.probe_key(NATIVE))
    entries = {b"KEYED_TEXT": '{"speedup": "fast"}', b"KEYED_NEGATIVE": '{"speedup": -2.0}',
               b"KEYED_BOOL": '{"speedup": true}', b"KEYED_LIST": "[2.0]"}
    if content in entries:
        content = f'{{"probes": {{{key}: {entries[content]}}}}}'.encode()
    own_cache.parent.mkdir(parents=True)
    own_cache.write_bytes(content)
    cpu_reports(NATIVE, speedup=1.1)
    choice, why = choose_precision("auto", CPU)
    assert choice == "fp32" and "measured now, cached in" in why
    assert json.loads(own_cache.read_text())["probes"][runtime.probe_key(NATIVE)]["speedup"] == 1.1


def test_an_unwritable_cache_still_chooses(cpu_reports, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(runtime.CACHE_DIR_VARIABLE, str(blocker))
    cpu_reports(NATIVE, speedup=2.0)
    choice, why = choose_precision("auto", CPU)
    assert choice == "bf16" and "measured now, not cached" in why
    assert blocker.read_text() == "not a folder" and list(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("name", sorted(TINY))
@torch.no_grad()
def test_bf16_outputs_are_within_tolerance_of_fp32(name):
    torch.manual_seed(0)
    model = build_model(TINY[name]).eval()
    for parameter in model.parameters():  # a fresh network outputs 0 (zero-initialised last layers)
        torch.nn.init.normal_(parameter, std=0.1)
    x, t = torch.randn(4, 2, 48), torch.tensor([10, 200, 500, 900])
    fp32, bf16 = WithPrecision(model, "fp32")(x, t), WithPrecision(model, "bf16")(x, t)
    assert bf16.dtype == torch.float32
    assert 0 < ((bf16 - fp32).norm() / fp32.norm()).item() < BF16_TOLERANCE


def test_recorded_precision_of_older_folders_and_scoring(cpu_reports):
    cpu_reports(NATIVE, speedup=2.0)
    assert reconstruction_precision("auto", None, "ddpm", CPU) == ("bf16", {"precision": "bf16"})
    assert reconstruction_precision("auto", {"precision": "fp32"}, "ddpm", CPU) == ("fp32", {"precision": "fp32"})
    assert reconstruction_precision("auto", {"mode": "plms"}, "ddpm", CPU) == ("fp32", {})  # ran the former auto
    assert reconstruction_precision("fp32", {"mode": "plms"}, "ddpm", CPU) == ("fp32", {})
    assert reconstruction_precision("bf16", {"mode": "plms"}, "ddpm", CPU) == ("bf16", {"precision": "bf16"})
    assert reconstruction_precision("bf16", None, "features", CPU) == ("fp32", {})  # no network
    assert scoring_precision(None, {"precision": "bf16"}, CPU) == "bf16"
    assert scoring_precision(None, {}, CPU) == "fp32" and scoring_precision(None, {}, torch.device("cuda")) == "bf16"
    assert scoring_precision("auto", {"precision": "fp32"}, CPU) == "bf16"


class Spy(torch.nn.Module):
    """A network that notes the autocast dtype of every call (float32 when autocast is off)."""
    seen: list = []

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args):
        on = torch.is_autocast_enabled("cpu")
        Spy.seen.append(torch.get_autocast_dtype("cpu") if on else torch.float32)
        return self.model(*args)


@pytest.fixture
def spied(monkeypatch, cpu_reports):
    """The CPU mocked to choose bf16; every network built for training or reconstruction is a Spy."""
    import src.ood.reconstructors as reconstructors
    import src.trainers.base as base
    cpu_reports(NATIVE, speedup=2.0)
    monkeypatch.setattr(base, "build_model", lambda network: Spy(build_model(network)))
    monkeypatch.setattr(reconstructors, "load_trained", lambda network, path, device: Spy(build_model(network)))
    Spy.seen = []
    return Spy.seen


def test_recorded_precision_is_what_ran(tmp_path, spied, cpu_reports):
    files = make_processed(tmp_path / "data")
    common = [f"--output_dir={tmp_path / 'runs'}", "--model_name=m", "--batch_size=12"]
    train = ["train_ddpm.py", *common, "--channels=8,16", "--quick_test=1", "--figures=0",
             f"--training_h5file={files['Tone_train']}", f"--validation_h5file={files['Tone_val']}"]
    assert run_inline(*train, "--n_epochs=1", "--precision=auto").returncode == 0
    config_path = tmp_path / "runs" / "m" / "config.json"
    config = json.loads(config_path.read_text())
    assert config["training"] == {"precision": "bf16"} and set(spied) == {torch.bfloat16}

    del config["training"]  # a run from before --precision resumes as before
    config_path.write_text(json.dumps(config))
    spied.clear()
    assert run_inline(*train, "--n_epochs=2", "--precision=fp32").returncode == 0
    assert "training" not in json.loads(config_path.read_text()) and set(spied) == {torch.float32}

    spied.clear()
    result = run_inline("reconstruct.py", *common, f"--validation_h5file={files['Tone_val']}",
                        f"--in_ids={files['Tone_test']}", "--run_out=0", "--reconstruction_mode=onestep",
                        "--inference_skip_factor=33")
    assert result.returncode == 0 and "precision bf16 (auto on this CPU" in result.stdout
    settings = json.loads((tmp_path / "runs" / "m" / "ood" / "reconstruction.json").read_text())
    assert settings["precision"] == "bf16" and set(spied) == {torch.bfloat16}

    cpu_reports(EMULATED)  # were auto chosen again, this CPU would now give fp32
    spied.clear()
    score = ["score.py", *common, f"--input={files['Noise_test']}", "--first_n=4"]
    assert run_inline(*score).returncode == 0 and set(spied) == {torch.bfloat16}  # as the threshold was set
    spied.clear()
    assert run_inline(*score, "--precision=fp32").returncode == 0 and set(spied) == {torch.float32}
