"""Where a training step spends its time: the torch profiler over a few default (bf16 +
channels-last) training steps of a U-Net at batch 4 (a report, not a test).

The step is the one `unetzoo bench --train` times (forward, loss, backward, optimizer).
Prints the top operators by self CPU time and writes them to
`benchmarks/results/step_profile[_quick].json`.

    PYTHONPATH=src python benchmarks/step_profile.py --quick
"""

from __future__ import annotations

import argparse

import torch
from report import machine, markdown, write_json
from torch.profiler import ProfilerActivity, profile

from unetzoo.engine.bench import _train_step
from unetzoo.models import create_model
from unetzoo.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny U-Net at 64 x 64")
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--label", default="", help="suffix of the results file")
    args = parser.parse_args()
    preset, size = ("tiny", 64) if args.quick else (args.preset, args.size)
    torch.manual_seed(0)
    model = create_model("unet", 3, 1, preset=preset)
    runtime = Runtime.resolve("cpu", args.precision)
    x = torch.randn(args.batch, 3, size, size)
    step = _train_step(model, runtime, x)
    step()
    step()  # warm-up: oneDNN primitive creation, optimizer state
    before = machine()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = [{"operator": e.key, "self ms/step": e.self_cpu_time_total / 1e3 / args.steps,
             "share": f"{100 * e.self_cpu_time_total / total:.1f}%",
             "calls/step": e.count / args.steps}
            for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]]
    result = {"machine_before": before, "machine_after": machine(), "preset": preset,
              "size": size, "batch": args.batch, "runtime": runtime.describe(),
              "ms_per_step": total / 1e3 / args.steps, "rows": rows}
    name = "step_profile" + ("_quick" if args.quick else "") + (f"_{args.label}"
                                                                if args.label else "")
    path = write_json(name, result)
    print(f"{runtime.describe()}; U-Net {preset} at {size} x {size}, batch {args.batch}; "
          f"{result['ms_per_step']:.0f} ms of CPU time per step; load average "
          f"{before['load_average'][0]:.2f}\n")
    print(markdown(rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
