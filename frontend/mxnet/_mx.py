"""The one place fc imports mxnet.

mxnet 1.9.1 still uses ``np.bool`` and friends, which numpy removed in 1.24; fc pins numpy
1.26 (tensorflow needs it), so the aliases are restored here, just before the import, and
nowhere else.
"""

from __future__ import annotations

from types import ModuleType

from fc.errors import ImportError_

__all__ = ["import_mxnet"]

_ALIASES = {"bool": bool, "int": int, "float": float, "complex": complex, "object": object, "str": str}


def import_mxnet() -> ModuleType:
    """Return the mxnet module, or raise an ``FcError`` saying how to install it."""
    import numpy as np

    for name, typ in _ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, typ)
    try:
        import mxnet
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError_(
            f"mxnet is not installed ({exc}); install it with: pip install 'fc[mxnet]'"
        ) from exc
    except OSError as exc:  # libmxnet.so found, but a library it links is not (libgomp...)
        raise ImportError_(f"mxnet is installed but its library does not load: "
                           f"{_one_line(exc)}{_system_hint(exc)}") from exc
    return mxnet


#: system libraries libmxnet.so links that slim images lack -> the Debian package with them
_SYSTEM_LIBS = {"libgomp": "libgomp1", "libquadmath": "libquadmath0", "libgfortran": "libgfortran5"}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _system_hint(exc: BaseException) -> str:
    text = str(exc)
    pkgs = [pkg for lib, pkg in _SYSTEM_LIBS.items() if lib in text]
    if pkgs:
        return f"; install it with: apt-get install {' '.join(pkgs)} (./install.sh does)"
    return "; reinstall it with: pip install --force-reinstall 'fc[mxnet]'"
