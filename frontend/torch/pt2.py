"""Reading a ``.pt2`` file (``torch.export.save``) without running code from it.

``torch.export.load`` unpickles with ``weights_only=False`` in three places: weights or
constants whose payload is marked ``use_pickle``, custom/opaque objects among the constants,
and the sample inputs when they do not load with ``weights_only=True`` (it falls back). A
``.pt2`` from someone else could plant a pickle in any of them. So fc reads the archive into
memory once, refuses it when any of those is present (naming the member), checks that the
sample inputs load as plain tensors, and only then hands the same bytes to
``torch.export.load``. Weights stored as raw tensor payloads (what ``torch.export.save``
writes for ordinary tensors) never touch a pickle.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from pathlib import Path

from fc.errors import ImportError_
from fc.limits import Budget

__all__ = ["load_pt2"]


def _member_suffix(names: list[str], suffix: str) -> list[str]:
    return [n for n in names if n.split("/", 1)[-1] == suffix or n.endswith("/" + suffix)]


def _refuse(path: Path, why: str) -> ImportError_:
    return ImportError_(f"{path}: refused: {why}; fc never unpickles objects from a model file")


def _check_archive(path: Path, zf: zipfile.ZipFile) -> None:
    names = zf.namelist()
    budget = Budget(str(path))  # sizes from the zip directory, before anything is inflated
    for info in zf.infolist():
        budget.add(info.file_size, f"member {info.filename!r}")
    if not _member_suffix(names, "archive_version"):
        raise ImportError_(f"{path}: not a torch.export archive (no archive_version member)")
    for n in names:
        inner = n.split("/", 1)[-1]
        if inner.startswith("data/aotinductor/"):
            raise _refuse(path, f"member {n!r} is AOTInductor compiled code")
        if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt"):
            raise _refuse(path, f"member {n!r} is a pickled (legacy) state dict")
        if inner.startswith(("data/constants/custom_obj", "data/constants/opaque_obj")):
            raise _refuse(path, f"member {n!r} is a pickled custom object")
    for n in names:
        if n.endswith("_weights_config.json") or n.endswith("_constants_config.json"):
            try:
                config = json.loads(zf.read(n)).get("config", {})
            except (ValueError, AttributeError) as e:
                raise ImportError_(f"{path}: member {n!r} is not valid JSON ({e})") from None
            for fqn, meta in config.items():
                if not isinstance(meta, dict):
                    raise ImportError_(f"{path}: member {n!r}: entry {fqn!r} is malformed")
                if meta.get("use_pickle"):
                    raise _refuse(path, f"tensor {fqn!r} ({n}) is stored as a pickle")
                if not str(meta.get("path_name", "")).startswith(("weight_", "tensor_")):
                    raise _refuse(path, f"entry {fqn!r} ({n}) is not a tensor payload")
    import torch

    for n in names:
        if "/data/sample_inputs/" in "/" + n:
            try:
                torch.load(io.BytesIO(zf.read(n)), weights_only=True)
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise _refuse(path, f"sample inputs {n!r} are not plain tensors ({first[:120]})"
                              ) from None


def load_pt2(path: str | os.PathLike):
    """The ``ExportedProgram`` in ``path``, after the checks of the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    Budget(str(path)).add(path.stat().st_size, "the file", one_tensor=False)  # read whole
    data = path.read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, EOFError):  # names not UTF-8, ...
        raise ImportError_(f"{path}: not a .pt2 file (not a zip archive written by "
                           "torch.export.save)") from None
    with zf:
        try:
            _check_archive(path, zf)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
            # a member whose local header or data is corrupt (found by fc.fuzz)
            raise ImportError_(f"{path}: not a readable .pt2 archive ({type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})"
                               ) from None
    import torch

    # torch.export.load logs the real cause of a corrupt archive as a warning with its
    # traceback, then raises "check the warnings above": hold that record (nothing is
    # printed before fc's one error line) and name the cause in the error instead.
    held = _Held()
    logger = logging.getLogger("torch.export")
    propagate, handlers = logger.propagate, logger.handlers[:]
    logger.handlers[:] = [held]  # torch's own handler sits on this logger
    logger.propagate = False
    try:
        return torch.export.load(io.BytesIO(data))
    except Exception as e:
        cause = (held.cause() or _first_line(e)).split(". ")[0]  # its first sentence
        raise ImportError_(f"{path}: torch.export.load failed ({type(e).__name__}: "
                           f"{cause[:200]})") from None
    finally:
        logger.handlers[:] = handlers
        logger.propagate = propagate


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


class _Held(logging.Handler):
    """Keeps the records of one call; :meth:`cause` is the last exception one logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def cause(self) -> str:
        for r in reversed(self.records):
            if r.exc_info and r.exc_info[1] is not None:
                return _first_line(r.exc_info[1])
        return ""
