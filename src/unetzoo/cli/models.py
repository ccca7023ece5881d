"""`unetzoo models`: the registry with parameter counts and papers."""

from __future__ import annotations

import argparse
import logging

import torch

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the registered models (--pretrained: the "
                                           "shipped pretrained weights)")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name filter")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the pretrained models shipped with unetzoo (for `predict "
                             "--model NAME`, `train --init NAME`)")
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=1)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..models import count_parameters, create_model, list_models, model_card

    if args.pretrained:
        list_shipped(args.pattern)
        return
    names = list_models(args.pattern)
    rows = [("model", "params", "reference", "year", "what it adds to U-Net")]
    for name in names:
        card = model_card(name)
        with torch.device("meta"):
            params = count_parameters(create_model(name, args.in_channels, args.num_classes))
        reference = card.reference_params.get("reference")
        adds = card.adds if len(card.adds) <= 70 else card.adds[:67] + "..."
        rows.append((name, f"{params / 1e6:.2f} M", f"{reference:,}" if reference else "-",
                     str(card.year), adds))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        log.info("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) +
                 "  " + row[4])
    log.info(f"params: default configuration, in={args.in_channels}, out={args.num_classes}; "
             "reference: the parity preset (in=3, out=1)")
    if len(names) == 1:
        card = model_card(names[0])
        log.info(f"\n{card.name}: {card.summary}\npaper: {card.paper}\nadds: {card.adds}\n"
                 f"presets: " + "; ".join(f"{k} {dict(v)}" for k, v in card.presets.items()))


def list_shipped(pattern: str) -> None:
    """The shipped pretrained models: architecture, size, test scores, what they segment."""
    import fnmatch

    from ..artefacts.pretrained import list_pretrained

    rows = [("name", "model", "classes", "MB", "test dice", "test iou", "what it segments")]
    for entry in list_pretrained():
        if not fnmatch.fnmatch(entry.name, pattern):
            continue
        config = entry.config()
        spec = config["model"]
        test = (config.get("metrics") or {}).get("test") or {}
        mean = test.get("mean_over_images", {})
        size = sum(f.stat().st_size for f in entry.folder.iterdir()) / 1e6
        rows.append((entry.name, f"{spec['name']} {spec['kwargs']}",
                     ", ".join(config["class_names"]), f"{size:.1f}",
                     f"{mean['dice']:.4f}" if "dice" in mean else "-",
                     f"{mean['iou']:.4f}" if "iou" in mean else "-", entry.summary))
    if len(rows) == 1:
        log.info("no pretrained models installed")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        log.info("  ".join(c.ljust(w) for c, w in zip(row[:6], widths, strict=True)) +
                 "  " + row[6])
    log.info("test dice / iou: mean over the test images of the training data's split "
             "(see each model's README.md: unetzoo export --model NAME --format folder)")
