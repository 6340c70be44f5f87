"""Training and feature-extraction steps with contiguous against channels-last conv weights.

    python3 benchmarks/bench_channels_last.py [--backbones resnet8 resnet20] [--batch 64]
                                              [--size 32] [--steps 20] [--threads 1]
                                              [--out benchmarks/results]

For each backbone (behind a 1-channel depth-like input): one training step (forward, backward,
SGD step) and one inference forward, with the weights in the default contiguous layout (the
reference) and channels-last (:func:`xmodal.encoders.memory_format.channels_last`, what
``runtime.channels_last`` does). Steps of both layouts are interleaved so that machine drift
hits them equally. Prints median milliseconds of CPU time per step and the ratio to the
reference, the largest difference of the outputs, and how exact each layout's gradients are: the
largest relative error, over the parameters, of one step's gradient against the same step in
float64 (``grad error``). Saves the rows with the machine facts to
``OUT/bench_channels_last.json`` and ``.csv``. Then batch norm alone (training mode, 64 x 16
channels x 32x32): the relative error of its output against float64 in each layout, for inputs
whose mean is 1 and 500 times their spread.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmodal.core.records import write_csv, write_json_atomic  # noqa: E402
from xmodal.core.registry import BACKBONES  # noqa: E402
from xmodal.encoders.memory_format import channels_last  # noqa: E402


def _step(net: torch.nn.Module, x: torch.Tensor, train: bool) -> tuple[float, torch.Tensor]:
    start = time.process_time()
    if train:
        out = net.forward_features(x)[-1]
        out.square().mean().backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.01 * p.grad
                p.grad = None
    else:
        with torch.inference_mode():
            out = net.forward_features(x)[-1]
    return time.process_time() - start, out.detach()


def grad_errors(name: str, batch: int, size: int) -> tuple[float, float]:
    """(contiguous, channels-last) largest relative gradient error against float64, one step."""
    torch.manual_seed(0)
    net = BACKBONES.get(name)(in_channels=1)
    x = torch.rand(batch, 1, size, size) + 0.5  # depth-like: positive metres, not centred

    def grads(model: torch.nn.Module, inputs: torch.Tensor, layout: bool) -> list[torch.Tensor]:
        with channels_last(model, layout):
            model.forward_features(inputs)[-1].square().mean().backward()
        return [p.grad.double() for p in model.parameters()]

    ref = grads(copy.deepcopy(net).double(), x.double(), False)
    errors = []
    for layout in (False, True):
        got = grads(copy.deepcopy(net), x, layout)
        errors.append(max(float((g - r).norm() / r.norm()) for g, r in zip(got, ref, strict=True)))
    return errors[0], errors[1]


def batchnorm_errors(mean_over_std: float) -> tuple[float, float]:
    """(contiguous, channels-last) relative output error of a training-mode BatchNorm2d."""
    x = torch.randn(64, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    x = x * 0.01 + 0.01 * mean_over_std
    ref = torch.nn.BatchNorm2d(16).double()(x.double())
    errors = []
    for layout in (torch.contiguous_format, torch.channels_last):
        out = torch.nn.BatchNorm2d(16)(x.contiguous(memory_format=layout)).double()
        errors.append(float((out - ref).norm() / ref.norm()))
    return errors[0], errors[1]


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet8", "resnet20"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, object]] = []
    for name in args.backbones:
        for train in (True, False):
            torch.manual_seed(0)
            plain = BACKBONES.get(name)(in_channels=1)
            fast = BACKBONES.get(name)(in_channels=1)
            fast.load_state_dict(plain.state_dict())
            x = torch.randn(args.batch, 1, args.size, args.size)
            times: dict[str, list[float]] = {"contiguous": [], "channels-last": []}
            diff = 0.0
            with channels_last(fast):
                for i in range(args.steps + 3):
                    t_plain, out_plain = _step(plain, x, train)
                    t_fast, out_fast = _step(fast, x, train)
                    if i >= 3:  # warm-up steps are not timed
                        times["contiguous"].append(t_plain)
                        times["channels-last"].append(t_fast)
                    if i == 0:
                        diff = float((out_plain - out_fast).abs().max())
            exact = grad_errors(name, args.batch, args.size) if train else (0.0, 0.0)
            ref = statistics.median(times["contiguous"])
            new = statistics.median(times["channels-last"])
            rows.append(
                {
                    "backbone": name,
                    "step": "train" if train else "inference",
                    "contiguous_ms": 1000 * ref,
                    "channels_last_ms": 1000 * new,
                    "ratio": new / ref,
                    "max_abs_diff": diff,
                    "grad_error_contiguous": exact[0],
                    "grad_error_channels_last": exact[1],
                }
            )
    table = Table(
        title=f"CPU ms per step, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.threads} thread(s)"
    )
    columns = ("backbone", "step", "contiguous (ref)", "channels-last", "ratio", "max |diff|")
    for column in (*columns, "grad error (contig / cl)"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["backbone"]),
            str(r["step"]),
            f"{r['contiguous_ms']:.1f}",
            f"{r['channels_last_ms']:.1f}",
            f"{r['ratio']:.2f}",
            f"{r['max_abs_diff']:.1e}",
            f"{r['grad_error_contiguous']:.1e} / {r['grad_error_channels_last']:.1e}"
            if r["step"] == "train"
            else "",
        )
    console = Console()
    console.print(table)
    norms = Table(title="BatchNorm2d alone: relative output error against float64")
    for column in ("mean / spread", "contiguous", "channels-last"):
        norms.add_column(column)
    batchnorm = {}
    for ratio in (1.0, 500.0):
        batchnorm[ratio] = batchnorm_errors(ratio)
        norms.add_row(f"{ratio:g}", *(f"{e:.1e}" for e in batchnorm[ratio]))
    console.print(norms)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
    }
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / "bench_channels_last.json",
        {"machine": machine, "rows": rows, "batchnorm_errors": batchnorm},
    )
    write_csv(out / "bench_channels_last.csv", rows)
    return rows


if __name__ == "__main__":
    main()
