"""One job across processes, on a CPU-only machine (gloo).

``xmodal run --num-processes 2`` and ``torchrun -m xmodal run``, and a 2-process run that trains
the same students as one process with the same global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmodal.cli.launch import launch_command, strip_launch_arguments
from xmodal.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
# GroupNorm students and the local term over the gathered batch: nothing depends on how the
# global batch is split, so 2 x 8 must train what 1 x 16 trains.
TINY = [
    "data.scenes.image_size=16",
    "data.scenes.num_train=64",
    "data.scenes.num_val=24",
    "data.scenes.num_test=24",
    "teacher.optim.epochs=2",
    "distill.optim.epochs=2",
    "probe.linear.l2_grid=[0.001]",
    "probe.linear.max_iter=20",
    "distill.students=[depth]",
    "teacher.encoder.resnet8.norm=group",
    "distill.encoder.resnet8.norm=group",
    "distill.wcord.local_scope=global",
    # a fixed number of Sinkhorn iterations: an early stop at a tolerance could fall one
    # iteration apart when the two runs' embeddings differ in their last bits
    "distill.wcord.sinkhorn_tol=1e-12",
    "distill.wcord.sinkhorn_iters=50",
    # negatives from queues of the gathered batches: the same on 1 and on 2 processes
    "distill.wcord.negatives=queue",
    "distill.crd.negatives=queue",
    "distill.methods=[none,supervised,fitnet,kd,crd,wcord,wcord-local]",
    # the oracle teacher this test was written for: under the transfer teacher the local-only
    # student collapses further, and retrieval among near-identical embeddings ranks by the
    # last bits (recall@5 1 sample apart), which this test does not measure
    "teacher.task=probe-labels",
]
UNITS = [
    "teacher/seed0",
    *(
        f"distill/seed0/depth/{m}"
        for m in ("supervised", "fitnet", "kd", "crd", "wcord", "wcord-local")
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(out: Path, batch: int) -> list[str]:
    argv = ["run", "scenes", "--out", str(out)]
    for item in (*TINY, f"teacher.optim.batch_size={batch}", f"distill.optim.batch_size={batch}"):
        argv += ["--set", item]
    return argv


@pytest.fixture
def child_env(monkeypatch):
    """Launched processes import this checkout's xmodal and use one thread each."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    assert main(_argv(out, 16)) == 0
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmodal",
            *_argv(out, 8),
            "--num-processes",
            "2",
            "--main-process-port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def _weights(run: Path, unit: str) -> dict[str, torch.Tensor]:
    return torch.load(run / unit / "encoder.pt", weights_only=True)["state_dict"]


def test_num_processes_starts_one_job_of_two(two_processes):
    out, stdout = two_processes
    assert "(2 process(es) on cpu" in " ".join(stdout.split())  # rich wraps at 80 columns
    assert stdout.count("xmodal run scenes ->") == 1  # one main process speaks
    assert (out / "results.json").is_file()


def test_two_processes_train_what_one_process_trains_with_the_same_global_batch(
    one_process, two_processes
):
    """Tolerance 1e-3 absolute on every weight.

    Only the order of floating-point sums differs (the all-reduce adds two half-batch gradients;
    convolutions see batches of 8, not 16), which Adam's normalised steps amplify to at most ~2e-4
    after 8 steps here; a real difference in what is computed (BatchNorm over 8 instead of 16
    samples, other negatives) moves weights by ~1e-2 in the same run. Memory-bank negatives are
    drawn per process, excluding that process's batch, so they agree in distribution only; wcord and
    crd are compared with ``negatives=queue``, whose negatives are every entry of the queue that all
    processes fill alike.
    """
    two, _ = two_processes
    for unit in UNITS:
        a, b = _weights(one_process, unit), _weights(two, unit)
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], atol=1e-3, rtol=0, msg=f"{unit}: {name}")
    rows = [json.loads((run / "results.json").read_text()) for run in (one_process, two)]
    assert [(r["method"], r["value"]) for r in rows[0]] == [
        (r["method"], r["value"]) for r in rows[1]
    ]


def test_torchrun_of_xmodal_run_is_the_same_job(two_processes, tmp_path):
    out = tmp_path / "torchrun"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "xmodal",
        *_argv(out, 8),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(2 process(es) on cpu" in " ".join(proc.stdout.split())
    launched, _ = two_processes
    assert json.loads((out / "results.json").read_text()) == json.loads(
        (launched / "results.json").read_text()
    )


def test_a_typo_fails_once_before_any_process_starts(tmp_path, capsys):
    out = tmp_path / "never"
    assert (
        main(
            [
                "run",
                "scenes",
                "--out",
                str(out),
                "--set",
                "distill.optim.epoks=1",
                "--num-processes",
                "2",
            ]
        )
        == 2
    )
    assert "did you mean 'distill.optim.epochs'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-processes", "0"], "--num-processes must be at least 1"),
        (["--num-machines", "2"], "needs --main-process-ip"),
        (
            ["--num-machines", "2", "--main-process-ip", "10.0.0.1", "--machine-rank", "2"],
            "--machine-rank 2 is outside 0..1",
        ),
    ],
)
def test_bad_launch_flags_are_one_line(flags, message, capsys):
    assert main(["run", "scenes", *flags]) == 2
    assert message in capsys.readouterr().err


def test_launch_command_passes_our_flags_to_accelerate_and_strips_them():
    argv = [
        "run",
        "scenes",
        "--num-processes",
        "4",
        "--set",
        "seeds=[0]",
        "--machine-rank=1",
        "--num-machines",
        "2",
        "--main-process-ip",
        "10.0.0.1",
        "--out",
        "x",
    ]
    args = build_parser().parse_args(argv)
    assert strip_launch_arguments(argv) == ["run", "scenes", "--set", "seeds=[0]", "--out", "x"]
    cmd = launch_command(args, strip_launch_arguments(argv))
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[cmd.index("--num_machines") + 1] == "2"
    assert cmd[cmd.index("--machine_rank") + 1] == "1"
    assert cmd[cmd.index("--main_process_ip") + 1] == "10.0.0.1"
    assert cmd[cmd.index("-m") + 1 :] == [
        "xmodal",
        "run",
        "scenes",
        "--set",
        "seeds=[0]",
        "--out",
        "x",
    ]
    from accelerate.commands.launch import launch_command_parser

    parsed = launch_command_parser().parse_args(cmd)  # accelerate accepts every flag we pass
    assert parsed.num_processes == 4 and parsed.module and parsed.training_script == "xmodal"


def test_a_launched_process_alone_in_its_job_stops(monkeypatch):
    """Started as one of 2 processes, but the Accelerator formed a job of 1: a clear error.

    Never a second copy racing on the same files.
    """
    from xmodal.training import distributed

    class Alone:
        num_processes = 1

        def __init__(self, **kwargs):
            pass

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(distributed, "Accelerator", Alone)
    with pytest.raises(
        distributed.LaunchError, match="rank 1 of a 2-process job, but it joined a job of 1"
    ):
        distributed.create_accelerator()


_DYING_WORKER = """
import os, signal, sys
from xmodal.training import loop

real, calls = loop._everywhere, [0]

def dying(flag, accelerator):  # every process calls it when a training starts
    calls[0] += 1
    if os.environ.get("RANK") == "1" and calls[0] == 2:  # the first student's training
        print("rank 1: SIGKILL now", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(flag, accelerator)

loop._everywhere = dying
from xmodal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

_LAUNCHING_THE_DYING_WORKER = """
import sys
from xmodal.cli import launch

real = launch.launch_command

def with_worker(args, argv):  # the job's processes run the worker script, not 'xmodal'
    cmd = real(args, argv)
    at = cmd.index("-m")
    return [*cmd[:at], sys.argv[1], *cmd[at + 2 :]]

launch.launch_command = with_worker
from xmodal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_killed_process_is_one_line_and_the_rerun_resumes(tmp_path):
    """A kill -9 of one process of a 2-process run is one line, and the rerun resumes.

    Rank 1 dies as its first student starts training: rank 0 stops without a traceback, the
    launcher prints one line naming rank 1 and SIGKILL, the reports go to RUN/logs/job.log, and
    the same command again reuses the teacher and finishes.
    """
    out = tmp_path / "run"
    worker = tmp_path / "worker.py"
    worker.write_text(_DYING_WORKER)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    argv = ["run", "scenes", "--out", str(out)]
    for item in (
        "data.scenes.image_size=16",
        "data.scenes.num_train=32",
        "data.scenes.num_val=16",
        "data.scenes.num_test=16",
        "teacher.optim.epochs=1",
        "distill.optim.epochs=1",
        "distill.students=[depth]",
        "distill.methods=[fitnet]",
        "probe.probes=[knn]",
        "teacher.task=probe-labels",
    ):
        argv += ["--set", item]
    argv += ["--num-processes", "2", "--main-process-port", str(_free_port())]
    killed = subprocess.run(
        [sys.executable, "-c", _LAUNCHING_THE_DYING_WORKER, str(worker), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order things were written
        text=True,
        timeout=600,
        env=env,
    )
    assert killed.returncode == 128 + 9, killed.stdout[-3000:]
    before, marker, after = killed.stdout.partition("rank 1: SIGKILL now\n")
    assert marker, killed.stdout[-3000:]
    lines = [line for line in after.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, after
    assert "Traceback" not in killed.stdout
    said = " ".join(lines)
    assert "process rank 1 of the job" in said and "died of SIGKILL" in said
    assert "run the same command again to resume" in said and str(out / "logs" / "job.log") in said
    assert "failed (exitcode: -9) local_rank: 1" in (out / "logs" / "job.log").read_text()
    teacher = out / "teacher" / "seed0" / "encoder.pt"
    stamp = teacher.stat().st_mtime_ns
    assert not (out / "distill" / "seed0" / "depth" / "fitnet" / "done.json").exists()

    argv[-1] = str(_free_port())
    rerun = subprocess.run(
        [sys.executable, "-m", "xmodal", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert teacher.stat().st_mtime_ns == stamp  # reused, not trained again
    assert (out / "distill" / "seed0" / "depth" / "fitnet" / "done.json").is_file()
    assert (out / "results.json").is_file()


@pytest.mark.parametrize(
    "codes, status, words",
    [
        ({0: 75, 1: -9}, 137, ["process rank 1 of the job (pid 101) died of SIGKILL", "resume"]),
        ({1: -15}, 143, ["process rank 1 of the job (pid 101) died of SIGTERM"]),
        ({0: 2, 1: 75}, 2, None),  # rank 0 printed its own one-line error
        ({0: 1}, 1, None),  # a traceback, printed by the process itself
        ({0: 75}, 75, ["process rank 0 lost another process of the job", "job.log"]),
    ],
)
def test_the_launcher_names_the_process_that_died(codes, status, words, tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from xmodal.cli.launch import PEER_LOST, failure_status

    assert PEER_LOST == 75
    failures = {
        rank: ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file="<N/A>")
        for rank, code in codes.items()
    }
    got, line = failure_status(ChildFailedError("xmodal", failures), tmp_path / "job.log")
    assert got == status
    if words is None:
        assert line is None
    else:
        assert line is not None and "\n" not in line and all(w in line for w in words)


def test_only_a_launched_process_that_lost_a_peer_stops_quietly(monkeypatch, tmp_path):
    from xmodal.cli.launch import JOB_LOG_ENV, PEER_LOST, stop_after_lost_peer

    gone = RuntimeError("[gloo/transport/tcp/pair.cc:538] Read error: Connection reset by peer")
    log = tmp_path / "logs" / "job.log"
    assert stop_after_lost_peer(gone) is None  # not launched by xmodal: re-raised
    monkeypatch.setenv(JOB_LOG_ENV, str(log))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert stop_after_lost_peer(RuntimeError("a bug")) is None  # keeps its traceback
    assert not log.exists()
    try:
        raise gone
    except RuntimeError as exc:
        assert stop_after_lost_peer(exc) == PEER_LOST
    text = log.read_text()
    assert "rank 1 (pid " in text and "another process of the job is gone" in text
    assert "Traceback" in text and "Connection reset by peer" in text
