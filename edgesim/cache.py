"""The on-disk cache of traced Workloads and routing sequences, in a format that holds no code.

Public names: ``cache_dir``, ``folder``, ``make_key``, ``load``, ``save``, ``cached``, ``ship``,
``shipped``, ``file_fingerprint``, ``FORMAT_VERSION``, ``SHIPPED``.

Entries live in ``$EDGESIM_CACHE`` (default ``~/.cache/edgesim``), one file per entry,
``<kind>/<key>.npz``, named by a SHA-256 of the entry's key parts. An entry is an uncompressed
zip of ``doc.json`` (a header, then the value) and NumPy ``.npy`` members for the arrays, read
with ``allow_pickle=False``. The JSON holds only data: numbers, strings, tuples, lists, dicts,
NumPy scalars and arrays, and the dataclasses of the Workload IR (``edgesim.workload``), written
as the values of their ``dataclasses.fields`` (whose names the header records), so that a field
added to the IR round-trips without a change here. Repeated objects are written once and
referred to afterwards, so a loaded Workload shares what the traced one shared and its
``digest()`` (a pickle, which records sharing) is the same byte for byte.

Why data rather than a pickle signed with a per-user key (HMAC): unpickling a file can run code,
so a signed pickle is safe only while the key is secret and every entry was written by edgesim;
a leaked or reused key, or a bug in whatever wrote the file, turns the cache into code execution
again. A decoder that can only build numbers, strings, containers and the IR's own classes
(whose constructors validate their fields) cannot be made to run anything, needs no key to
manage, and leaves the entries readable by any tool.

The folder is private: it is created with mode 0o700, and a folder another user owns or that
group or others can write to is refused with a ``CacheError`` naming the folder and its mode.
Writes are atomic (a temporary file renamed into place), so a killed process never leaves a
half-written entry. An entry that is unreadable, truncated, of another format version, written
for another key or by other IR fields, or not what this module writes, is a miss: the caller
rebuilds it.

Behind the user's cache stand the entries shipped inside the package (``SHIPPED``,
``edgesim/shipped/<kind>/<key>.npz.gz``): the registry models traced at their defaults and the
routes of their first routing batch, written by ``python -m edgesim.ship``. They are the same
entries, gzip-compressed (a tenth of the size); ``load`` reads one when the user's cache misses,
inflating at most ``SHIPPED_LIMIT`` bytes, so a first run of a registry model needs no trace and
no torch. They are keyed like any entry, so a change of format or of a model's spec makes them
misses (and ``tests/test_shipped.py`` fails until they are written again).

>>> make_key("dense_r50", {"precision": "int8"}) == make_key("dense_r50", {"precision": "int8"})
True
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import edgesim.workload as _ir
from edgesim.errors import CacheError
from edgesim.outputs import read_regular

__all__ = ["FORMAT_VERSION", "SHIPPED", "cache_dir", "cached", "file_fingerprint", "folder", "load",
           "make_key", "save", "ship", "shipped"]

#: Bump when the meaning or the file format of a cached entry changes (tracer, IR semantics).
#: 3: JSON + .npy entries instead of pickles. 7: ``mlw`` counts Vela 5.2.0's (regor's) encoder.
FORMAT_VERSION = 7

#: The entries shipped inside the package (read-only; ``python -m edgesim.ship`` writes them).
SHIPPED = Path(__file__).resolve().parent / "shipped"
#: The most bytes a shipped entry may inflate to.
SHIPPED_LIMIT = 64 << 20
#: The most bytes a cache entry may hold (the largest Workload, sigmab_r50's, is ~10 MiB).
ENTRY_LIMIT = 1 << 30

_DOC = "doc.json"
_NUMERIC = "biuf"  # NumPy dtype kinds an entry may hold: bool, int, uint, float


class _Bad(ValueError):
    """An entry that is not what this module writes."""


# --------------------------------------------------------------------------- folder and keys

def cache_dir() -> Path:
    """The cache folder, ``$EDGESIM_CACHE`` or ``~/.cache/edgesim``, created private (0o700).

    Raises ``CacheError`` when the folder belongs to another user or group or others can
    write to it. A folder that cannot be created is returned as it is (every load then misses
    and every save is skipped).
    """
    env = os.environ.get("EDGESIM_CACHE")
    if not env:
        home = os.environ.get("HOME")
        if home is not None and home.strip() in ("", "/"):   # would be /.cache/edgesim
            raise CacheError(f"no cache folder: HOME is {home!r}; set EDGESIM_CACHE to a "
                             "folder of your own")
    root = Path(env) if env else Path.home() / ".cache" / "edgesim"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return root
    _check_private(root)
    return root


def _check_private(folder: Path) -> None:
    try:
        st = folder.stat()
    except OSError:
        return
    mode = st.st_mode & 0o777
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if st.st_uid != uid:
        raise CacheError(f"cache folder {folder} belongs to another user (uid {st.st_uid}, "
                         f"mode {mode:#o}); set EDGESIM_CACHE to a folder of your own")
    if st.st_mode & 0o022:
        raise CacheError(f"cache folder {folder} can be written by other users (mode "
                         f"{mode:#o}); run `chmod 700 {folder}` or set EDGESIM_CACHE to a "
                         "private folder")


def make_key(*parts: Any) -> str:
    """A stable hex key for JSON-able parts (dict keys sorted)."""
    text = json.dumps([FORMAT_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


#: A data folder's fingerprint reads the files of at most this many levels of it (what the
#: loaders read: images, or class folders of images) and at most this many entries.
FOLDER_DEPTH = 2
FOLDER_ENTRIES = 1_000_000


def _folder_files(root: Path) -> list[tuple[Path, os.stat_result]]:
    """The regular files of ``root`` and its sub-folders (``FOLDER_DEPTH`` levels, as the
    loaders see them: symlinks followed) with their ``stat``, sorted; an entry that vanishes
    while it is read (``/proc``) is skipped, and a folder of more than ``FOLDER_ENTRIES`` is a
    ``DataError``."""
    from edgesim.errors import DataError
    out: list[tuple[Path, os.stat_result]] = []
    seen = 0
    level = [root]
    for _ in range(FOLDER_DEPTH):
        below = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue       # vanished or unreadable: the loader says so if it needs it
            seen += len(entries)
            if seen > FOLDER_ENTRIES:
                raise DataError(f"{root}: a folder of more than {FOLDER_ENTRIES:,} entries; "
                                "expected a data folder (images, or one folder per class)")
            for e in entries:
                try:
                    if e.is_dir():
                        below.append(Path(e.path))
                    elif e.is_file():
                        out.append((Path(e.path), e.stat()))
                except OSError:
                    continue
        level = below
    return sorted(out, key=lambda fs: fs[0])


def file_fingerprint(path: str | os.PathLike | None) -> str | None:
    """Content hash of a file (or of a folder's file names, sizes and times, ``_folder_files``);
    None for None."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f, st in _folder_files(p):
            h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    elif p.is_file():
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        return f"missing:{p}"
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------- the IR classes

#: The IR classes an entry may build (``edgesim.workload``): what a Workload is made of. A
#: dataclass the IR exports for reading only (``Window``, a view of an op's ``meta``) is not
#: stored, and so not part of the format.
STORED = ("LayerOp", "Path", "WeightBlock", "Workload")


def _ir_classes() -> dict[str, type]:
    """The dataclasses of ``STORED``: the only classes an entry may build."""
    out = {}
    for name in STORED:
        obj = getattr(_ir, name)
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            out[name] = obj
    return out


def _schema() -> list[list[str]]:
    """Each IR class with its field names: an entry written by other fields is a miss."""
    return [[name, *(f.name for f in dataclasses.fields(cls))]
            for name, cls in sorted(_ir_classes().items())]


# --------------------------------------------------------------------------- encoding

class _Encoder:
    """Values to JSON-able data; arrays set aside; an object seen again becomes ``{"@r": i}``.

    Strings, containers, arrays and IR objects are numbered in the order they are finished
    (children first), the same order ``_Decoder`` numbers what it builds.
    """

    def __init__(self) -> None:
        self.classes = {cls: name for name, cls in _ir_classes().items()}
        self.memo: dict[int, int] = {}
        self.alive: list[Any] = []    # keeps every numbered object alive, so ids stay unique
        self.arrays: list[np.ndarray] = []

    def _number(self, obj: Any, data: Any) -> Any:
        self.memo[id(obj)] = len(self.alive)
        self.alive.append(obj)
        return data

    def encode(self, v: Any) -> Any:
        if v is None or type(v) in (bool, int, float):
            return v
        if isinstance(v, np.generic) and v.dtype.kind in _NUMERIC:
            return {"@n": v.dtype.str, "v": v.item()}
        if id(v) in self.memo:
            return {"@r": self.memo[id(v)]}
        if type(v) is str:
            return self._number(v, v)
        if type(v) is tuple:
            return self._number(v, {"@t": [self.encode(x) for x in v]})
        if type(v) is list:
            return self._number(v, [self.encode(x) for x in v])
        if type(v) is dict:
            return self._number(v, {"@d": [[self.encode(k), self.encode(x)]
                                          for k, x in v.items()]})
        if type(v) in (set, frozenset):
            tag = "@s" if type(v) is set else "@f"
            return self._number(v, {tag: [self.encode(x) for x in v]})
        if type(v) in self.classes:
            values = [self.encode(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init]
            return self._number(v, {"@o": self.classes[type(v)], "v": values})
        if isinstance(v, np.ndarray) and v.dtype.kind in _NUMERIC:
            self.arrays.append(v)
            return self._number(v, {"@a": len(self.arrays) - 1})
        raise TypeError(f"cannot cache a {type(v).__name__}")


class _Decoder:
    """JSON-able data back to values; builds only what ``_Encoder`` writes.

    ``decode`` dispatches on the type first and on the tag of a one-key object second (a
    Workload is thousands of small values; this walk is most of a cached run's load time).
    """

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.classes = {name: (cls, tuple(f.name for f in dataclasses.fields(cls) if f.init))
                        for name, cls in _ir_classes().items()}
        self.built: list[Any] = []
        self.arrays = arrays
        self.tags = {"@r": self._ref, "@t": self._tuple, "@d": self._dict, "@a": self._array,
                     "@s": self._set, "@f": self._frozenset}

    def decode(self, d: Any) -> Any:
        t = type(d)
        if t is str:
            self.built.append(d)
            return d
        if t is dict:
            if len(d) == 1:
                ((tag, body),) = d.items()
                if tag not in self.tags:
                    raise _Bad(f"unknown tag {tag!r}")
                return self.tags[tag](body)
            if d.keys() == {"@o", "v"}:
                return self._object(d["@o"], d["v"])
            if d.keys() == {"@n", "v"}:
                return self._scalar(d["@n"], d["v"])
            raise _Bad("unexpected object")
        if t is list:
            out = [self.decode(x) for x in d]
            self.built.append(out)
            return out
        if d is None or t is int or t is float or t is bool:
            return d
        raise _Bad("unexpected value")

    def _items(self, body: Any) -> list[Any]:
        if type(body) is not list:
            raise _Bad("unexpected container")
        return [self.decode(x) for x in body]

    def _keep(self, obj: Any) -> Any:
        self.built.append(obj)
        return obj

    def _ref(self, i: Any) -> Any:
        if type(i) is not int or i < 0:
            raise _Bad("bad reference")
        return self.built[i]

    def _tuple(self, body: Any) -> tuple:
        return self._keep(tuple(self._items(body)))

    def _set(self, body: Any) -> set:
        return self._keep(set(self._items(body)))

    def _frozenset(self, body: Any) -> frozenset:
        return self._keep(frozenset(self._items(body)))

    def _dict(self, body: Any) -> dict:
        if type(body) is not list:
            raise _Bad("unexpected dict")
        out = {}
        for kv in body:
            if type(kv) is not list or len(kv) != 2:
                raise _Bad("unexpected dict item")
            k = self.decode(kv[0])
            out[k] = self.decode(kv[1])
        return self._keep(out)

    def _array(self, i: Any) -> np.ndarray:
        if type(i) is not int or not 0 <= i < len(self.arrays):
            raise _Bad("bad array reference")
        return self._keep(self.arrays[i])

    def _scalar(self, dtype: Any, v: Any) -> np.generic:
        if type(dtype) is not str or type(v) not in (bool, int, float):
            raise _Bad("not a numeric scalar")
        dt = np.dtype(dtype)
        if dt.kind not in _NUMERIC:
            raise _Bad("not a numeric scalar")
        return dt.type(v)

    def _object(self, name: Any, values: Any) -> Any:
        # values in the order of the class's init fields (the header's schema vouches for it)
        cls, names = self.classes.get(name, (None, ())) if type(name) is str else (None, ())
        if cls is None or type(values) is not list or len(values) != len(names):
            raise _Bad(f"not an IR object: {name!r}")
        return self._keep(cls(**dict(zip(names, [self.decode(x) for x in values],
                                         strict=True))))


# --------------------------------------------------------------------------- entries

def folder(kind: str, create: bool = True) -> Path | None:
    """The cache's sub-folder for ``kind`` entries (created owner-only when ``create``), or
    None when it is not a private folder of ours (a symlink, another owner, writable by
    others) or does not exist: every load of that kind then misses and every save is skipped,
    exactly as for the root (``cache_dir``). Loading creates nothing."""
    p = cache_dir() / kind
    try:
        if create:
            p.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(p)
    except OSError:
        return None
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        return None
    return p


def _path(kind: str, key: str, create: bool = False) -> Path | None:
    d = folder(kind, create)
    return None if d is None else d / f"{key}.npz"


def _header(kind: str, key: str) -> dict[str, Any]:
    return {"edgesim_cache": FORMAT_VERSION, "kind": kind, "key": key, "schema": _schema()}


def _read(p: Path | io.BytesIO, kind: str, key: str) -> Any:
    with zipfile.ZipFile(p) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        if any(i.compress_type != zipfile.ZIP_STORED for i in infos.values()):
            raise _Bad("compressed member")  # never inflate: no decompression bombs
        doc = json.loads(zf.read(infos[_DOC]).decode())
        if not isinstance(doc, dict) or doc.get("header") != _header(kind, key):
            raise _Bad("other format, key or IR fields")
        n = doc.get("arrays")
        if type(n) is not int or n < 0:
            raise _Bad("bad array count")
        arrays = [_npy(zf.read(infos[f"a{i}.npy"])) for i in range(n)]
    return _Decoder(arrays).decode(doc.get("value"))


def _npy(data: bytes) -> np.ndarray:
    """A numeric ``.npy`` array from its bytes; its header must describe exactly those bytes
    (a header claiming a huge shape allocates nothing)."""
    fmt = np.lib.format
    fh = io.BytesIO(data)
    version = fmt.read_magic(fh)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(fh)
    count = math.prod(shape)
    if dtype.kind not in _NUMERIC or count * dtype.itemsize != len(data) - fh.tell():
        raise _Bad("array header does not match its data")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=fh.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


_MISS = (OSError, EOFError, KeyError, IndexError, TypeError, ValueError, RecursionError,
         UnicodeDecodeError, zipfile.BadZipFile)


def load(kind: str, key: str) -> Any | None:
    """The cached value, or None when absent, unreadable or not a valid entry for this key.

    The user's cache first, then the entries shipped inside the package (``shipped``).
    Raises ``CacheError`` only for an unsafe cache folder (see ``cache_dir``).
    """
    p = _path(kind, key)
    if p is None:
        return shipped(kind, key)
    try:   # read only a regular file (a FIFO planted here would block the open)
        data = read_regular(p, ENTRY_LIMIT)
        if len(data) > ENTRY_LIMIT:
            raise _Bad("larger than any entry")
        return _read(io.BytesIO(data), kind, key)
    except _MISS:
        pass
    return shipped(kind, key)


def shipped(kind: str, key: str) -> Any | None:
    """The entry shipped inside the package for ``kind`` and ``key``, or None."""
    p = SHIPPED / kind / f"{key}.npz.gz"
    try:
        with gzip.open(p, "rb") as fh:
            data = fh.read(SHIPPED_LIMIT + 1)
        if len(data) > SHIPPED_LIMIT:
            return None
        return _read(io.BytesIO(data), kind, key)
    except (*_MISS, gzip.BadGzipFile):
        return None


def _entry(kind: str, key: str, obj: Any) -> bytes | None:
    """The bytes of the entry for ``obj`` (None when it holds what an entry cannot)."""
    enc = _Encoder()
    try:
        value = enc.encode(obj)
    except (TypeError, RecursionError):
        return None
    doc = {"header": _header(kind, key), "arrays": len(enc.arrays), "value": value}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        # members dated 1980-01-01, so an entry's bytes depend on its value only
        zf.writestr(zipfile.ZipInfo(_DOC), json.dumps(doc, separators=(",", ":")))
        for i, a in enumerate(enc.arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"a{i}.npy"), buf.getvalue())
    return out.getvalue()


def _write_atomic(p: Path, data: bytes, public: bool = False) -> None:
    """Write ``data`` to ``p`` through a temporary file renamed into place (mode 0o600, or
    0o644 when ``public``: a file shipped in the package)."""
    tmp = None
    try:
        p.parent.mkdir(mode=0o755 if public else 0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if public:
            os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def save(kind: str, key: str, obj: Any) -> None:
    """Store ``obj`` atomically; a cache that cannot be written is silently skipped.

    ``obj`` is a Workload, an array, or plain data of the kinds the module docstring lists.
    """
    data = _entry(kind, key, obj)
    if data is None:
        return
    try:
        p = _path(kind, key, create=True)
        if p is not None:
            _write_atomic(p, data)
    except OSError:
        pass


def cached(kind: str, key: str, make: Callable[[], Any], *, use_cache: bool = True,
           valid: Callable[[Any], bool] | None = None) -> Any:
    """The entry ``kind``/``key`` when there is one (and ``valid(entry)`` holds), else
    ``make()``, saved for next time: the one load-or-make step every cached stage takes
    (``use_cache=False``: always ``make()``, nothing saved)."""
    if use_cache:
        got = load(kind, key)
        if got is not None and (valid is None or valid(got)):
            return got
    obj = make()
    if use_cache:
        save(kind, key, obj)
    return obj


def ship(folder: str | os.PathLike, kind: str, key: str, obj: Any) -> Path:
    """Write ``obj`` as a shipped entry, ``folder/<kind>/<key>.npz.gz`` (gzip without a file
    name or time in its header, so the same entry gives the same bytes); returns the path.

    Raises ``TypeError`` for a value an entry cannot hold, ``OSError`` when it cannot write.
    """
    data = _entry(kind, key, obj)
    if data is None:
        raise TypeError(f"cannot ship a {type(obj).__name__}")
    p = Path(folder) / kind / f"{key}.npz.gz"
    _write_atomic(p, gzip.compress(data, compresslevel=9, mtime=0), public=True)
    return p
