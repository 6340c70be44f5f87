"""``xmodal run ... --num-processes N``: start the run as one job through Accelerate's launcher.

Users never write a launch script: the command re-executes itself under
``accelerate launch`` (torchrun underneath, gloo on CPU machines, NCCL on GPUs), with the
launch flags removed. Multi-node jobs take the same flags on every machine (with its own
``--machine-rank``), or an accelerate config file (``--accelerate-config``).
"""

from __future__ import annotations

import argparse
import subprocess

from xmodal.training.distributed import launched_world_size

#: our flag -> accelerate launch's flag
_FLAGS = {
    "num_processes": "--num_processes",
    "num_machines": "--num_machines",
    "machine_rank": "--machine_rank",
    "main_process_ip": "--main_process_ip",
    "main_process_port": "--main_process_port",
}


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "launching", "run as one job of several processes or machines (Accelerate's launcher)"
    )
    group.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="processes in all (e.g. one per GPU; CPU machines use gloo)",
    )
    group.add_argument("--num-machines", type=int, metavar="M", help="machines in the job")
    group.add_argument(
        "--machine-rank", type=int, metavar="R", help="this machine's rank, 0 on the main machine"
    )
    group.add_argument("--main-process-ip", metavar="IP", help="address of the rank-0 machine")
    group.add_argument(
        "--main-process-port",
        type=int,
        metavar="PORT",
        help="port of the rank-0 process (default 29500)",
    )
    group.add_argument(
        "--accelerate-config",
        metavar="FILE",
        help="an 'accelerate config' YAML; the flags above override it",
    )


def wants_launch(args: argparse.Namespace) -> bool:
    """True when the command must start a job rather than run in this process."""
    if launched_world_size() > 1:
        return False  # already one process of a launched job
    many = (args.num_processes or 1) > 1 or (args.num_machines or 1) > 1
    return many or args.accelerate_config is not None


def check_launch_arguments(args: argparse.Namespace) -> None:
    from xmodal.core.errors import ConfigError

    for name in ("num_processes", "num_machines"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if (
        (args.num_machines or 1) > 1
        and args.main_process_ip is None
        and args.accelerate_config is None
    ):
        raise ConfigError(
            "--num-machines > 1 needs --main-process-ip (the rank-0 machine's "
            "address) and --machine-rank on each machine"
        )
    if args.machine_rank is not None and not 0 <= args.machine_rank < (args.num_machines or 1):
        raise ConfigError(
            f"--machine-rank {args.machine_rank} is outside 0..{(args.num_machines or 1) - 1}"
        )


def launch_command(args: argparse.Namespace, run_argv: list[str]) -> list[str]:
    """The ``accelerate launch`` arguments that run ``xmodal <run_argv>`` as one job."""
    cmd: list[str] = []
    if args.accelerate_config is not None:
        cmd += ["--config_file", str(args.accelerate_config)]
    else:
        # torchrun underneath: one process per slot, on GPUs or (gloo) on CPUs
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    for name, flag in _FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            cmd += [flag, str(value)]
    if args.accelerate_config is None and args.num_machines is None:
        cmd += ["--num_machines", "1"]
    return [*cmd, "-m", "xmodal", *run_argv]


def strip_launch_arguments(argv: list[str]) -> list[str]:
    """``argv`` without our launch flags (and their values)."""
    flags = {
        "--num-processes",
        "--num-machines",
        "--machine-rank",
        "--main-process-ip",
        "--main-process-port",
        "--accelerate-config",
    }
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in flags:
            skip = "=" not in item
            continue
        out.append(item)
    return out


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``xmodal`` ``argv`` (launch flags removed) as one job; returns its exit status (the
    first failed process's, whose own one-line error is already printed).
    """
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    launch_args = launch_command_parser().parse_args(
        launch_command(args, strip_launch_arguments(argv))
    )
    try:
        accelerate_launch(launch_args)
    except ChildFailedError as exc:  # torchrun's report: keep the exit status, drop its traceback
        codes = [f.exitcode for f in exc.failures.values()]
        return next((c for c in codes if c > 0), 1)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0
