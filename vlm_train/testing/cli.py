"""`vlm-train tiny FAMILY OUT_DIR`: write a tiny random checkpoint of a family, offline.

Useful to try configs without real weights: point `model.path` at OUT_DIR.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    from vlm_train.models import FAMILIES, get_family

    ap = argparse.ArgumentParser(prog="vlm-train tiny", description=__doc__)
    ap.add_argument("family", choices=sorted(FAMILIES))
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--vision-hidden", type=int, default=64)
    ap.add_argument("--text-hidden", type=int, default=96)
    ap.add_argument("--layers", type=int, default=2)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    path = get_family(args.family).tiny(
        args.out_dir, seed=args.seed, image_size=args.image_size, vision_hidden=args.vision_hidden,
        text_hidden=args.text_hidden, layers=args.layers,
    )
    print(f"tiny {args.family} checkpoint written to {path}", file=sys.stdout)
    return 0
