"""``xmodal run ... --num-processes N``: start the run as one job through Accelerate's launcher.

Users never write a launch script: the command re-executes itself under
``accelerate launch`` (torchrun underneath, gloo on CPU machines, NCCL on GPUs), with the
launch flags removed. Multi-node jobs take the same flags on every machine (with its own
``--machine-rank``), or an accelerate config file (``--accelerate-config``).

A process of the job that dies (kill -9, out of memory) is one line on the terminal: its rank,
its signal, and that a rerun resumes. The other processes then stop without a word, and
everything the launcher and they would have printed about it (the survivors' tracebacks,
torchrun's reports) goes to ``RUN/logs/job.log``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from io import TextIOWrapper
from pathlib import Path
from typing import TYPE_CHECKING

from xmodal.core.launched import launched_world_size

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

#: exit status of a launched process that stopped because another process of its job is gone
PEER_LOST = 75
#: the job's log file, set by :func:`launch` for the processes it starts
JOB_LOG_ENV = "XMODAL_JOB_LOG"
# what gloo, the TCP store and the OS say when the other end of a connection has gone
_PEER_GONE = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
)

#: our flag -> accelerate launch's flag
_FLAGS = {
    "num_processes": "--num_processes",
    "num_machines": "--num_machines",
    "machine_rank": "--machine_rank",
    "main_process_ip": "--main_process_ip",
    "main_process_port": "--main_process_port",
}


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--num-processes`` and the other launch flags to the ``run`` parser."""
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
    """Refuse impossible launch flags with one line (:class:`ConfigError`)."""
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


def job_log(args: argparse.Namespace) -> Path:
    """The log file of the job that ``args`` start: ``RUN/logs/job.log``, as an absolute path."""
    if args.out is not None:
        run_dir = Path(args.out)
    else:
        from xmodal.core.registry import PIPELINES

        run_dir = Path("runs") / PIPELINES.get(args.pipeline).name  # the runner's default
    return (run_dir / "logs" / "job.log").absolute()


def lost_a_peer(exc: BaseException) -> bool:
    """True when ``exc`` says another process of the job is gone (its connection broke)."""
    from torch.distributed import DistNetworkError, DistStoreError

    if isinstance(exc, DistNetworkError | DistStoreError):
        return True
    return isinstance(exc, RuntimeError) and any(sign in str(exc) for sign in _PEER_GONE)


def stop_after_lost_peer(exc: BaseException) -> int | None:
    """In a process started by :func:`launch`: log ``exc`` when it says a peer is gone.

    The traceback goes to the job's log, nothing to the terminal: the launcher prints the one
    line that names the process that died.

    Returns:
        :data:`PEER_LOST` (the exit status to stop with), or None where ``exc`` is something
        else or this process was not started by :func:`launch` (the caller re-raises it).
    """
    path = os.environ.get(JOB_LOG_ENV)
    if not path or launched_world_size() <= 1 or not lost_a_peer(exc):
        return None
    rank = os.environ.get("RANK", "?")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            log.write(
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} rank {rank} (pid {os.getpid()}) stopped: "
                "another process of the job is gone\n"
            )
            traceback.print_exception(exc, file=log)
    except OSError:
        pass  # no log (full disk, read-only): the launcher's line still names the dead process
    return PEER_LOST


class _LazyFileHandler(logging.FileHandler):
    """A file handler that creates the file, and its folder, only when there is a record."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self) -> TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextmanager
def _launcher_logs_to(path: Path) -> Iterator[None]:
    """Send torchrun's reports to ``path`` instead of the terminal; tell the processes ``path``.

    The reports are ``Sending process ... closing signal SIGTERM``, ``failed (exitcode: -9)``.
    """
    logger = logging.getLogger("torch.distributed.elastic")
    handler = _LazyFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    propagate, before = logger.propagate, os.environ.get(JOB_LOG_ENV)
    logger.addHandler(handler)
    logger.propagate = False
    os.environ[JOB_LOG_ENV] = str(path)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = propagate
        if before is None:
            os.environ.pop(JOB_LOG_ENV, None)
        else:
            os.environ[JOB_LOG_ENV] = before


def failure_status(exc: ChildFailedError, log: Path) -> tuple[int, str | None]:
    """The exit status of a failed job and the line to print (None: a process printed its own).

    A process that died of a signal is the cause; the others stopped because it was gone
    (:data:`PEER_LOST`) or were stopped by torchrun. A process that failed by itself (exit 2
    after its one-line error, or a traceback) has already said why.
    """
    failures = sorted(exc.failures.items())
    for rank, failure in failures:
        if failure.exitcode < 0:
            return 128 - failure.exitcode, (
                f"process rank {rank} of the job (pid {failure.pid}) died of "
                f"{_signal_name(-failure.exitcode)}; finished units are kept: run the same "
                f"command again to resume (the other processes' reports: {log})"
            )
    own = [failure.exitcode for _, failure in failures if failure.exitcode != PEER_LOST]
    if own:
        return own[0], None
    ranks = ", ".join(str(rank) for rank, _ in failures)
    return PEER_LOST, (
        f"process rank {ranks} lost another process of the job (on another machine?); "
        f"finished units are kept: run the same command again to resume (details: {log})"
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``xmodal`` ``argv`` (launch flags removed) as one job; returns its exit status.

    A process that fails by itself prints its own error (one line); a process that dies of a
    signal is one line printed here (see :func:`failure_status`).
    """
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    launch_args = launch_command_parser().parse_args(
        launch_command(args, strip_launch_arguments(argv))
    )
    log = job_log(args)
    try:
        with _launcher_logs_to(log):
            accelerate_launch(launch_args)
    except ChildFailedError as exc:  # torchrun's report: keep the exit status, drop its traceback
        status, line = failure_status(exc, log)
        if line is not None:
            print(f"error: {line}", file=sys.stderr, flush=True)
        return status
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0
