"""vlavad as users get it: a wheel installed outside the repository, and a Hugging Face Space that
installs requirements.txt alone and then runs app.py from a copy of the repository.

Both use a fresh virtual environment that sees this environment's third-party packages (a `.pth`
line; the editable install of vlavad is not visible there), so nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

from vlavad.testing.synthetic import make_dataset

REPO = Path(__file__).resolve().parent.parent


def fresh_venv(folder: Path, with_pip: bool = False) -> Path:
    """A new venv whose Python finds this one's dependencies but not its vlavad; returns its python."""
    venv.EnvBuilder(with_pip=with_pip).create(folder)
    python = folder / "bin" / "python"
    target = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    found = subprocess.run([python, "-c", "import vlavad"], capture_output=True, text=True, cwd=folder)
    assert found.returncode != 0, "the fresh venv must not see the editable vlavad"
    return python


def copy_repo(dest: Path) -> Path:
    """The tracked files of this checkout, as a clone would have them (builds write nothing here)."""
    files = subprocess.check_output(["git", "ls-files", "-z"], cwd=REPO, text=True).split("\0")
    for name in filter(None, files):
        source, target = REPO / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # vlavad/assets -> ../assets
            target.symlink_to(source.readlink())
        elif source.is_file():
            shutil.copy2(source, target)
    return dest


def test_the_wheel_runs_fit_score_and_bench_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    source = copy_repo(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)], check=True)
    wheel = next(dist.glob("vlavad-*.whl"))
    python = fresh_venv(tmp_path / "venv", with_pip=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    data = make_dataset(work / "data", n_train=1, n_test=1, frames=40)
    fast = ["--set", "temporal.epochs=1", "--set", "temporal.past=4", "--set", "temporal.future=1", "-q", "--cache", str(work / "cache")]
    vlavad = python.parent / "vlavad"
    bench = subprocess.run([vlavad, "bench", str(data), "--out", "run", *fast], cwd=work, capture_output=True, text=True)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert json.loads((work / "run" / "results.json").read_text())["selected_questions"]  # the bundled pool was found
    video = next((data / "test").iterdir())
    score = subprocess.run([vlavad, "score", "run/model", str(video), "--out", "scored", "--report", "-q"], cwd=work, capture_output=True, text=True)
    assert score.returncode == 0, score.stderr[-2000:]
    where = subprocess.run([python, "-c", "import vlavad; print(vlavad.__file__)"], cwd=work, capture_output=True, text=True).stdout
    assert str(REPO) not in where


def test_a_space_runs_app_py_from_the_repository_with_requirements_only(tmp_path):
    requirements = (REPO / "requirements.txt").read_text()
    lines = [line.split("#")[0].strip() for line in requirements.splitlines()]
    assert not any(line.startswith(("-e", "-r", ".", "/")) or "file:" in line for line in lines), "requirements.txt must stand alone"
    space = copy_repo(tmp_path / "space")
    python = fresh_venv(tmp_path / "venv")
    code = "import app, vlavad, webapp; from webapp import build_app; build_app('state', 'data'); print(vlavad.__file__)"
    run = subprocess.run([python, "-c", code], cwd=space, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith(str(space))


def test_the_readme_front_matter_is_a_space_config():
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    front = dict(line.split(": ", 1) for line in text.split("---\n")[1].strip().splitlines())
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    import gradio

    assert front.get("sdk_version", gradio.__version__).split(".")[0] == gradio.__version__.split(".")[0]
