"""`maspo` command line: train | eval | compare | plot | objectives | demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maspo.errors import EXIT_USER_ERROR, UserError


def _objectives(args: argparse.Namespace) -> int:
    from maspo.weights_report import plot_curves, profile_table

    print(profile_table())
    path = plot_curves(Path(args.out))
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maspo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    obj = sub.add_parser("objectives", help="print and plot every objective's gradient weights")
    obj.add_argument("--out", default="runs/objectives.png", help="PNG path for the w(r) curves")
    obj.set_defaults(func=_objectives)
    demo = sub.add_parser("demo", help="the embedded default job")
    demo.add_argument("--out", default="runs/objectives.png")
    demo.set_defaults(func=_objectives)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"maspo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
