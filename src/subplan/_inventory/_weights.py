"""Which files weigh nothing in a plan: binaries, lockfiles, vendored and generated files.

A planner budgets tokens an agent will read. A 200 KB ``.png`` or a 300 KB
``package-lock.json`` is not read as text, so counting it as bytes/4 would fill leaves
with nothing to do. Such files stay in the plan (an agent may still need to move or
regenerate them) but weigh 0 tokens. The test is on the path alone, so no file is read.

Zero-weight files are:

* by suffix: images, fonts, audio/video, archives, compiled objects and bytecode,
  databases, documents (``.pdf``), model and data blobs, source maps, minified
  ``.min.js`` / ``.min.css``;
* lockfiles by name: ``package-lock.json``, ``yarn.lock``, ``pnpm-lock.yaml``,
  ``Cargo.lock``, ``poetry.lock``, ``uv.lock``, ``Pipfile.lock``, ``go.sum``,
  ``composer.lock``, ``Gemfile.lock`` and others;
* vendored trees: anything below a ``vendor/``, ``node_modules/``, ``third_party/`` or
  ``_vendor/`` directory;
* generated code by name: ``*_pb2.py``, ``*.pb.go``, ``*.generated.*``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["ZERO_WEIGHT_SUFFIXES", "is_weightless", "never_planned", "weightless_indices"]

ZERO_WEIGHT_SUFFIXES: Final = frozenset(
    {
        # images
        ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff",
        ".psd", ".xcf", ".heic", ".avif",
        # fonts
        ".ttf", ".otf", ".woff", ".woff2", ".eot", ".pfb",
        # audio and video
        ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".mov", ".avi", ".mkv", ".webm", ".m4a",
        # archives and packages
        ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".tar", ".rar", ".jar", ".war",
        ".whl", ".egg", ".deb", ".rpm", ".dmg", ".iso", ".apk",
        # compiled code and bytecode
        ".o", ".a", ".so", ".dylib", ".dll", ".exe", ".lib", ".obj", ".pyc", ".pyo", ".pyd",
        ".class", ".wasm", ".bin", ".elf", ".ko", ".dtb",
        # data, databases, models, documents
        ".db", ".sqlite", ".sqlite3", ".pkl", ".pickle", ".npy", ".npz", ".h5", ".hdf5",
        ".parquet", ".onnx", ".pt", ".pth", ".safetensors", ".ckpt", ".pdf", ".doc", ".docx",
        ".xls", ".xlsx", ".ppt", ".pptx", ".mo",
        # minified and mapped sources
        ".map",
    }
)  # fmt: skip

_LOCKFILES: Final = frozenset(
    {
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
        "bun.lockb", "bun.lock", "Cargo.lock", "poetry.lock", "uv.lock", "pdm.lock",
        "Pipfile.lock", "go.sum", "composer.lock", "Gemfile.lock", "Podfile.lock",
        "flake.lock", "mix.lock", "packages.lock.json", "pubspec.lock", "gradle.lockfile",
        "conan.lock", "deno.lock",
    }
)  # fmt: skip

_VENDOR_DIRS: Final = ("vendor/", "node_modules/", "third_party/", "_vendor/")
# One search at C speed instead of a scan per directory name.
_VENDOR_RE: Final = re.compile("(?:^|/)(?:" + "|".join(re.escape(d) for d in _VENDOR_DIRS) + ")")
_GENERATED_ENDINGS: Final = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".pb.go", ".min.js", ".min.css")

# The last extension, lowercased, of every weightless path not vendored or generated.
_CANDIDATE_EXTENSIONS: Final = ZERO_WEIGHT_SUFFIXES | {
    name[name.rfind(".") :].lower() for name in _LOCKFILES
}

# Directories never planned, at any level: git's own and subplan's runs directory.
_NEVER: Final = frozenset({".git", ".subplan"})


def never_planned(path: str) -> bool:
    """True when ``path`` lies in a ``.git`` or ``.subplan`` directory (or is ``.git``).

    Example:
        >>> never_planned(".git/config"), never_planned("a/.subplan/r1/x"), never_planned("a.py")
        (True, True, False)
    """
    if ".git" not in path and ".subplan" not in path:
        return False
    return any(part in _NEVER for part in path.split("/"))


def is_weightless(path: str) -> bool:
    """True when ``path`` names a binary, lockfile, vendored or generated file (0 tokens).

    Example:
        >>> [is_weightless(p) for p in ("logo.png", "web/yarn.lock", "vendor/x/a.go", "a.py")]
        [True, True, True, False]
    """
    if _binary_or_lockfile(path):
        return True
    name = path.rpartition("/")[2]
    if name.endswith(_GENERATED_ENDINGS) or ".generated." in name:
        return True
    return "/" in path and _VENDOR_RE.search(path) is not None


def _binary_or_lockfile(path: str) -> bool:
    """The part of :func:`is_weightless` that reads the file name alone: its suffix, or
    a lockfile's name."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return (dot > 0 and name[dot:].lower() in ZERO_WEIGHT_SUFFIXES) or name in _LOCKFILES


def weightless_indices(paths: Sequence[str]) -> set[int]:
    """The positions of the paths that :func:`is_weightless` holds for, found at once.

    The same test as :func:`is_weightless`, with what is rare in a list (vendored
    directories, generated names) looked for once over all the paths at C speed, so
    each path pays only for its suffix and name.

    Example:
        >>> sorted(weightless_indices(["a.py", "logo.PNG", "web/yarn.lock", "vendor/x/a.go"]))
        [1, 2, 3]
    """
    joined = "\n".join(paths)
    if (
        any(d in joined for d in _VENDOR_DIRS)
        or ".generated." in joined
        or any(e in joined for e in _GENERATED_ENDINGS)
    ):
        return {i for i, path in enumerate(paths) if is_weightless(path)}
    lowered = joined.lower().split("\n")
    if len(lowered) != len(paths):  # a name with a line break
        return {i for i, path in enumerate(paths) if is_weightless(path)}
    # The last extension of every weightless path (lowercased) is a candidate: only those
    # few paths pay for the test of their name (nothing is vendored or generated here).
    candidates = _CANDIDATE_EXTENSIONS
    return {
        i
        for i, low in enumerate(lowered)
        if low[low.rfind(".") :] in candidates and _binary_or_lockfile(paths[i])
    }
