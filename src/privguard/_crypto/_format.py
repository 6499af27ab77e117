"""The privguard value format: headers, the length-prefixed encoding, base64url, nonces.

A privguard value is ASCII text ``pg1.<alg>.<key id>.<payload>``; see docs/encryption.md.
"""

from __future__ import annotations

import mmap
import os
import platform
import re
import struct
import sys
from binascii import Error as _BinasciiError
from binascii import a2b_base64, b2a_base64
from typing import Final, NoReturn, Protocol, SupportsIndex

__all__ = [
    "ALG_GCM",
    "ALG_HMAC",
    "ALG_SIV",
    "B64URL_TABLE",
    "HMAC_SIZE",
    "MAGIC",
    "NONCE_POOL",
    "NONCE_SIZE",
    "POOL_MARK",
    "PREFIX",
    "TAG_SIZE",
    "NoPickle",
    "PoolMark",
    "b64url",
    "decode_payload",
    "header",
    "is_protected",
    "is_valid_key_id",
    "lp",
    "parse",
    "refill_nonces",
    "take_nonce",
    "unb64url",
]

MAGIC: Final = "pg1"  # "pg" and format version 1
PREFIX: Final = MAGIC + "."
ALG_GCM: Final = "g"  # AES-256-GCM, 96-bit random nonce, 128-bit tag
ALG_SIV: Final = "s"  # AES-SIV (RFC 5297) with a 512-bit key: deterministic
ALG_HMAC: Final = "h"  # HMAC-SHA256: one-way
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
HMAC_SIZE: Final = 32

# The smallest decoded payload each algorithm can produce (an empty plaintext).
_MIN_PAYLOAD: Final = {ALG_GCM: NONCE_SIZE + TAG_SIZE, ALG_SIV: TAG_SIZE, ALG_HMAC: HMAC_SIZE}
_MAX_PAYLOAD_FIXED: Final = {ALG_HMAC: HMAC_SIZE}

_KEY_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
B64URL_TABLE: Final = bytes.maketrans(b"+/", b"-_")
# "+" and "/" map to "!", which strict decoding rejects: only the URL-safe alphabet passes.
_FROM_URL: Final = bytes.maketrans(b"-_+/", b"+/!!")


class NoPickle:
    """Refuses pickling and copying: the object holds key material or plaintext."""

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds key material and cannot be pickled or copied")

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        self._refuse()

    def __reduce__(self) -> NoReturn:
        self._refuse()

    def __getstate__(self) -> NoReturn:
        self._refuse()


def is_valid_key_id(key_id: object) -> bool:
    """1 to 32 characters of ``[A-Za-z0-9_-]``, starting with a letter or digit."""
    return isinstance(key_id, str) and _KEY_ID.fullmatch(key_id) is not None


def header(alg: str, key_id: str) -> str:
    """``pg1.<alg>.<key id>.``: the part of a value that names how to open it."""
    return f"{PREFIX}{alg}.{key_id}."


def lp(data: bytes) -> bytes:
    """One length-prefixed component: a 4-byte big-endian length, then the bytes."""
    return len(data).to_bytes(4, "big") + data


def b64url(data: bytes) -> str:
    """base64url (RFC 4648 section 5) with padding, as ``str``."""
    return b2a_base64(data, newline=False).translate(B64URL_TABLE).decode("ascii")


def unb64url(text: str) -> bytes | None:
    """Decode canonical padded base64url, or ``None``.

    Canonical means the text is exactly what :func:`b64url` would produce for the bytes,
    so no two texts decode to the same bytes: a standard-alphabet ``+`` or ``/`` is
    refused, and so is a last character whose unused low bits are not zero.
    """
    try:
        data = a2b_base64(text.encode("ascii").translate(_FROM_URL), strict_mode=True)
    except (UnicodeEncodeError, _BinasciiError):
        return None
    if text[-1:] == "=":
        if text[-2] == "=":
            if text[-3] not in "AQgw":  # one byte: the second character's low 4 bits are 0
                return None
        elif text[-2] not in "AEIMQUYcgkosw048":  # two bytes: the third's low 2 bits are 0
            return None
    return data


def parse(value: str) -> tuple[str, str, str] | None:
    """``(alg, key id, payload text)`` for a well-formed header, else ``None``.

    Checks the header and that the payload is non-empty; it does not decode the payload.
    """
    if not value.startswith(PREFIX):
        return None
    parts = value.split(".")
    if len(parts) != 4:
        return None
    _, alg, key_id, payload = parts
    if alg not in _MIN_PAYLOAD or not payload or _KEY_ID.fullmatch(key_id) is None:
        return None
    return alg, key_id, payload


def decode_payload(alg: str, payload: str) -> bytes | None:
    """The payload bytes if canonical and long enough for ``alg``, else ``None``."""
    data = unb64url(payload)
    if data is None or len(data) < _MIN_PAYLOAD[alg]:
        return None
    fixed = _MAX_PAYLOAD_FIXED.get(alg)
    if fixed is not None and len(data) != fixed:
        return None
    return data


def is_protected(value: str) -> bool:
    """True when ``value`` is a well-formed privguard ciphertext, token or pseudonym."""
    parsed = parse(value)
    return parsed is not None and decode_payload(parsed[0], parsed[2]) is not None


# Nonces: 96 random bits each, from os.urandom, drawn in batches. One getrandom() call
# per nonce costs about as much as the AES-GCM call itself; a batch costs one call per
# _NONCE_BATCH nonces.
#
# Fork safety. A child process starts with a copy of the pool, and a nonce the parent
# will use must never be used by the child too: under one key that is GCM key-stream reuse
# and lets an attacker forge tags. So every take checks POOL_MARK, which reads non-zero
# only in the process that filled the pool, and a pool filled in another process is
# discarded and refilled. os.register_at_fork (at the end) also empties the pool in the
# child, but runs only for os.fork(); a C-level fork() (uWSGI without
# py-call-osafterfork, a C extension) skips it. POOL_MARK does not depend on Python:
#
# - on Linux it is one private anonymous page with MADV_WIPEONFORK (Linux 4.14+): the
#   kernel hands every child of any fork a zeroed copy of that page. Reading it costs
#   about 20 ns; os.getpid() is a real system call on glibc 2.25+ (about 230 ns here,
#   more than a tenth of an encryption), and a pid also fails when a pid is reused (a
#   grandchild that gets its grandparent's pid) or repeats across pid namespaces;
#   A successful madvise is not taken as proof: some emulators (older qemu-user, as used
#   by multi-arch Docker builds) accept it and do nothing, and a hookless fork there
#   would reuse nonces. So the page is kept only once /proc/self/smaps shows the kernel
#   recorded the flag ("wf" in the page's VmFlags); smaps is read once, at import, up to
#   that page's mapping;
# - elsewhere (or when madvise refuses, or smaps cannot confirm it) it is a _PidMark:
#   the pid that filled the pool, compared with os.getpid() on every read.
#
# Threads: list.pop(), extend() and clear() are atomic, so threads never share a nonce.
# The mark is set only after the stale pool is cleared and is checked before each pop,
# so once any thread sees the mark set no stale nonce is left to pop.
_NONCE_BATCH: Final = 1024
NONCE_POOL: list[bytes] = []
# Splits a batch into its nonces in one C call: a slicing comprehension over 1024 nonces
# cost more per nonce (about 130 ns here) than getrandom itself (about 40 ns).
_SPLIT_BATCH: Final = struct.Struct(f"{NONCE_SIZE}s" * _NONCE_BATCH)


class PoolMark(Protocol):
    """Reads (index 0) non-zero only in the process that last set it to 1."""

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...


class _PidMark:
    """The fallback :class:`PoolMark`: remembers the pid that set it."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = 0

    def __getitem__(self, index: int, /) -> int:
        return 1 if os.getpid() == self._pid else 0

    def __setitem__(self, index: int, value: int, /) -> None:
        self._pid = os.getpid() if value else 0


# MADV_WIPEONFORK is 18 in the generic Linux ABI; Python 3.11's mmap does not name it.
# Only on architectures known to use the generic numbering (parisc, for one, did not).
_MADV_WIPEONFORK: Final = 18
_GENERIC_MADV_MACHINES: Final = frozenset(
    {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "armv8l", "ppc64le",
     "ppc64", "s390x", "riscv64", "loongarch64"}
)  # fmt: skip


_SMAPS: Final = "/proc/self/smaps"
# The first line of a mapping in smaps, "low-high perms offset dev inode [path]", and the
# field privguard reads. Both start with a newline: a pattern that starts with a literal
# is searched for in C, while "^" with re.MULTILINE is tried at every byte (1.5 ms here
# for a 220 KB smaps, longer than the kernel takes to write it).
_SMAPS_MAPPING: Final = re.compile(rb"\n([0-9a-f]+)-([0-9a-f]+) ")
_SMAPS_VM_FLAGS: Final = re.compile(rb"\nVmFlags:([^\n]*)\n")


def _mapping_vm_flags(address: int, smaps_path: str = _SMAPS) -> list[str] | None:
    """The ``VmFlags`` of the mapping that holds ``address``, from ``/proc/self/smaps``.

    ``None`` when the file cannot be read, no mapping holds the address, or the mapping
    has no ``VmFlags`` line (Linux before 3.8). Mappings are listed in address order, so
    reading stops at the mapping (or at the first one past it).
    """
    try:
        with open(smaps_path, "rb") as smaps:
            data = b"\n"  # so that the first line, too, follows a newline
            searched = 0  # no mapping starts in data[:searched] that is still to be read
            while True:
                chunk = smaps.read(1 << 16)
                at_end = not chunk
                data += chunk
                while (mapping := _SMAPS_MAPPING.search(data, searched)) is not None:
                    low, high = int(mapping[1], 16), int(mapping[2], 16)
                    if low > address:
                        return None
                    if address < high:
                        following = _SMAPS_MAPPING.search(data, mapping.end())
                        if following is None and not at_end:
                            break  # read on: the mapping's fields may be cut off
                        end = len(data) if following is None else following.start() + 1
                        flags = _SMAPS_VM_FLAGS.search(data, mapping.end() - 1, end)
                        if flags is None:
                            return None
                        return flags[1].decode("ascii", "replace").split()
                    searched = mapping.end() - 1
                if at_end:
                    return None
    except (OSError, ValueError):
        return None


def _page_address(page: mmap.mmap) -> int:
    import ctypes  # only here (1-2.5 ms to import), once madvise has succeeded

    anchor = ctypes.c_char.from_buffer(page)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # the page cannot be closed while a buffer export is alive


def _wipe_on_fork_page() -> mmap.mmap | None:
    """One private anonymous page that every forked child sees zeroed, or ``None``.

    ``None`` also when the kernel accepted ``madvise`` but smaps does not show the page
    marked wipe-on-fork (``wf``): an emulator that ignores the advice.
    """
    wipe = getattr(mmap, "MADV_WIPEONFORK", None)
    if wipe is None:
        if not sys.platform.startswith("linux") or platform.machine() not in (
            _GENERIC_MADV_MACHINES
        ):
            return None
        wipe = _MADV_WIPEONFORK
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        page.madvise(wipe)
        flags = _mapping_vm_flags(_page_address(page))
    except (OSError, ValueError, AttributeError, ImportError):  # EINVAL before Linux 4.14
        flags = None
    if flags is None or "wf" not in flags:
        page.close()
        return None
    return page


def _choose_pool_mark() -> PoolMark:
    """The wipe-on-fork page where the kernel confirms it, else a :class:`_PidMark`."""
    page = _wipe_on_fork_page()
    return _PidMark() if page is None else page


POOL_MARK: PoolMark = _choose_pool_mark()


def refill_nonces() -> bytes:
    """Refill the pool with a fresh batch and return one more fresh nonce.

    Called when the pool is empty or was filled in another process; a pool filled in
    another process is discarded first.
    """
    fresh: list[bytes] = list(_SPLIT_BATCH.unpack(os.urandom(NONCE_SIZE * _NONCE_BATCH)))
    nonce = fresh.pop()
    if not POOL_MARK[0]:
        NONCE_POOL.clear()  # another process's nonces (or none yet)
    NONCE_POOL.extend(fresh)
    POOL_MARK[0] = 1  # only now: see "Threads" above
    return nonce


def take_nonce() -> bytes:
    """A fresh random 96-bit nonce. (The hot path inlines this.)"""
    try:
        return NONCE_POOL.pop() if POOL_MARK[0] else refill_nonces()
    except IndexError:
        return refill_nonces()


def _forget_nonces_after_fork() -> None:
    NONCE_POOL.clear()
    POOL_MARK[0] = 0


os.register_at_fork(after_in_child=_forget_nonces_after_fork)
