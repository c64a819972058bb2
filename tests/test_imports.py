"""`import speciesfam`, `speciesfam --help` and the job scripts' --help stay light: no TensorFlow, torch, Ray."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "torch", "ray", "keras", "open_clip")


def test_import_and_help_load_no_framework():
    code = (
        "import sys, contextlib, io\n"
        "import speciesfam, speciesfam.cli, speciesfam.config, speciesfam.registry\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        speciesfam.cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_version_names_the_installed_package():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "speciesfam", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"speciesfam {version('speciesfam')}", out


@pytest.mark.parametrize("command", ["catalog", "clean", "tune", "export", "predict", "evaluate", "demo", "report"])
def test_subcommand_help(command):
    out = subprocess.run([sys.executable, "-m", "speciesfam.cli", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--workdir" in out.stdout or "bundle" in out.stdout


@pytest.mark.parametrize("job", sorted(p.name for p in (ROOT / "jobs").glob("*.py") if not p.name.startswith("_")))
def test_job_help(job):
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / job), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--workdir" in out.stdout
    usage = out.stdout.split("usage: ", 1)[1].split("\n\n", 1)[0]  # its own name; no command words to give
    assert usage.startswith(f"{job} [-h]") and "speciesfam" not in usage and "{" not in usage, usage
    # --verbose is said, and not as "before or after the command", which a job script has none of
    assert "--verbose" in out.stdout.split("usage: ", 1)[1].split("\n\n", 1)[1] and "the command)" not in out.stdout


@pytest.mark.slow  # ~13 s: a fresh Python imports TensorFlow
def test_torch_after_tensorflow_is_refused_not_a_segfault():
    code = ("import tensorflow\nfrom speciesfam._lazy import torch_modules\n"
            "try:\n    torch_modules()\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: TensorFlow is already imported" in out.stdout
