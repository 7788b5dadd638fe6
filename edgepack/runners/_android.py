"""The phone side of the adb runner: which device, is it ready, and adb commands to it.

Every adb command has a timeout and one retry when adb says the phone went away (a loose cable
or a hub that resets); a second failure is one ``InputError`` line naming the phone.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgepack.core.errors import InputError
from edgepack.runners._attached import call, last_line

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 30

# ELF e_machine → the Android ABIs that can run it (an arm64 phone runs 32-bit ARM too).
_ELF_ABIS = {
    0xB7: ("arm64-v8a",),
    0x28: ("armeabi-v7a", "arm64-v8a"),
    0x3E: ("x86_64",),
    0x03: ("x86", "x86_64"),
}


def check_abi(binary: Path, abi: str, serial: str) -> None:
    """Refuse a binary built for another CPU before pushing it (the phone's own error,
    ``not executable: 64-bit ELF file``, comes late and says less)."""
    with binary.open("rb") as file:
        header = file.read(20)
    if header[:4] != b"\x7fELF" or len(header) < 20:
        raise InputError(f"{binary} is not an ELF executable: expected a {abi or 'device'} build")
    machine = int.from_bytes(header[18:20], "little")
    abis = _ELF_ABIS.get(machine)
    if abi and abis is not None and abi not in abis:
        raise InputError(
            f"{binary.name} is built for {abis[0]} but device {serial} is {abi}: "
            "give runner.benchmark_binary a build for the phone's ABI"
        )


@dataclass(frozen=True)
class Attached:
    serial: str
    state: str  # device, offline, unauthorized, no permissions, recovery, ...
    model: str | None


def parse_devices(text: str) -> list[Attached]:
    """Rows of ``adb devices -l``: ``SERIAL  STATE  usb:… product:… model:… device:…``."""
    attached = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*", "adb server")):
            continue
        serial, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        state = "no permissions" if rest.startswith("no permissions") else rest.split(" ")[0]
        model = re.search(r"\bmodel:(\S+)", rest)
        attached.append(Attached(serial, state, model.group(1) if model else None))
    return attached


def select_device(serial: str | None) -> str:
    """The serial to use; InputError (one line) when none, several, or not ready."""
    serial = serial or os.environ.get("ANDROID_SERIAL") or None
    listing = call(["adb", "devices", "-l"], timeout=LIST_TIMEOUT_S, what="listing Android devices")
    attached = parse_devices(listing.stdout)
    listed = ", ".join(f"{a.serial} ({a.state})" for a in attached)
    if serial is None:
        if not attached:
            raise InputError(
                "no Android device attached: `adb devices` lists none; connect a phone with "
                "USB debugging on"
            )
        if len(attached) > 1:
            raise InputError(
                f"{len(attached)} Android devices attached ({listed}): name one with "
                "runner.serial or ANDROID_SERIAL"
            )
        chosen = attached[0]
    else:
        found = [a for a in attached if a.serial == serial]
        if not found:
            raise InputError(
                f"Android device {serial} is not attached; `adb devices` lists: {listed or 'none'}"
            )
        chosen = found[0]
    if chosen.state == "unauthorized":
        raise InputError(
            f"Android device {chosen.serial} is unauthorized: unlock it and accept the "
            "'Allow USB debugging' prompt"
        )
    if chosen.state == "offline":
        raise InputError(
            f"Android device {chosen.serial} is offline: reconnect the cable or run "
            "`adb reconnect offline`"
        )
    if chosen.state != "device":
        raise InputError(
            f"Android device {chosen.serial} is in state '{chosen.state}', expected 'device'"
        )
    return chosen.serial


# What adb prints when the phone went away (cable, hub, reboot): worth one more try.
_LOST = re.compile(
    r"device '.*' not found|device offline|no devices/emulators found|error: closed|"
    r"protocol fault|device still authorizing|connection reset",
    re.IGNORECASE,
)


def _device_lost(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and bool(_LOST.search(result.stderr + result.stdout))


class Device:
    """adb commands to one phone, each with a timeout and one retry if the link drops."""

    def __init__(self, serial: str, timeout: float) -> None:
        self.serial = serial
        self.timeout = timeout

    def _adb(self, arguments: list[str], *, what: str) -> str:
        result = call(
            ["adb", "-s", self.serial, *arguments],
            timeout=self.timeout,
            what=f"{what} on {self.serial}",
            transient=_device_lost,
            check=False,
        )
        if _device_lost(result):
            raise InputError(
                f"lost Android device {self.serial} while {what}: "
                f"{last_line(result.stderr or result.stdout)}; check the cable and `adb devices`"
            )
        if result.returncode != 0:
            raise InputError(
                f"{what} on {self.serial} failed (exit {result.returncode}): "
                f"{last_line(result.stderr or result.stdout)}"
            )
        # benchmark_model logs to stderr (and logcat), perf_test to stdout: keep both.
        return result.stdout + result.stderr

    def shell(self, command: list[str], *, what: str) -> str:
        """One shell line on the phone; adb joins its arguments with spaces, so each part is
        quoted here and the phone's shell sees exactly ``command``."""
        return self._adb(["shell", shlex.join(command)], what=what)

    def push(self, source: Path, destination: str) -> None:
        # Absolute: a file named like an option (``-z…``, pathlib drops ``./``) stays a file.
        self._adb(["push", str(source.absolute()), destination], what=f"pushing {source.name}")

    def facts(self) -> dict[str, str]:
        """Model, Android version, ABI and SoC from ``getprop`` (one round trip)."""
        props = dict(
            re.findall(
                r"^\[([^\]]+)\]: \[([^\]]*)\]",
                self._adb(["shell", "getprop"], what="reading getprop"),
                re.M,
            )
        )

        def joined(*keys: str) -> str:
            return " ".join(props[k] for k in keys if props.get(k)).strip()

        return {
            "serial": self.serial,
            "model": joined("ro.product.manufacturer", "ro.product.model") or "unknown",
            "android": joined("ro.build.version.release") or "unknown",
            "sdk": joined("ro.build.version.sdk") or "unknown",
            "abi": joined("ro.product.cpu.abi"),
            # ro.soc.* exist from Android 12; older phones name the platform only.
            "soc": joined("ro.soc.manufacturer", "ro.soc.model")
            or joined("ro.board.platform")
            or joined("ro.hardware")
            or "unknown",
        }

    def remove(self, folder: str) -> None:
        """``rm -rf`` the scratch folder; a failure is logged, not raised (it must not hide
        the error that brought us here)."""
        try:
            self.shell(["rm", "-rf", folder], what="removing the scratch folder")
        except InputError as exc:
            log.warning("%s was not removed: %s", folder, exc)
