"""A synthetic path list shaped like the Linux 6.1 tree (about 75k files), seeded."""

from __future__ import annotations

import random

# (top-level directory, share of the files, typical depth below it)
_TOP = (
    ("drivers", 0.40, 4),
    ("arch", 0.22, 4),
    ("Documentation", 0.09, 2),
    ("include", 0.07, 2),
    ("tools", 0.06, 3),
    ("sound", 0.035, 3),
    ("fs", 0.03, 2),
    ("net", 0.03, 2),
    ("kernel", 0.008, 1),
    ("lib", 0.008, 1),
    ("mm", 0.002, 0),
    ("scripts", 0.007, 2),
    ("security", 0.004, 2),
    ("samples", 0.004, 2),
    ("crypto", 0.003, 1),
    ("block", 0.001, 0),
)
_EXT = (".c", ".c", ".c", ".h", ".h", ".rst", ".txt", ".yaml", ".S", "Makefile", "Kconfig")


def linux_like(n: int = 75_000, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` (path, bytes) pairs: deep driver and arch trees, one flat dts directory of
    2,541 files, about a dozen files per directory, sizes log-normal around 6 KB."""
    rnd = random.Random(seed)
    out: list[tuple[str, int]] = []
    seen: set[str] = set()

    def size() -> int:
        return int(rnd.lognormvariate(8.7, 1.3))

    out.extend((f"arch/arm/boot/dts/soc{i // 40}-board{i:04d}.dts", size()) for i in range(2541))
    seen.update(p for p, _ in out)
    names = [f"n{i}" for i in range(60)]
    while len(out) < n:
        top, _, depth = rnd.choices(_TOP, weights=[share for _, share, _ in _TOP])[0]
        parts = [top]
        for _ in range(rnd.randint(max(0, depth - 1), depth + 1)):
            parts.append(rnd.choice(names[: 8 + 4 * len(parts)]))
        directory = "/".join(parts)
        for _ in range(rnd.randint(1, 24)):
            ext = rnd.choice(_EXT)
            name = ext if not ext.startswith(".") else f"f{rnd.randrange(400)}{ext}"
            path = f"{directory}/{name}"
            if path in seen or len(out) >= n:
                continue
            seen.add(path)
            out.append((path, size()))
    # a directory name may also have been drawn as a file name: drop those clashes
    dirs = {p.rsplit("/", k)[0] for p, _ in out for k in range(1, p.count("/") + 1)}
    return [(p, s) for p, s in out if p not in dirs]


if __name__ == "__main__":
    for path, nbytes in linux_like():
        print(f"{path}\t{nbytes}")
