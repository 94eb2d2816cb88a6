"""maspo as a user installs it: the wheel built from this checkout, installed with no
dependencies into a fresh virtual environment that borrows the running one's packages.

The environment is made off the same base interpreter (``python -m venv --without-pip``);
one ``.pth`` line per site-packages folder of the running environment lends it the
dependencies already installed (torch, transformers, verl...) as plain path entries, so
the running environment's own ``.pth`` files (among them the editable install of this
checkout) are not processed there. maspo itself is then only the installed wheel.
Everything works offline: the wheel is built with ``--no-build-isolation --no-index``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "maspo")  # what the build reads
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
TIMEOUT_S = 300


def build_wheel(work: Path) -> Path:
    """maspo's wheel, built from a copy of this checkout (the build writes build/ and
    *.egg-info next to its sources, which must not land in the checkout)."""
    source = work / "source"
    source.mkdir(parents=True)
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns(
            "__pycache__")} if (ROOT / name).is_dir() else {}))
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True, timeout=TIMEOUT_S)
    [wheel] = (work / "dist").glob("maspo-*.whl")
    return wheel


def install_fresh(wheel: Path, env: Path) -> Path:
    """A new virtual environment at ``env`` holding ``wheel`` (no dependencies installed:
    they are borrowed, see the module doc); returns the folder of its executables."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=TIMEOUT_S)
    python = env / "bin" / "python"
    subprocess.run([*PIP, "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=TIMEOUT_S)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    borrowed = [p for p in sys.path if p.endswith("site-packages")]
    assert sysconfig.get_paths()["purelib"] in borrowed
    Path(site.stdout.strip(), "_borrowed_dependencies.pth").write_text("\n".join(borrowed))
    return env / "bin"
