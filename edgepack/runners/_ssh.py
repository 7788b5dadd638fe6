"""One ssh connection per run, and the timing script run through it (ssh and mac runners).

Every command of a run goes through one OpenSSH ControlMaster connection: the first ``ssh``
opens it, the next ones and ``scp`` reuse its socket (no new handshake, no second password or
key prompt), and ``ssh -O exit`` closes it. ``BatchMode=yes`` makes a host that would ask for a
password fail at once instead of waiting on a prompt nobody sees in a nightly job. The model
and the timing script go to a fresh ``/tmp/edgepack-<random>`` folder that is removed
afterwards, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.runners._attached import call, last_line, scratch_name

log = logging.getLogger(__name__)

TIMING_SCRIPT = Path(__file__).with_name("_timing_script.py")
IMAGES, LOGITS = "images.npy", "logits.npy"  # what --predict reads and writes
REPORT_KEYS = {"samples_ms": list, "predicted": int}  # what each mode's JSON line always has
CONNECT_TIMEOUT_S = 10
SSH_FAILED = 255  # ssh's own exit status: the connection, not the remote command, failed


def _link_failed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == SSH_FAILED


class Session:
    """``ssh``/``scp`` to ``host`` over one shared connection; a context manager.

    Every command ends option parsing with ``--`` before the host and the files, and names
    local files by absolute path: a model called ``-oProxyCommand=…;x.tflite`` (pathlib drops
    the ``./``) would otherwise be an option that runs a command here, and a name with a colon
    would be taken for a remote host.
    """

    def __init__(self, host: str, *, port: int | None = None, timeout: float = 300) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._control = ""

    def __enter__(self) -> Session:
        # A short folder: the socket path must fit in sun_path (104 bytes on macOS).
        self._control = tempfile.mkdtemp(prefix="ep-ssh-")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            subprocess.run(
                [*self._ssh_base(), "-O", "exit", "--", self.host],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=CONNECT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            log.warning("could not close the ssh connection to %s", self.host)
        shutil.rmtree(self._control, ignore_errors=True)

    def _options(self) -> list[str]:
        return [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self._control}/%C",
            "-o", "ControlPersist=60",
        ]  # fmt: skip

    def _ssh_base(self) -> list[str]:
        port = ["-p", str(self.port)] if self.port is not None else []
        return ["ssh", *self._options(), *port]

    def run(
        self, command: str, *, what: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``command`` (one shell line) on the host; one retry if the link fails."""
        return call(
            [*self._ssh_base(), "--", self.host, command],
            timeout=self.timeout,
            what=f"{what} on {self.host}",
            transient=_link_failed,
            check=check,
        )

    def copy(self, sources: list[Path], folder: str) -> None:
        port = ["-P", str(self.port)] if self.port is not None else []
        call(
            [
                "scp",
                "-q",
                "-r",
                *self._options(),
                *port,
                "--",
                *(str(path.absolute()) for path in sources),
                f"{self.host}:{folder}/",
            ],
            timeout=self.timeout,
            what=f"copying {', '.join(p.name for p in sources)} to {self.host}",
            transient=_link_failed,
        )

    def fetch(self, remote: str, folder: Path) -> None:
        """Copy the file ``remote`` on the host into the local ``folder``."""
        port = ["-P", str(self.port)] if self.port is not None else []
        call(
            [
                "scp",
                "-q",
                *self._options(),
                *port,
                "--",
                f"{self.host}:{remote}",
                f"{folder.absolute()}/",
            ],
            timeout=self.timeout,
            what=f"copying {remote.rsplit('/', 1)[-1]} back from {self.host}",
            transient=_link_failed,
        )


@contextmanager
def scratch(session: Session) -> Iterator[str]:
    """A fresh folder on the host, removed afterwards, also on failure or Ctrl-C."""
    folder = f"/tmp/{scratch_name()}"
    session.run(f"mkdir -m 700 {folder}", what="creating a scratch folder")
    try:
        yield folder
    finally:
        remove(session, folder)


def time_remotely(
    session: Session, python: str, model: Path, runs: list[list[str]]
) -> list[dict[str, Any]]:
    """Copy ``model`` and the timing script to a scratch folder on the host, run the script
    once per argument list in ``runs`` with ``python``, and return its JSON reports."""
    reports = []
    with scratch(session) as folder:
        session.copy([model, TIMING_SCRIPT], folder)
        script, remote_model = f"{folder}/{TIMING_SCRIPT.name}", f"{folder}/{model.name}"
        for arguments in runs:
            command = shlex.join([python, script, "--model", remote_model, *arguments])
            result = session.run(command, what=f"timing {model.name}")
            reports.append(read_report(result.stdout, where=session.host))
    return reports


def predict_remotely(
    session: Session, python: str, model: Path, images: np.ndarray, arguments: list[str]
) -> np.ndarray:
    """Logits for ``images`` from the timing script's ``--predict`` mode on the host: the
    images go over as .npy with the model and the script, the logits come back the same way
    and are checked before anyone trusts them."""
    with tempfile.TemporaryDirectory(prefix="ep-predict-") as local:
        here = Path(local)
        np.save(here / IMAGES, images, allow_pickle=False)
        with scratch(session) as folder:
            session.copy([model, TIMING_SCRIPT, here / IMAGES], folder)
            command = shlex.join([
                python, f"{folder}/{TIMING_SCRIPT.name}", "--model", f"{folder}/{model.name}",
                *arguments, "--predict", f"{folder}/{IMAGES}", "--out", f"{folder}/{LOGITS}",
            ])  # fmt: skip
            result = session.run(command, what=f"predicting with {model.name}")
            read_report(result.stdout, where=session.host, key="predicted")
            session.fetch(f"{folder}/{LOGITS}", here)
        return read_logits(here / LOGITS, len(images), where=session.host)


def read_logits(path: Path, images: int, *, where: str) -> np.ndarray:
    """The logits the timing script saved: a finite float (images, classes) array, or an
    InputError saying what arrived instead (a board's runtime is not ours to trust)."""
    try:
        logits = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"the logits from {where} are not a .npy array: {exc}") from None
    if (
        logits.ndim != 2
        or logits.shape[0] != images
        or logits.shape[1] < 1
        or logits.dtype.kind != "f"
        or not np.all(np.isfinite(logits))
    ):
        raise InputError(
            f"the logits from {where} are not finite floats shaped ({images}, classes): "
            f"got {logits.dtype} {logits.shape}"
        )
    return logits.astype(np.float32, copy=False)


def remove(session: Session, folder: str) -> None:
    """``rm -rf folder`` on the host; a failure is logged, not raised (it must not hide the
    error that brought us here)."""
    try:
        done = session.run(f"rm -rf {folder}", what="removing the scratch folder", check=False)
        problem = last_line(done.stderr) if done.returncode != 0 else None
    except InputError as exc:
        problem = str(exc)
    if problem is not None:
        log.warning("could not remove %s on %s: %s", folder, session.host, problem)


def read_report(stdout: str, *, where: str, key: str = "samples_ms") -> dict[str, Any]:
    """The timing script's JSON line (``key`` is what its mode always prints: the per-run
    timings, or the count of images predicted); InputError if the output is not that."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get(key), REPORT_KEYS[key]):
        raise InputError(
            f"the timing script on {where} printed no JSON result; its last line was: "
            f"{last_line(stdout)[:200]}"
        )
    return report
