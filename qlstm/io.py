"""File helpers: atomic writes, output folders that are either complete or absent, text decoding.

Every file qlstm writes goes through :func:`atomic_write_bytes` (write to a temporary name in the
same folder, fsync, rename), so an interrupted or failed command never leaves a partial file that
looks complete. Multi-file outputs use :func:`staged_dir`.

Every text file qlstm reads (recordings, configs, label files, model specs) is decoded by
:func:`decode_text` / :func:`read_text`: a byte-order mark (Excel's "CSV UTF-8" and "Unicode
text" exports) selects UTF-8, UTF-16 or UTF-32 and is dropped; undecodable bytes are one error line
naming the file, the byte offset and the encoding, never silently replaced.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qlstm.errors import QlstmError


def _umask() -> int:
    """The process umask (there is no way to read it without setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create 0600/0700 entries; finished outputs get the usual umask-derived modes.


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library that writes files itself
    (``np.save``, ``h5py``, ``fig.savefig``, ``onnx.save``); renamed onto ``path`` only on success.
    The temporary name keeps the real suffix so libraries that dispatch on it still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _probe_create(out: Path, option: str, parent: Path, what: str) -> None:
    """Create and remove an entry in the existing folder ``parent``: a place where nothing can be
    made (``/proc``, ``/sys``, a read-only mount, a folder without write permission) is found by
    trying, not by guessing from modes (root passes every mode check). Raises QlstmError."""
    try:
        if what == "file":
            fd, tmp = tempfile.mkstemp(prefix=".qlstm-probe.", dir=parent)
            os.close(fd)
            os.unlink(tmp)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".qlstm-probe.", dir=parent))
    except OSError as exc:
        raise QlstmError(
            f"{option} {out}: cannot create a {what} in {parent} ({exc.strerror or type(exc).__name__})"
        ) from None


def _check_ancestor(out: Path, option: str) -> None:
    """The nearest existing ancestor of ``out`` must be a folder where a folder can be created."""
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise QlstmError(f"{option} {out}: {parent} is a file, not a folder")
            _probe_create(out, option, parent, "folder")
            return


def check_out_folder(out: Path, overwrite: bool = False, inputs: tuple[Path | None, ...] = ()) -> None:
    """Refuse an output folder before any work: an existing file, a place where no folder can be
    created (its nearest existing ancestor is tried: ``/proc``, a read-only mount), a non-empty folder without
    ``overwrite``, or a folder that is, contains or lies inside one of ``inputs`` (paths resolved,
    symlinks followed), which ``--overwrite`` would otherwise delete. Raises QlstmError (one line).
    Commands that resume or update their folder (``qlstm run``, ``explore``, ``train``) pass
    ``overwrite=True`` and judge a non-empty folder themselves. Output files: :func:`check_out_file`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QlstmError(f"--out {out}: exists and is not a folder")
    _check_ancestor(out, "--out")
    real = out.resolve()
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp).resolve()
        if real == src or real in src.parents or src in real.parents:
            raise QlstmError(
                f"--out {out}: is, contains or lies inside the input {inp}; choose a folder apart from it"
            )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise QlstmError(f"{out} already exists and is not empty; choose another folder or pass --overwrite")


def check_out_file(out: Path | None, option: str = "--out", parent_must_exist: bool = False) -> None:
    """Refuse an output file before any work (the file counterpart of :func:`check_out_folder`):
    an existing folder or other non-regular file (a device, a FIFO: the atomic rename of
    :func:`atomic_path` would replace it), a folder in which no file can be created (``/proc``,
    ``/sys``, a read-only mount; tried, not guessed), or a missing folder that cannot be created
    (its nearest existing ancestor is a file or refuses a folder), or, with ``parent_must_exist``,
    any missing folder (a typo rather than something to create). ``None`` (option not given)
    passes. Raises QlstmError (one line naming ``option``)."""
    if out is None:
        return
    out = Path(out)
    if out.is_dir():
        raise QlstmError(f"{option} {out}: is a folder; give a file name")
    if out.exists() and not out.is_file():
        raise QlstmError(f"{option} {out}: exists and is not a regular file")
    parent = out.absolute().parent
    if parent.is_dir():
        _probe_create(out, option, parent, "file")
    elif parent.exists():
        raise QlstmError(f"{option} {out}: {parent} is a file, not a folder")
    elif parent_must_exist:
        raise QlstmError(f"{option} {out}: folder {out.parent} does not exist")
    else:
        _check_ancestor(out, option)


def _remove_dead_stagings(final: Path) -> None:
    """Remove staging folders of ``final`` left by processes that no longer exist.

    A process killed outright (SIGKILL, a lost machine) cannot clean up; its staging folder names
    its pid (``.NAME.staging.PID.XXXX``), so the next writer of ``final`` removes it unless that
    pid is alive (a concurrent writer; a reused pid only delays the clean-up).
    """
    for old in final.parent.glob(f".{glob.escape(final.name)}.staging.*"):
        pid = old.name[len(final.name) + len(".staging.") + 1 :].split(".", 1)[0]
        if not pid.isdigit() or not old.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (PermissionError, OverflowError):  # alive under another user, or not a pid
            continue


def new_staging(final: Path) -> Path:
    """A new hidden staging folder beside ``final`` (``.NAME.staging.PID.XXXX``, mode 0700), after
    removing those that killed writers of ``final`` left (:func:`_remove_dead_stagings`)."""
    _remove_dead_stagings(final)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.staging.{os.getpid()}.", dir=final.parent))


@contextlib.contextmanager
def staged_dir(final: Path, overwrite: bool = False, inputs: tuple[Path | None, ...] = ()) -> Iterator[Path]:
    """Build a multi-file output in a hidden sibling folder, then move it to ``final``.

    ``final`` is checked by :func:`check_out_folder` (not a file, not overlapping ``inputs``, empty
    unless ``overwrite``); on failure the staging folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    check_out_folder(final, overwrite, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = new_staging(final)
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib  # here: loading OpenSSL costs every command's start-up ~2 ms

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(weights: dict[str, np.ndarray]) -> str:
    """The one hash of a set of weight arrays: sha256 over the sorted names, shapes and float64
    bytes (``name:shape;`` then the data), used by the C-simulation cache key and the exported
    files' ``qlstm.weights_sha256`` metadata to spot stale artifacts."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(weights):
        a = np.ascontiguousarray(weights[k], dtype=np.float64)
        h.update(f"{k}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ====================================================================== text encodings
#: Byte-order marks and Python's codecs that read the text behind them (and drop the mark);
#: UTF-32 LE first: its mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: UTF-16/32 without a mark, by which of the first 4 bytes are NUL (an ASCII first character:
#: the rule of RFC 4627 section 3, as in :func:`json.loads` for bytes).
_NUL_PATTERNS = {
    (True, True, True, False): "utf-32-be",
    (False, True, True, True): "utf-32-le",
    (True, False, True, False): "utf-16-be",
    (False, True, False, True): "utf-16-le",
}
#: The legacy 8-bit encoding tried when text is not UTF-8 (Western Windows and Excel "CSV").
LEGACY_ENCODING = "cp1252"
_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1252": "UTF-8 or Windows-1252"}


def text_encoding(head: bytes) -> str:
    """The Python codec of a text starting with ``head`` (its first 4 bytes suffice): the one its
    byte-order mark names ("utf-8-sig", "utf-16", "utf-32": they drop the mark), UTF-16/32 without
    a mark from its NUL bytes, else "utf-8"."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return _NUL_PATTERNS.get(tuple(b == 0 for b in head[:4]), "utf-8")


def _decode_error(path: Path, encoding: str, offset: int, exc: UnicodeDecodeError) -> QlstmError:
    name = _NAMES.get(encoding, encoding.upper())
    bad = exc.object[exc.start : max(exc.end, exc.start + 1)][:4]
    what = ("byte " if len(bad) == 1 else "bytes ") + " ".join(f"0x{b:02X}" for b in bad)
    return QlstmError(
        f"{path}: not a text file in {name}: {what} at byte offset {offset} ({exc.reason}); save it as UTF-8"
    )


def decode_text(path: Path, data: bytes, final: bool = True, legacy: bool = False) -> tuple[str, str]:
    """``data`` (the start of file ``path``, the whole file if ``final``) as text, and its codec.

    The codec is :func:`text_encoding`'s; with ``legacy``, text without a mark that is not UTF-8 is
    read as Windows-1252 (:data:`LEGACY_ENCODING`: ``°C``, ``µV`` in Western Excel exports). A
    character cut at the end of ``data`` is dropped when not ``final``. Raises QlstmError (file,
    byte offset, encoding) for bytes that do not decode, and for a NUL byte in 8-bit text.
    """
    encoding = text_encoding(data)
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(data, final=final)
    except UnicodeDecodeError as exc:
        if not (legacy and encoding == "utf-8"):
            # "utf-8-sig" counts from after the mark; "utf-16"/"utf-32" from the file's start
            mark = len(codecs.BOM_UTF8) if encoding == "utf-8-sig" else 0
            raise _decode_error(path, encoding, mark + exc.start, exc) from None
        encoding = LEGACY_ENCODING
        try:
            text = data.decode(LEGACY_ENCODING)
        except UnicodeDecodeError as exc:
            raise _decode_error(path, LEGACY_ENCODING, exc.start, exc) from None
    if encoding in ("utf-8", "utf-8-sig", LEGACY_ENCODING) and "\x00" in text:
        # UTF-16 whose first character is not ASCII, NUL padding (a logger's preallocated file), binary
        raise QlstmError(
            f"{path}: not a text file in {_NAMES[encoding]}: NUL byte at byte offset {data.index(0)} "
            "(UTF-16 without a byte-order mark, NUL padding or binary data); save it as UTF-8"
        )
    return text, encoding


def read_text(path: Path, legacy: bool = False) -> str:
    """The text of file ``path`` decoded by :func:`decode_text` (a byte-order mark dropped); raises
    QlstmError (one line: file, byte offset, encoding) for bytes that do not decode."""
    return decode_text(path, Path(path).read_bytes(), legacy=legacy)[0]


def find_decode_error(path: Path, encoding: str, block: int = 1 << 20) -> QlstmError | None:
    """The error :func:`decode_text` would give for the first bytes of file ``path`` that do not
    decode in ``encoding`` (read in blocks: for a large file whose head decoded), or None."""
    offset = 0
    with open(path, "rb") as fh:
        if encoding == "utf-8-sig":  # it counts from after the mark
            encoding, offset = "utf-8", len(fh.read(len(codecs.BOM_UTF8)))
        decoder = codecs.getincrementaldecoder(encoding)()
        while True:
            data = fh.read(block)
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last block
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                return _decode_error(path, encoding, offset - pending + exc.start, exc)
            if not data:
                return None
            offset += len(data)


#: the build tools running now, in any thread (pid -> process; each leads its own process group)
_TOOLS: dict[int, subprocess.Popen] = {}
_TOOLS_LOCK = threading.Lock()
#: > 0 while :func:`tools_stopped` is active: no new tool starts
_STOPPING = 0


def _kill_groups(procs: list[subprocess.Popen], wait: float = 5.0) -> None:
    """SIGTERM the process groups of ``procs`` at once, then SIGKILL those whose leader has not
    exited after ``wait`` seconds; the whole group is signalled (a tool's own children too)."""
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # poll() sees the exit even while another thread waits on the process (it reaps it)
            procs = [p for p in procs if p.returncode is None and p.poll() is None]
            if not procs:
                return
            time.sleep(0.05)


def run_tool(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in its own process group, which is
    killed as a whole when this process is interrupted (Ctrl-C, or SIGTERM, which qlstm's CLI turns
    into KeyboardInterrupt).

    Build tools start children of their own (Verilator's perl wrapper -> make -> g++, ``bash
    build_lib.sh`` -> g++): killing only the direct child left them running in a deleted staging
    folder (found in a user's trial of ``qlstm rtl``, 2026-12-01). A tool running in another thread
    (Yosys beside the Verilator build in ``qlstm run``) does not see the interrupt, which Python
    delivers to the main thread: :func:`tools_stopped` kills it. ``kwargs`` go to
    :class:`subprocess.Popen` (``cwd``, ``env``). Raises OSError as Popen does, and QlstmError
    inside :func:`tools_stopped`."""
    with _TOOLS_LOCK:  # a tool starts and is registered before tools_stopped can look
        if _STOPPING:
            raise QlstmError(f"not started (interrupted): {cmd[0]}")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
        )
        _TOOLS[proc.pid] = proc
    try:
        out, err = proc.communicate()
    except BaseException:
        _kill_groups([proc])
        raise
    finally:
        with _TOOLS_LOCK:
            _TOOLS.pop(proc.pid, None)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def tools_stopped() -> Iterator[None]:
    """Kill every tool :func:`run_tool` is running (in any thread, with their process groups) and
    refuse new ones until the block ends: for the main thread, on an interrupt or a failure, before
    it waits for a worker thread that runs a tool (``qlstm run``'s rtl step waited 146 s for Yosys
    after Ctrl-C, and a second Ctrl-C left Yosys running with parent pid 1: a user's trial,
    2026-12-01). The worker's tool then ends as killed, so its thread returns in a moment."""
    global _STOPPING
    with _TOOLS_LOCK:
        _STOPPING += 1
        procs = list(_TOOLS.values())
    try:
        _kill_groups(procs)
        yield
    finally:
        with _TOOLS_LOCK:
            _STOPPING -= 1
