# Two commands for a newcomer:  `make demo` (the whole job on synthetic RF data) and `make test`.
# Both create .venv and install what they need. Override the PyTorch wheel with e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Demo settings: small enough for ~10 minutes on a 2-core CPU (see README, "Demo").
DEMO ?= demo_out
DATA := $(DEMO)/data
SET := $(DATA)/processed/interferenceset_frame
IN_FAMILY ?= QPSK
OUT_FAMILIES ?= QAM16 OFDM Chirp GMSK FM
DEMO_EPOCHS ?= 120
comma := ,
empty :=
space := $(empty) $(empty)
OUT_FILES := $(subst $(space),$(comma),$(foreach f,$(OUT_FAMILIES),$(SET)/$(f)_raw_data_test.h5))

RUNS := $(DEMO)/runs
TRAIN_FLAGS = --output_dir=$(RUNS) --training_h5file=$(SET)/$(IN_FAMILY)_raw_data_train.h5 \
	--validation_h5file=$(SET)/$(IN_FAMILY)_raw_data_val.h5 --batch_size=64 --learning_rate=1e-3
RECONSTRUCT_FLAGS = --output_dir=$(RUNS) --validation_h5file=$(SET)/$(IN_FAMILY)_raw_data_val.h5 \
	--in_ids=$(SET)/$(IN_FAMILY)_raw_data_test.h5 --out_ids=$(OUT_FILES) \
	--num_inference_steps=100 --inference_skip_factor=16 --first_n=64 --first_n_val=64 --batch_size=64
COMPARED := unet_small_$(IN_FAMILY),wavenet_$(IN_FAMILY),ldm_$(IN_FAMILY),autoencoder_$(IN_FAMILY)

.PHONY: install data demo compare bench-scores test clean-demo

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m src.data.synthetic --out $(DATA)/raw --n_frames 128 --frame_length 2048 --snr_db 20 --seed 0
	$(PY) src/data/signal_trim_and_unpack.py --data_root=$(DATA)/raw --new_data_root=$(DATA)/processed \
		--trim_length=256 --val_split=0.2 --test_split=0.2 --normalize=rms --seed=0

demo: data
	$(PY) train_ddpm.py $(TRAIN_FLAGS) --model_name=unet_small_$(IN_FAMILY) --model_type=small \
		--n_epochs=$(DEMO_EPOCHS) --quick_test=0
	$(PY) reconstruct.py $(RECONSTRUCT_FLAGS) --model_name=unet_small_$(IN_FAMILY)
	$(PY) ood_detection.py --output_dir=$(RUNS) --model_name=unet_small_$(IN_FAMILY)

# Every model family on the demo data, one table (README, "Comparing model families"); ~20 minutes on 2 cores.
# Each run is a file target, so compare and bench-scores share what the other already trained.
UNET := $(RUNS)/unet_small_$(IN_FAMILY)/checkpoint.pth
WAVENET := $(RUNS)/wavenet_$(IN_FAMILY)/checkpoint.pth
AUTOENCODER := $(RUNS)/autoencoder_$(IN_FAMILY)/checkpoint.pth
VQVAE := $(RUNS)/vqvae_$(IN_FAMILY)/checkpoint.pth
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
$(LDM): $(VQVAE)
	$(PY) train_ddpm.py $(TRAIN_FLAGS) --model_name=ldm_$(IN_FAMILY) --model_type=small \
		--vqvae_checkpoint=$(VQVAE) --n_epochs=$(DEMO_EPOCHS)
$(RUNS)/%/ood/results_$(LAST_OUT).csv: $(RUNS)/%/checkpoint.pth
	$(PY) reconstruct.py $(RECONSTRUCT_FLAGS) --model_name=$*

compare: demo $(call reconstructed,wavenet_$(IN_FAMILY)) $(call reconstructed,ldm_$(IN_FAMILY)) \
		$(call reconstructed,autoencoder_$(IN_FAMILY))
	$(PY) ood_detection.py --output_dir=$(RUNS) --model_name=$(COMPARED)

# Every OOD score on the UNet, WaveNet and autoencoder runs (README, "Choosing the OOD score").
bench-scores: $(call reconstructed,unet_small_$(IN_FAMILY)) $(call reconstructed,wavenet_$(IN_FAMILY)) $(call reconstructed,autoencoder_$(IN_FAMILY))
	$(PY) benchmarks/bench_scores.py --output_dir=$(RUNS) \
		--model_name=unet_small_$(IN_FAMILY),wavenet_$(IN_FAMILY),autoencoder_$(IN_FAMILY)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf $(DEMO)
