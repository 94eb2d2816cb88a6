"""Run ``python -m maspo ARGS`` in this process under torch's FLOP counter and print, as
the last line of stdout, the matmul FLOPs it ran: ``{"flops": N}``.

Not a test; ``bench/run_cost.py --floor`` runs it. torch's ``FlopCounterMode`` counts
every matmul as executed (linear layers forward and backward, recomputation and padding
included) and slows the run about 2x, so its time means nothing. The CPU attention
kernel is not counted (a small share at short lengths).

    python bench/count_flops.py train --config study_two_digit train.steps=2 ...
"""

from __future__ import annotations

import json
import runpy
import sys

from torch.utils.flop_counter import FlopCounterMode


def main() -> None:
    sys.argv = ["maspo", *sys.argv[1:]]
    counter = FlopCounterMode(display=False)
    code: int | str | None = 0
    with counter:
        try:
            runpy.run_module("maspo", run_name="__main__", alter_sys=True)
        except SystemExit as done:
            code = done.code
    print(json.dumps({"flops": counter.get_total_flops()}))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
