"""The scripts' flags and the stages' typed options agree: every field of a stage's options is a flag of its script
(or given by the script explicitly), so a renamed flag cannot leave a field silently at its default."""
from __future__ import annotations

import dataclasses
import typing

import pytest

import ood_detection
import reconstruct
import score
import train_autoencoder
import train_ddpm
import train_features
import train_vqvae
from src.field.scoring_stage import ScoringJob
from src.ood.detection_stage import DetectionJob
from src.ood.reconstruction_stage import ReconstructionJob
from src.trainers.autoencoders import AutoencoderSizes, VQVAESizes
from src.trainers.ddpm import DiffusionJob
from src.trainers.features import FeatureJob
from src.trainers.setup import TrainingJob

REQUIRED = ["--output_dir=o", "--model_name=m", "--training_h5file=a.h5", "--validation_h5file=b.h5", "--input=x.h5"]
CASES = [  # script, its options (the dataclasses options_from builds there), the fields the script passes itself
    (train_ddpm, [DiffusionJob], set()),
    (train_vqvae, [TrainingJob, VQVAESizes], set()),
    (train_autoencoder, [TrainingJob, AutoencoderSizes], set()),
    (train_features, [FeatureJob], {"image_roi", "image_size", "is_grayscale"}),  # signals only: images keep None
    (reconstruct, [ReconstructionJob], set()),
    (ood_detection, [DetectionJob], {"model_names"}),
    (score, [ScoringJob], set()),
]


def leaf_fields(cls) -> set[str]:
    """The names of ``cls``'s fields, nested dataclasses' fields in place of the dataclass."""
    types = typing.get_type_hints(cls)
    names = set()
    for field in dataclasses.fields(cls):
        names |= leaf_fields(types[field.name]) if dataclasses.is_dataclass(types[field.name]) else {field.name}
    return names


def parsed(module) -> set[str]:
    parser = module.create_argparser()
    known = {action.option_strings[0] for action in parser._actions if action.option_strings}
    return set(vars(parser.parse_args([flag for flag in REQUIRED if flag.split("=")[0] in known])))


@pytest.mark.parametrize("module, options, given", CASES, ids=[case[0].__name__ for case in CASES])
def test_every_option_is_a_flag_of_its_script(module, options, given):
    flags = parsed(module)
    for cls in options:
        missing = leaf_fields(cls) - flags - given
        assert not missing, f"{module.__name__}: {cls.__name__} fields without a flag: {sorted(missing)}"
