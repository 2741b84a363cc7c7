# Two commands for a newcomer:  `make demo` (the whole job on synthetic RF data) and `make test`.
# Both create .venv and install what they need. Override the PyTorch wheel with e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Demo settings: small enough for 5 minutes on a 2-core CPU (see README, "What the demo does").
DEMO ?= demo_out
DATA := $(DEMO)/data
SET := $(DATA)/processed/interferenceset_frame
IN_FAMILY ?= QPSK
OUT_FAMILIES ?= QAM16 OFDM Chirp GMSK FM
DEMO_EPOCHS ?= 60
DEMO2D_EPOCHS ?= 60
DEMO3D_EPOCHS ?= 30
DEMO3D_LDM_EPOCHS ?= 150
# One network call per start point from all 99 start points: as good as full PLMS on the demo and on a
# selection draw at 1/51 of its calls (docs/benchmarks.md); the paper's PLMS: "--inference_skip_factor=16".
DEMO_RECONSTRUCTION ?= --reconstruction_mode=onestep --inference_skip_factor=1
comma := ,
empty :=
space := $(empty) $(empty)
OUT_FILES := $(subst $(space),$(comma),$(foreach f,$(OUT_FAMILIES),$(SET)/$(f)_raw_data_test.h5))
DEMO_FAMILIES := $(subst $(space),$(comma),$(IN_FAMILY) $(OUT_FAMILIES))

RUNS := $(DEMO)/runs
TRAIN_FLAGS = --output_dir=$(RUNS) --training_h5file=$(SET)/$(IN_FAMILY)_raw_data_train.h5 \
	--validation_h5file=$(SET)/$(IN_FAMILY)_raw_data_val.h5 --batch_size=64
RECONSTRUCT_FLAGS = --output_dir=$(RUNS) --validation_h5file=$(SET)/$(IN_FAMILY)_raw_data_val.h5 \
	--in_ids=$(SET)/$(IN_FAMILY)_raw_data_test.h5 --out_ids=$(OUT_FILES) \
	--num_inference_steps=100 $(DEMO_RECONSTRUCTION) --first_n=64 --first_n_val=64 --batch_size=64
COMPARED := unet_small_$(IN_FAMILY),wavenet_$(IN_FAMILY),ldm_$(IN_FAMILY),autoencoder_$(IN_FAMILY),features_$(IN_FAMILY)

.PHONY: install data demo demo-snr compare bench-scores bench-selection bench-hard demo-2d demo-3d test lint clean-demo

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m src.data.synthetic --out $(DATA)/raw --n_frames 128 --frame_length 2048 --snr_db 20 --seed 0 \
		--families $(DEMO_FAMILIES)
	$(PY) src/data/signal_trim_and_unpack.py --data_root=$(DATA)/raw --new_data_root=$(DATA)/processed \
		--trim_length=256 --val_split=0.2 --test_split=0.2 --normalize=rms --seed=0

demo: data
	$(PY) train_ddpm.py $(TRAIN_FLAGS) --model_name=unet_small_$(IN_FAMILY) --model_type=small \
		--n_epochs=$(DEMO_EPOCHS) --quick_test=0 --figures=0
	$(PY) reconstruct.py $(RECONSTRUCT_FLAGS) --model_name=unet_small_$(IN_FAMILY)
	$(PY) ood_detection.py --output_dir=$(RUNS) --model_name=unet_small_$(IN_FAMILY)

# Every model family on the demo data, one table (README, "Comparing model families"); ~20 minutes on 2 cores.
# Each run is a file target, so compare and bench-scores share what the other already trained.
UNET := $(RUNS)/unet_small_$(IN_FAMILY)/checkpoint.pth
WAVENET := $(RUNS)/wavenet_$(IN_FAMILY)/checkpoint.pth
AUTOENCODER := $(RUNS)/autoencoder_$(IN_FAMILY)/checkpoint.pth
VQVAE := $(RUNS)/vqvae_$(IN_FAMILY)/checkpoint.pth
FEATURES := $(RUNS)/features_$(IN_FAMILY)/checkpoint.pth
LDM := $(RUNS)/ldm_$(IN_FAMILY)/checkpoint.pth
LAST_OUT := $(lastword $(OUT_FAMILIES))
reconstructed = $(RUNS)/$(1)/ood/results_$(LAST_OUT).csv

$(UNET): | data
	$(PY) train_ddpm.py $(TRAIN_FLAGS) --model_name=unet_small_$(IN_FAMILY) --model_type=small --n_epochs=$(DEMO_EPOCHS)
$(WAVENET): | data
	$(PY) train_ddpm.py $(TRAIN_FLAGS) --model_name=wavenet_$(IN_FAMILY) --model_type=wavenet \
		--residual_layers=12 --residual_channels=32 --n_epochs=$(DEMO_EPOCHS)
$(AUTOENCODER): | data
	$(PY) train_autoencoder.py $(TRAIN_FLAGS) --model_name=autoencoder_$(IN_FAMILY) --n_epochs=$(DEMO_EPOCHS)
$(VQVAE): | data
	$(PY) train_vqvae.py $(TRAIN_FLAGS) --model_name=vqvae_$(IN_FAMILY) --n_epochs=$(DEMO_EPOCHS)
$(FEATURES): | data
	$(PY) train_features.py --output_dir=$(RUNS) --training_h5file=$(SET)/$(IN_FAMILY)_raw_data_train.h5 \
		--validation_h5file=$(SET)/$(IN_FAMILY)_raw_data_val.h5 --model_name=features_$(IN_FAMILY)
$(LDM): $(VQVAE)
	$(PY) train_ddpm.py $(TRAIN_FLAGS) --model_name=ldm_$(IN_FAMILY) --model_type=small \
		--vqvae_checkpoint=$(VQVAE) --n_epochs=$(DEMO_EPOCHS)
$(RUNS)/%/ood/results_$(LAST_OUT).csv: $(RUNS)/%/checkpoint.pth
	$(PY) reconstruct.py $(RECONSTRUCT_FLAGS) --model_name=$*

compare: demo $(call reconstructed,wavenet_$(IN_FAMILY)) $(call reconstructed,ldm_$(IN_FAMILY)) \
		$(call reconstructed,autoencoder_$(IN_FAMILY)) $(call reconstructed,features_$(IN_FAMILY))
	$(PY) ood_detection.py --output_dir=$(RUNS) --model_name=$(COMPARED)

# Every OOD score on the UNet, WaveNet and autoencoder runs (README, "Choosing the OOD score").
bench-scores: $(call reconstructed,unet_small_$(IN_FAMILY)) $(call reconstructed,wavenet_$(IN_FAMILY)) $(call reconstructed,autoencoder_$(IN_FAMILY))
	$(PY) -m benchmarks.bench_scores --output_dir=$(RUNS) \
		--model_name=unet_small_$(IN_FAMILY),wavenet_$(IN_FAMILY),autoencoder_$(IN_FAMILY)

# Detection against SNR (docs/usage.md, "Detection against SNR"): a UNet trained on the SNR data's own train split
# (each frame's SNR drawn from 0 to 20 dB; front end at its default, auto), one-step reconstruction as the demo, then
# AUROC per 5 dB bin against the observation length K (benchmarks/bench_snr.py); ~45 min on 2 shared cores. Frames of
# 4096 samples hold 16 windows, so K goes to 16; 320 frames per family give 64 test frames a family, at least 10 in
# every 5 dB bin. Its own data and run folder, so nothing mixes with the demo's.
SNR_DATA := $(DEMO)/data_snr
SNR_SET := $(SNR_DATA)/processed/interferenceset_frame
SNR_RUN := unet_small_$(IN_FAMILY)_snr
SNR_EPOCHS ?= 40
SNR_K ?= 1,2,4,8,16
SNR_PREPARED := $(SNR_DATA)/.prepared
SNR_MODEL := $(RUNS)/$(SNR_RUN)/checkpoint.pth
SNR_RESULTS := $(RUNS)/$(SNR_RUN)/ood/results_$(LAST_OUT).csv
SNR_OUT_FILES := $(subst $(space),$(comma),$(foreach f,$(OUT_FAMILIES),$(SNR_SET)/$(f)_raw_data_test.h5))

$(SNR_PREPARED): | $(STAMP)
	$(PY) -m src.data.synthetic --out $(SNR_DATA)/raw --n_frames 320 --frame_length 4096 --snr_db 0:20 --seed 1 \
		--families $(DEMO_FAMILIES)
	$(PY) src/data/signal_trim_and_unpack.py --data_root=$(SNR_DATA)/raw --new_data_root=$(SNR_DATA)/processed \
		--trim_length=256 --val_split=0.2 --test_split=0.2 --normalize=rms --seed=0
	touch $@
$(SNR_MODEL): $(SNR_PREPARED)
	$(PY) train_ddpm.py --output_dir=$(RUNS) --model_name=$(SNR_RUN) --model_type=small \
		--training_h5file=$(SNR_SET)/$(IN_FAMILY)_raw_data_train.h5 \
		--validation_h5file=$(SNR_SET)/$(IN_FAMILY)_raw_data_val.h5 --batch_size=64 --n_epochs=$(SNR_EPOCHS) --figures=0
$(SNR_RESULTS): $(SNR_MODEL)
	$(PY) reconstruct.py --output_dir=$(RUNS) --model_name=$(SNR_RUN) \
		--validation_h5file=$(SNR_SET)/$(IN_FAMILY)_raw_data_val.h5 --in_ids=$(SNR_SET)/$(IN_FAMILY)_raw_data_test.h5 \
		--out_ids=$(SNR_OUT_FILES) --num_inference_steps=100 $(DEMO_RECONSTRUCTION) --first_n=1024 \
		--first_n_val=512 --batch_size=64 --overwrite=1

demo-snr: $(SNR_RESULTS)
	$(PY) ood_detection.py --output_dir=$(RUNS) --model_name=$(SNR_RUN)
	$(PY) -m benchmarks.bench_snr --output_dir=$(RUNS) --model_name=$(SNR_RUN) --integrate=$(SNR_K)

# The defaults (score, front end) chosen on synthetic draws that share nothing with the reported data (docs/benchmarks.md).
bench-selection: $(STAMP)
	$(PY) -m benchmarks.bench_selection --work_dir=$(DEMO)/selection

# The reported benchmarks (data that chose nothing): hard (QPSK's near neighbours, offset, 5-20 dB), qam (16-QAM's
# neighbours) and the demo's physics; every model family and the baselines, front end off and auto (hours on 2 cores).
bench-hard: $(STAMP)
	$(PY) -m benchmarks.bench_hard --work_dir=$(DEMO)/hard

# Images (2D): scikit-learn's digits 0-4 in; digits 5-9, inverted and flipped digits out (docs/usage.md, "Images").
DEMO2D ?= demo2d_out
SPLITS2D := $(DEMO2D)/data/data_splits
demo-2d: $(STAMP)
	$(PY) -m src.data.synthetic_images --out $(DEMO2D)/data --kinds digits --image_size 16
	$(PY) train_ddpm.py --output_dir=$(DEMO2D)/runs --model_name=unet2d_digits --model_type=small --spatial_dimension=2 \
		--training_ids=$(SPLITS2D)/Digits04_train.csv --validation_ids=$(SPLITS2D)/Digits04_val.csv \
		--channels=16,32,64 --attention_levels=0,0,0 --batch_size=32 --n_epochs=$(DEMO2D_EPOCHS)
	$(PY) reconstruct.py --output_dir=$(DEMO2D)/runs --model_name=unet2d_digits \
		--validation_ids=$(SPLITS2D)/Digits04_val.csv --in_ids=$(SPLITS2D)/Digits04_test.csv \
		--out_ids=$(SPLITS2D)/Digits59_test.csv,$(SPLITS2D)/Digits04Inverted_test.csv,$(SPLITS2D)/Digits04_test.csv_vflip \
		--num_inference_steps=100 --inference_skip_factor=16 --first_n=64 --first_n_val=64 --batch_size=64
	$(PY) ood_detection.py --output_dir=$(DEMO2D)/runs --model_name=unet2d_digits

# Volumes (3D): a VQ-VAE and a latent diffusion model, as the research code's decathlon example.
DEMO3D ?= demo3d_out
SPLITS3D := $(DEMO3D)/data/data_splits
VOLUME_FLAGS := --spatial_dimension=3 --is_grayscale=1
demo-3d: $(STAMP)
	$(PY) -m src.data.synthetic_images --out $(DEMO3D)/data --kinds volumes --volume_size 32 --n_train 48 --n_val 16 --n_test 16
	$(PY) train_vqvae.py --output_dir=$(DEMO3D)/runs --model_name=vqvae3d $(VOLUME_FLAGS) \
		--training_ids=$(SPLITS3D)/Task01_Spheres_train.csv --validation_ids=$(SPLITS3D)/Task01_Spheres_val.csv \
		--channels=16,32 --batch_size=8 --n_epochs=$(DEMO3D_EPOCHS)
	$(PY) train_ddpm.py --output_dir=$(DEMO3D)/runs --model_name=ldm3d --model_type=small $(VOLUME_FLAGS) \
		--vqvae_checkpoint=$(DEMO3D)/runs/vqvae3d/checkpoint.pth --channels=16,32 --attention_levels=0,0 \
		--training_ids=$(SPLITS3D)/Task01_Spheres_train.csv --validation_ids=$(SPLITS3D)/Task01_Spheres_val.csv \
		--batch_size=16 --n_epochs=$(DEMO3D_LDM_EPOCHS)
	$(PY) reconstruct.py --output_dir=$(DEMO3D)/runs --model_name=ldm3d $(VOLUME_FLAGS) \
		--vqvae_checkpoint=$(DEMO3D)/runs/vqvae3d/checkpoint.pth --validation_h5file=$(SPLITS3D)/Task01_Spheres_val.csv \
		--in_ids=$(SPLITS3D)/Task01_Spheres_test.csv \
		--out_ids=$(SPLITS3D)/Task02_Boxes_test.csv,$(SPLITS3D)/Task03_BigSphere_test.csv,$(SPLITS3D)/Task04_NoisySpheres_test.csv \
		--cache_data=0 --num_inference_steps=100 --inference_skip_factor=16 --batch_size=16
	$(PY) ood_detection.py --output_dir=$(DEMO3D)/runs --model_name=ldm3d

# The suite in TEST_WORKERS processes (pytest-xdist; each test file stays in one), each on one thread: two processes
# of two threads each on 2 cores spin against each other and run ~3x slower than one process alone.
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The linter (configured in ruff.toml); CI runs it before the tests. Installs its pinned version on first use.
RUFF ?= ruff==0.17.6
lint: $(STAMP)
	$(PY) -m ruff --version >/dev/null 2>&1 || $(PY) -m pip install -q "$(RUFF)"
	$(PY) -m ruff check .

clean-demo:
	rm -rf $(DEMO) $(DEMO2D) $(DEMO3D)
