"""What the attached runners (adb, ssh, mac) share: calling a device tool with a timeout and one
retry, a fresh scratch folder name, and turning timing figures into a :class:`Latency`.

A phone on a USB hub or a board on Wi-Fi drops a command now and then; one retry rides that out,
a second failure is the user's to see. Every failure becomes one ``InputError`` line that names
the command that failed and the tool's own last words, never a traceback.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence

from edgepack.core.errors import InputError

log = logging.getLogger(__name__)

RETRIES = 1  # one more try after a timeout or a transport failure
# The longest a profile may let one device command run (`runner.timeout_s`): a day. A nightly
# job that hangs longer has failed; an unbounded YAML number would reach subprocess as is.
MAX_TIMEOUT_S = 24 * 3600


def missing_tool(name: str, hint: str) -> str | None:
    """None if ``name`` is on PATH, else the reason a runner cannot work here."""
    return None if shutil.which(name) else f"{name} is not on PATH ({hint})"


def scratch_name() -> str:
    """A folder name no other run uses (two builds may time on one device at once)."""
    return f"edgepack-{secrets.token_hex(4)}"


def shown(argv: Sequence[str]) -> str:
    """``argv`` as a shell line, for messages and the report."""
    return shlex.join(argv)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def call(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    transient: Callable[[subprocess.CompletedProcess[str]], bool] = lambda _: False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; retry once if it times out or ``transient`` says the link failed.

    ``what`` completes "… failed" in the error (e.g. "pushing the model to R58M123"). With
    ``check`` a non-zero exit is an InputError; without, the caller judges the result.
    ``subprocess.run`` kills the child on any exception, Ctrl-C included, so nothing is left
    running here when the caller's ``finally`` cleans up.
    """
    for attempt in range(RETRIES + 1):
        last = attempt == RETRIES
        try:
            result = _run(argv, timeout)
        except subprocess.TimeoutExpired:
            if last:
                raise InputError(
                    f"{what} failed: `{shown(argv)}` did not finish within {timeout:g} s "
                    f"({RETRIES + 1} tries)"
                ) from None
            log.warning("%s: no answer within %g s, trying once more", what, timeout)
            continue
        except OSError as exc:  # the tool vanished or is not executable
            raise InputError(f"{what} failed: cannot run {argv[0]}: {exc.strerror}") from None
        if transient(result) and not last:
            log.warning("%s: %s; trying once more", what, last_line(result.stderr))
            continue
        if check and result.returncode != 0:
            raise InputError(
                f"{what} failed: `{shown(argv)}` exited {result.returncode}: "
                f"{last_line(result.stderr or result.stdout)}"
            )
        return result
    raise AssertionError("unreachable")  # the loop returns or raises on its last try


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``argv`` with its output in temporary files, not pipes. A tool may leave a daemon
    behind (ssh's ControlPersist master, the adb server on its first start) that inherits its
    output handles; a reader waiting for end-of-file on a pipe would then wait for the daemon,
    while files let ``run`` return when the tool itself exits. (OpenSSH 9.2 detaches its
    master cleanly: 0.64 s per first command with pipes and with files; older releases and
    ``-v`` keep stderr.)"""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout
        )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, process.returncode, out.read(), err.read())
