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


@pytest.mark.slow  # two fresh Pythons import TensorFlow (~15 s)
def test_a_ray_process_keeps_tensorflows_generated_files_in_its_own_temp_folder_removed_after_it(tmp_path):
    """TensorFlow's autograph writes a file per traced function into the temp folder and removes it at exit; Ray
    ends its processes without exit handlers, so every trial left its files in /tmp (1,900 after a day of tests).
    A Ray process (SPECIESFAM_OWN_TEMP, set by raycluster) writes them into a folder of its own, which the next
    such process removes once the first has ended."""
    import os

    code = ("import os, tempfile\n"
            "from speciesfam._lazy import tensorflow\n"
            "tf = tensorflow()\n"
            "@tf.function\n"
            "def f(x):\n"
            "    return x + 1 if x > 0 else x - 1\n"
            "f(tf.constant(1.0))\n"
            "print(tempfile.gettempdir(), flush=True)\n"
            "os._exit(0)\n")  # as Ray ends a worker: no exit handlers
    script = tmp_path / "script" / "trace.py"  # autograph reads the function's source from its file
    script.parent.mkdir()
    script.write_text(code)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "SPECIESFAM_OWN_TEMP": "1"}
    folders = [Path(subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                                   check=True).stdout.split()[-1]) for _ in range(2)]
    assert folders[0].parent == folders[1].parent and folders[0].parent.parent == temp, folders
    assert not folders[0].exists() and any(p.name.startswith("__autograph_generated_file")
                                           for p in folders[1].iterdir()), list(folders[1].iterdir())
    assert [p.name for p in temp.iterdir()] == [folders[0].parent.name]  # nothing else in the temp folder
