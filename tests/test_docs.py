"""The docs site builds without a warning (mkdocs --strict): every page, link and API reference resolves."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not Path(sys.executable).with_name("mkdocs").exists(),
    reason="mkdocs is not installed (the docs extra)",
)
def test_the_docs_site_builds_strictly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "cli/index.html", "api/index.html", "FORMAT/index.html"} <= pages
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "--target-bpp" in cli and "--strip" in cli  # the command reference is generated from click
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "icc_profile" in api and "vqcodec.api.compress" in api  # and the API reference from the docstrings
