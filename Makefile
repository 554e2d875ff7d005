# audioe2e — developer entry points. `make run` and `make test` are the two set-up commands.
PY ?= python3
PIP = $(PY) -m pip
OUT ?= out

.PHONY: setup run test bench corpus clean

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

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PIP) install -q -e ".[bench]"
	$(PY) -m audioe2e.bench.run --out $(OUT)/bench --quick

corpus: setup
	$(PY) -m audioe2e corpus build --out corpus

# `make train-separator`, `make train-enhancer`, `make train-codec`, … : one background
# process on one core, resumed from runs/<recipe>/last.safetensors when it exists.
train-%:
	mkdir -p runs
	nohup $(PY) -m audioe2e train run $* --corpus corpus --run runs/$* --threads 1 --resume > runs/$*.out 2>&1 &
	@echo "training $* in the background: tail -f runs/$*.out"

clean:
	rm -rf build dist *.egg-info $(OUT) .pytest_cache
