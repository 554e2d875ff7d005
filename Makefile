# audioe2e — developer entry points. `make run` and `make test` are the two set-up commands.
PY ?= python3
PIP = $(PY) -m pip
OUT ?= out

.PHONY: setup run test bench corpus ablation-tiny ablation-separator clean

# torch==2.13.0 is the CPU wheel; installed first so the package's range (torch>=2.1) is
# already satisfied and pip never pulls a multi-GB CUDA build. A CUDA torch already
# installed by the user is left alone.
setup:
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,metrics]"

run: setup
	mkdir -p $(OUT)
	$(PY) -m audioe2e separate examples/mix.wav -o $(OUT) -f
	$(PY) -m audioe2e enhance --tiny examples/noisy.wav -o $(OUT)/noisy_tiny.wav -f
	$(PY) -m audioe2e enhance examples/noisy.wav -o $(OUT)/noisy_enhanced.wav -f
	$(PY) -m audioe2e encode examples/noisy.wav -o $(OUT)/noisy.ae2 --bitrate 3 -f
	$(PY) -m audioe2e decode $(OUT)/noisy.ae2 -o $(OUT)/noisy_decoded.wav -f
	$(PY) -m audioe2e info $(OUT)/noisy.ae2
	@echo "outputs in $(OUT)/"

# One pytest-xdist worker per core (tests/conftest.py keeps each to one thread).
test: setup
	$(PY) -m pytest -q -n auto --dist worksteal

bench: setup
	$(PIP) install -q -e ".[bench]"
	@# the codec peers (Opus, Codec 2) are Debian tools: installed when root, else their rows say so
	@command -v opusenc >/dev/null && command -v c2enc >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends opus-tools codec2 >/dev/null; } || \
		echo "opus-tools/codec2 not installed: apt-get install opus-tools codec2"
	$(PY) -m audioe2e.bench.run --out $(OUT)/bench --quick

corpus: setup
	$(PIP) install -q -e ".[corpus]"
	$(PY) -m audioe2e corpus build --out corpus

# `make train-separator`, `make train-enhancer`, `make train-codec`, … : one background
# process on one core, resumed from runs/<recipe>/last.safetensors when it exists.
train-%:
	mkdir -p runs
	nohup $(PY) -m audioe2e train run $* --corpus corpus --run runs/$* --threads 1 --resume > runs/$*.out 2>&1 &
	@echo "training $* in the background: tail -f runs/$*.out"

# Front-end ablation of the tiny enhancer: the three twins (butterfly, fixed FFT, dense DFT)
# trained from scratch with the same recipe, data, seed and ABL_STEPS steps, one after the
# other on one core (resumable), then scored side by side on the validation clips.
ABL_STEPS ?= 2500
ablation-tiny:
	$(PY) -m audioe2e train run enhancer-tiny --corpus corpus --run runs/ablation-tiny/butterfly --steps $(ABL_STEPS) --threads 1 --resume
	$(PY) -m audioe2e train run enhancer-tiny-fft --corpus corpus --run runs/ablation-tiny/fft --steps $(ABL_STEPS) --threads 1 --resume
	$(PY) -m audioe2e train run enhancer-tiny-dense --corpus corpus --run runs/ablation-tiny/dense --steps $(ABL_STEPS) --threads 1 --resume
	$(PY) -m audioe2e.bench.ablation --corpus corpus --out $(OUT)/ablation-tiny --jobs 2 \
		--run butterfly=runs/ablation-tiny/butterfly --run fft=runs/ablation-tiny/fft --run dense=runs/ablation-tiny/dense

# Front-end ablation of the separator: the fixed-STFT twin trained from scratch with the
# learned separator's recipe and seed (resumable), then both validation curves at equal steps
# (the learned run's log covers steps 1,000-8,500 on this corpus's valset).
ABL_SEP_STEPS ?= 8500
ablation-separator:
	$(PY) -m audioe2e train run separator-stft --corpus corpus --run runs/separator-stft --steps $(ABL_SEP_STEPS) --threads 1 --resume
	$(PY) -m audioe2e.bench.curves --run learned=models/checkpoints/separator --run stft=runs/separator-stft --out $(OUT)/ablation-separator

clean:
	rm -rf build dist *.egg-info $(OUT) .pytest_cache
