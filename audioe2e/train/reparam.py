"""`python -m audioe2e.train.reparam IN OUT`: a codec's weights with its decoder re-expressed
over the DFT synthesis basis (`Codec.reset_synthesis`), the same function, written as a
weights file to warm-start the `codec-decoder-dft` recipe from."""
from __future__ import annotations

import sys

from ..checkpoint import rewrite_parser, rewrite_weights_file
from ..registry import build_model


def main(argv: list[str]) -> int:
    a = rewrite_parser("python -m audioe2e.train.reparam", __doc__).parse_args(argv)

    def reset(state, config, meta):
        model = build_model(config)
        if not hasattr(model, "reset_synthesis"):
            raise ValueError(f"{config.get('arch')!r} weights are not a codec's")
        model.load_state_dict(state)
        model.reset_synthesis()
        return model.state_dict(), config, dict(meta, reparametrised="synthesis reset to its DFT basis")

    return rewrite_weights_file(a.src, a.dst, reset)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
