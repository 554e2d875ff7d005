"""`python -m audioe2e.train.reparam IN OUT`: a codec's weights with its decoder re-expressed
over the DFT synthesis basis (`Codec.reset_synthesis`), the same function, written as a
weights file to warm-start the `codec-decoder-dft` recipe from."""
from __future__ import annotations

import sys

from ..checkpoint import WeightsFileError, load_weights, save_weights
from ..registry import build_model


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        state, config, meta = load_weights(argv[0])
    except (FileNotFoundError, WeightsFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = build_model(config)
    if not hasattr(model, "reset_synthesis"):
        print(f"error: {argv[0]} is not a codec's weights", file=sys.stderr)
        return 2
    model.load_state_dict(state)
    model.reset_synthesis()
    save_weights(argv[1], model.state_dict(), config, dict(meta, reparametrised="synthesis reset to its DFT basis"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
