"""Name a guest address: which shared object it lies in, and which function of it.

The guest's /proc/self/maps (read by guest_bench.py after the timed region) says where each
object was mapped and from which file offset; the object's ELF program headers turn a file
offset into the address its symbols use, and its symbol table (``.symtab`` where the object
kept it, as LiteRT's ``libpywrap_litert_common.so`` does, else ``.dynsym``) names the function.
A small reader of ELF64 little-endian (aarch64) files, so no binutils or pyelftools is needed.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION = struct.Struct("<IIQQQQIIQQ")
_PROGRAM = struct.Struct("<IIQQQQQQ")
_SYMBOL = struct.Struct("<IBBHQQ")
_SHT_SYMTAB, _SHT_DYNSYM, _PT_LOAD = 2, 11, 1
_FUNCTIONS = (2, 10)  # STT_FUNC, STT_GNU_IFUNC


@dataclass(frozen=True)
class Symbols:
    """One object's functions, sorted by address, and its loadable segments."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]  # start + size (a size of 0 reaches the next symbol)
    names: tuple[str, ...]
    segments: tuple[tuple[int, int, int], ...]  # (file offset, file size, vaddr) per PT_LOAD

    def vaddr(self, offset: int) -> int | None:
        """The link-time address of a file offset, or None outside every loaded segment."""
        for start, size, vaddr in self.segments:
            if start <= offset < start + size:
                return vaddr + offset - start
        return None

    def offset(self, vaddr: int) -> int | None:
        """The file offset of a link-time address, or None outside every loaded segment."""
        for start, size, base in self.segments:
            if base <= vaddr < base + size:
                return start + vaddr - base
        return None

    def span(self, name: str) -> tuple[int, int] | None:
        """(start, end) link-time addresses of the function called ``name``, or None."""
        try:
            at = self.names.index(name)
        except ValueError:
            return None
        return self.starts[at], self.ends[at]

    def name(self, vaddr: int) -> str | None:
        at = bisect.bisect_right(self.starts, vaddr) - 1
        if at < 0 or vaddr >= self.ends[at]:
            return None
        return self.names[at]


@cache
def read_symbols(path: Path) -> Symbols:
    """The functions of the ELF64 little-endian object at ``path`` (empty when it is not one)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return Symbols((), (), (), ())
    header = _HEADER.unpack_from(data)
    phoff, shoff, phnum, shnum = header[5], header[6], header[10], header[12]
    programs = [_PROGRAM.unpack_from(data, phoff + i * _PROGRAM.size) for i in range(phnum)]
    segments = tuple((p[2], p[5], p[3]) for p in programs if p[0] == _PT_LOAD)
    sections = [_SECTION.unpack_from(data, shoff + i * _SECTION.size) for i in range(shnum)]
    table = _symbol_table(sections)
    if table is None:
        return Symbols((), (), (), segments)
    strings = sections[table[6]]  # sh_link: the table's string section
    found: dict[int, tuple[int, str]] = {}
    for _name, info, _other, shndx, value, size in _SYMBOL.iter_unpack(
        data[table[4] : table[4] + table[5]]
    ):
        if info & 0xF in _FUNCTIONS and shndx != 0 and value != 0:
            name = _string(data, strings[4] + _name)
            if value not in found or found[value][0] < size:  # aliases: keep the widest
                found[value] = (size, name)
    return _sorted(found, segments)


def _symbol_table(sections: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    for kind in (_SHT_SYMTAB, _SHT_DYNSYM):
        for section in sections:
            if section[1] == kind and section[5] > 0:
                return section
    return None


def _string(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\0", offset)].decode("utf-8", "replace")


def _sorted(found: dict[int, tuple[int, str]], segments: tuple) -> Symbols:
    starts = tuple(sorted(found))
    ends = []
    for at, start in enumerate(starts):
        size = found[start][0]
        following = starts[at + 1] if at + 1 < len(starts) else start + max(size, 1)
        ends.append(start + size if size else following)
    names = tuple(found[start][1] for start in starts)
    return Symbols(starts, tuple(ends), names, segments)


@dataclass(frozen=True)
class Mapping:
    """One executable mapping of the guest process."""

    start: int
    end: int
    offset: int
    path: str  # as the guest saw it


def parse_maps(text: str) -> list[Mapping]:
    """The executable, file-backed mappings of a /proc/self/maps text, by start address."""
    found = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "x" not in fields[1] or not fields[5].startswith("/"):
            continue
        low, _, high = fields[0].partition("-")
        found.append(Mapping(int(low, 16), int(high, 16), int(fields[2], 16), fields[5]))
    return sorted(found, key=lambda mapping: mapping.start)


class Resolver:
    """Guest address → (object name, function name or None); objects are found on the host
    as the guest named them, or under the guest's root (``qemu -L``)."""

    def __init__(self, maps: list[Mapping], root: Path) -> None:
        self._maps = maps
        self._starts = [mapping.start for mapping in maps]
        self._root = root

    def resolve(self, address: int) -> tuple[str, str | None]:
        at = bisect.bisect_right(self._starts, address) - 1
        if at < 0 or address >= self._maps[at].end:
            return "[anonymous]", None  # code outside every file: QEMU's signal trampoline
        mapping = self._maps[at]
        module = mapping.path.rsplit("/", 1)[-1]
        symbols = self._symbols(mapping.path)
        vaddr = symbols.vaddr(address - mapping.start + mapping.offset)
        return module, None if vaddr is None else symbols.name(vaddr)

    def _symbols(self, guest_path: str) -> Symbols:
        host = Path(guest_path)
        if not host.is_file():
            host = self._root / guest_path.lstrip("/")
        if not host.is_file():
            return Symbols((), (), (), ())
        return read_symbols(host)
