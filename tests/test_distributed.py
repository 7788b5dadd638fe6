"""torchrun on the CPU: gloo, 2 (and 3) real processes, against one process.

What "matches" means, measured on the sample student (2-core x86, torch 2.13.0+cpu):

- Two training steps on the same data: with the global batch kept at 64, DDP's averaged gradient
  is the single-process mean gradient up to float summation order, and synced batch norm gives
  the same batch statistics. The weights then differ by at most 4.6e-5 (2 ranks, 32 + 32;
  3 ranks, 22 + 21 + 21), as much as one process differs from itself run with 1 thread instead
  of 2 (6.5e-5). With plain per-rank batch norm they differ by 1.3e-2. The bound is 1e-4.
- A whole quick build (96 steps): rounding differences grow over the steps at lr 0.1 (they do
  between thread counts too), so weights are not compared; the float and int8 accuracies are,
  within 2 pp on 1,000 test images (measured: 75.5 vs 76.2 % float, 75.2 vs 76.0 % int8).

The processes are started the way a user starts them (``python -m torch.distributed.run``),
or by hand with the variables torchrun sets where a test needs each rank's own exit code; this
checkout is on PYTHONPATH, and this file is also the worker script of the step comparison and
of the build in one folder per rank.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STEP_TOLERANCE = 1e-4
ACCURACY_TOLERANCE = 0.02


def _env() -> dict[str, str]:
    # One intra-op thread in every process, single or distributed, as torchrun sets it anyway:
    # the comparison is then about DDP, not about thread counts.
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run(
    args: list[str], ranks: int | None, cwd: Path, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    launcher = (
        []
        if ranks is None
        else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    )
    return subprocess.run(
        [sys.executable, *launcher, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---- two training steps ---------------------------------------------------------------------


def _train_two_steps(out: Path) -> None:
    """Worker: ``distill`` for two steps of 64 random images, under torchrun or alone."""
    import torch

    from edgepack.config.profiles import DistillSpec
    from edgepack.core import devices, distributed
    from edgepack.students import create
    from edgepack.training.distillation import distill

    data = np.random.default_rng(0)
    x = torch.from_numpy(data.standard_normal((128, 1, 28, 28)).astype(np.float32))
    labels, logits = data.integers(0, 10, 128), data.standard_normal((128, 10)).astype(np.float32)
    spec = DistillSpec(epochs=1, batch_size=64, lr=0.1, temperature=4.0, alpha=0.7, seed=0)
    with distributed.session(devices.CPU) as world:
        torch.manual_seed(0)
        student = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
        stats = distill(student, x, labels, logits, spec)
        if world.rank == 0:
            torch.save(
                {"state": student.state_dict(), "world": world.size, "loss": stats.final_loss}, out
            )


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _steps(tmp_path_factory.mktemp("steps"), None)


def _steps(tmp: Path, ranks: int | None) -> dict:
    out = tmp / f"steps-{ranks}.pt"
    done = _run([__file__, "steps", str(out)], ranks, tmp, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import torch

    return torch.load(out, weights_only=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("ranks", [2, 3])
def test_two_steps_on_n_ranks_match_one_process(
    ranks: int, one_process: dict, tmp_path: Path
) -> None:
    """3 ranks do not divide 64: 22 + 21 + 21 rows, each rank's loss weighted by its share."""
    got = _steps(tmp_path, ranks)
    assert got["world"] == ranks and one_process["world"] == 1
    worst = max(
        float((got["state"][name] - ref).abs().max())
        for name, ref in one_process["state"].items()
        if ref.is_floating_point()
    )
    assert worst < STEP_TOLERANCE, f"weights and batch-norm statistics differ by {worst:.2e}"
    assert got["loss"] == pytest.approx(one_process["loss"], abs=1e-5)


# ---- the quick build ------------------------------------------------------------------------

pytest_slow = pytest.mark.slow


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick ONNX build small enough for CI: 2,048 training images, 96 steps (3 epochs),
    latency on this host (no emulation); no budgets, so the exit code is about the run."""
    path = tmp_path_factory.mktemp("profile") / "tiny.yaml"
    none = {
        "max_size_kb": None,
        "max_latency_ms": None,
        "max_accuracy_drop_pp": None,
        "min_accuracy": None,
    }
    path.write_text(
        yaml.safe_dump(
            {
                "extends": "onnx",
                "budgets": none,
                "runner": {"name": "host", "threads": 1, "warmup": 2, "iterations": 10},
                "quick": {
                    "epochs": 1,
                    "min_steps": 96,
                    "train_samples": 2048,
                    "test_samples": 1000,
                    "calibration_samples": 32,
                },
            }
        )
    )
    return path


def _build_args(profile: Path, out: str, cache: str) -> list[str]:
    return [
        "build",
        "--quick",
        "--no-progress",
        "-t",
        str(profile),
        "--out",
        out,
        "--cache-dir",
        cache,
    ]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, profile: Path) -> Path:
    tmp = tmp_path_factory.mktemp("single")
    done = _run(["-m", "edgepack", *_build_args(profile, "dist", "cache")], None, tmp)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return tmp


@pytest.fixture(scope="module")
def two_ranks(
    tmp_path_factory: pytest.TempPathFactory, profile: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A two-rank build killed and resumed, the way a user meets both: the ranks are started
    by hand (as a cluster's own launcher would), both killed (SIGKILL) once rank 0 has
    checkpointed the first epoch, then the same command runs under torchrun and resumes.
    Each rank works in a folder of its own (relative --out and --cache-dir), so anything a rank
    other than 0 wrote, in either run, would show up in its folder. One run of each instead of
    a whole build and then an interrupted one: the tests below read both from here."""
    tmp = tmp_path_factory.mktemp("ddp")
    args = [__file__, "build-in-rank-folder", *_build_args(profile, "dist", "cache")]
    ranks = _launch(args, tmp)
    try:
        sidecars = tmp / "rank0" / "cache" / "students"
        deadline = time.monotonic() + 600
        while not any(
            json.loads(p.read_text()).get("epoch") == 1 for p in sidecars.glob("*.ckpt.check")
        ):
            assert all(r.poll() is None for r in ranks), "a rank ended before epoch 1"
            assert time.monotonic() < deadline, "no checkpoint of epoch 1"
            time.sleep(0.1)
    finally:
        for rank in ranks:
            rank.kill()
            rank.communicate()
    assert not (tmp / "rank0" / "dist" / "tiny").exists()  # killed before anything shipped
    done = _run(args, 2, tmp)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return tmp, done


def _manifest(root: Path) -> dict:
    return json.loads((root / "dist" / "tiny" / "manifest.json").read_text())  # type: ignore[no-any-return]


@pytest_slow
def test_two_rank_quick_build_matches_one_process(
    single: Path, two_ranks: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    tmp, _ = two_ranks
    alone, ddp = _manifest(single), _manifest(tmp / "rank0")
    assert ddp["compute"]["world_size"] == 2 and ddp["compute"]["backend"] == "gloo"
    assert alone["compute"]["world_size"] == 1 and ddp["compute"]["torch_device"] == "cpu"
    # the global batch is the profile's, so both ran the same number of steps: 96 alone, and
    # under DDP 32 before the kill and the 64 after the checkpoint of epoch 1 (on every rank:
    # had one started elsewhere they would disagree and the run would stop)
    assert alone["student"]["distill"]["steps_run"] == 96
    assert ddp["student"]["distill"]["resumed_from_epoch"] == 1
    assert ddp["student"]["distill"]["steps_run"] == 64
    for key in ("float_student", "int8_artifact"):
        assert abs(ddp["accuracy"][key] - alone["accuracy"][key]) <= ACCURACY_TOLERANCE, key
    assert ddp["accuracy"]["teacher"] == alone["accuracy"]["teacher"]


@pytest_slow
def test_sharded_teacher_logits_equal_one_pass(
    single: Path, two_ranks: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    """Each rank ran the teacher on half the rows; the gathered logits rank 0 cached are the
    single-process ones (the same rows in batches cut elsewhere: rounding only)."""
    tmp, _ = two_ranks
    ours_root, theirs_root = tmp / "rank0" / "cache" / "logits", single / "cache" / "logits"
    ours, theirs = sorted(ours_root.glob("*/rows-*.npy")), sorted(theirs_root.glob("*/rows-*.npy"))
    names = [p.relative_to(ours_root) for p in ours]
    assert names == [p.relative_to(theirs_root) for p in theirs] and len(ours) >= 2  # train, test
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.load(mine), np.load(reference), rtol=1e-4, atol=1e-4)


@pytest_slow
def test_only_rank_0_writes_and_prints(
    two_ranks: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp, done = two_ranks
    assert (tmp / "rank0" / "dist" / "tiny" / "model.onnx").is_file()
    assert sorted(p.name for p in (tmp / "rank0" / "cache").iterdir()) == ["logits", "students"]
    assert list((tmp / "rank1").rglob("*")) == []  # no dist/, no cache, no staging folder
    assert done.stdout.count("building tiny") == 1
    assert done.stdout.count("torch device cpu") == 1 and "2 ranks (gloo)" in done.stdout


@pytest_slow
def test_a_checkpoint_resumes_on_every_rank(single: Path, profile: Path, tmp_path: Path) -> None:
    """The single-process run's cache (rank 0's checkpoint is the same kind of file) resumes a
    2-rank run: every rank must read it, or they would disagree on the epoch to start from and
    the run would stop; nothing is trained again and the student is the same one."""
    cache = single / "cache"
    args = ["-m", "edgepack", *_build_args(profile, str(tmp_path / "dist"), str(cache))]
    done = _run(args, 2, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    again, alone = _manifest(tmp_path), _manifest(single)
    assert again["student"]["distill"]["resumed_from_epoch"] == 3
    assert again["student"]["distill"]["steps_run"] == 0
    assert again["accuracy"]["float_student"] == alone["accuracy"]["float_student"]


def _launch(args: list[str], cwd: Path, ranks: int = 2) -> list[subprocess.Popen[str]]:
    """``python ARGS`` once per rank with the variables torchrun sets, started by hand (as a
    cluster's own launcher would): each rank's exit code and output stay observable, and no
    agent stops the others when one ends."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    world = {"WORLD_SIZE": str(ranks), "LOCAL_WORLD_SIZE": str(ranks), "MASTER_ADDR": "127.0.0.1"}
    return [
        subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env={**_env(), **world, "MASTER_PORT": str(port), "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(ranks)
    ]


def test_when_rank_0_fails_the_other_rank_exits_with_its_code(
    profile: Path, tmp_path: Path
) -> None:
    """rank 0 cannot create its output folder (--out names a file): it prints the one error
    line and exits 2; rank 1, waiting for rank 0's data, exits 2 as well and says nothing.
    (Under torchrun the agent may stop rank 1 first: it ends every rank when one fails.)"""
    (tmp_path / "dist").write_text("a file where the output folder should be")
    ranks = _launch(["-m", "edgepack", *_build_args(profile, "dist", "cache")], tmp_path)
    (out0, err0), (out1, err1) = (rank.communicate(timeout=300) for rank in ranks)
    assert [rank.returncode for rank in ranks] == [2, 2], err0[-2000:] + err1[-2000:]
    assert err0 == "error: cannot write to output folder dist: File exists\n"
    assert "building tiny" in out0
    assert (out1, err1) == ("", "")


def _build_in_rank_folder(args: list[str]) -> None:
    """Worker: ``edgepack ARGS`` in ``rank<RANK>/`` under the current folder."""
    folder = Path(f"rank{os.environ['RANK']}")
    folder.mkdir(exist_ok=True)  # a resumed run finds it
    os.chdir(folder)
    from edgepack.cli import main

    main(args=args, prog_name="edgepack")


if __name__ == "__main__":
    if sys.argv[1] == "steps":
        _train_two_steps(Path(sys.argv[2]))
    elif sys.argv[1] == "build-in-rank-folder":
        _build_in_rank_folder(sys.argv[2:])
