"""audioe2e: end-to-end speech models on raw waveforms (separation, enhancement, a codec).

Public API (imported lazily, so `import audioe2e` and the CLI start fast):
`enhance_file`, `separate_file`, `encode_file`, `decode_file`, `load_model`, and the batch
verbs `run_enhance`, `run_separate`, `run_encode`, `run_decode` (see `api.py`, `codecapi.py`).
"""
__version__ = "0.1.0"

_LAZY = {
    "enhance_file": "api", "separate_file": "api", "run_enhance": "api", "run_separate": "api",
    "load_model": "api", "encode_file": "codecapi", "decode_file": "codecapi",
    "run_encode": "codecapi", "run_decode": "codecapi", "expand_inputs": "inputs",
    "AudioError": "audio",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'audioe2e' has no attribute {name!r}")
