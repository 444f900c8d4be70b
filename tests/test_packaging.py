"""vlavad as users get it: a wheel installed with its declared dependencies, and a Hugging Face
Space that installs requirements.txt alone and then runs app.py from a copy of the repository.

Both run in a fresh virtual environment that sees, of this environment's packages, only what the
declarations need: the installed distributions they name, followed through each one's own
requirements, linked file by file into a folder of their own. So nothing is downloaded, and a
module that is imported but not declared is missing there, as it would be on a user's machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vlavad.testing.synthetic import make_dataset

REPO = Path(__file__).resolve().parent.parent
ASSETS = ("presets.json", "imagenet_groups.json", "prompts/motion.json", "prompts/appearance.json", "prompts/vlm.json", "examples/plaza.mp4")
# Imported but declared nowhere, on purpose: each import is guarded and the package is optional.
UNDECLARED = {
    "mamba_ssm": "the fused Mamba kernels build against a CUDA toolkit: requirements-cuda.txt",
    "spaces": "Hugging Face's ZeroGPU decorator, installed by the Space itself",
}


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH (the checkout must not leak in), no pip configuration (its indexes and
    find-links would let pip fetch what the environment lacks), no network for models."""
    keep = {name: os.environ[name] for name in ("HOME", "LANG", "TMPDIR") if name in os.environ}
    offline = dict.fromkeys(("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE"), "1")
    return {**keep, **offline, "PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull, **extra}


def installed_distributions() -> dict[str, importlib.metadata.Distribution]:
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)  # the first on sys.path wins, as for imports
    return found


def closure(requirements: list[str], extras: tuple[str, ...] = ()) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions that `requirements` need, each one's own requirements followed
    with their markers evaluated here; a requirement not installed here is left out (pip names it)."""
    installed = installed_distributions()
    needed: dict[str, importlib.metadata.Distribution] = {}
    followed: set[tuple[str, frozenset[str]]] = set()  # a distribution with the extras asked of it
    todo = [(Requirement(line), extras) for line in requirements]
    while todo:
        requirement, wanted = todo.pop()
        if requirement.marker is not None and not any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *wanted)):
            continue
        name = canonicalize_name(requirement.name)
        if (dist := installed.get(name)) is None or (name, frozenset(requirement.extras)) in followed:
            continue
        needed[name] = dist
        followed.add((name, frozenset(requirement.extras)))
        todo += [(Requirement(line), tuple(requirement.extras)) for line in dist.requires or []]
    return needed


def linked_site(folder: Path, dists: dict[str, importlib.metadata.Distribution]) -> Path:
    """A folder holding links to exactly the files `dists` installed (their RECORD), laid out as
    in site-packages; scripts and data outside site-packages are left out. A top-level folder that
    no other installed distribution has files in is linked whole (torch alone has 20,000 files);
    a shared one (nvidia/, a namespace) file by file."""
    owners: dict[Path, set[str]] = {}
    for dist in importlib.metadata.distributions():
        name, site = canonicalize_name(dist.metadata["Name"]), Path(dist.locate_file(""))
        for top in {file.parts[0] for file in dist.files or []}:
            owners.setdefault(site / top, set()).add(name)
    for name, dist in dists.items():
        assert dist.files is not None, f"{name} has no RECORD to tell its files"
        site = Path(dist.locate_file(""))
        files = [Path(file) for file in dist.files if file.parts[0] != ".."]
        whole = {top for top in {file.parts[0] for file in files} if owners[site / top] == {name}}
        for relative in {Path(file.parts[0]) if file.parts[0] in whole else file for file in files}:
            source, target = site / relative, folder / relative
            if source.exists() and not target.is_symlink():  # a namespace's shared file: the first owner's
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    return folder


def fresh_venv(folder: Path, sees: Path) -> Path:
    """A new venv, without pip, whose Python also finds the packages in `sees`; returns its python.
    `site.addsitedir` (not a plain path line) so the .pth files there run too, as installed ones do."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    site_packages = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True, env=clean_env())
    (Path(site_packages.strip()) / "dependencies.pth").write_text(f"import site; site.addsitedir({str(sees)!r})\n")
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


def build_wheel(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    source = copy_repo(tmp_path / "source")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)]
    subprocess.run(build, check=True, env=clean_env(PATH=os.environ["PATH"]))
    return next(dist.glob("vlavad-*.whl"))


def test_the_wheel_installs_its_dependencies_and_runs_fit_score_and_bench_outside_the_repo(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert not [asset for asset in ASSETS if f"vlavad/assets/{asset}" not in names], "the wheel must carry the package data"
    requirements = metadata.get_all("Requires-Dist") or []
    assert any("extra ==" not in line for line in requirements), "the wheel declares no dependencies outside its extras"

    # pip resolves every declared requirement against what the venv sees and fetches nothing:
    # a requirement that is declared but not installed here fails the install.
    python = fresh_venv(tmp_path / "venv", sees=linked_site(tmp_path / "site", closure(requirements)))
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-cache-dir", "-q", str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True, env=clean_env())
    assert installed.returncode == 0, installed.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    vlavad = [str(python.parent / "vlavad")]
    env = clean_env(HOME=str(tmp_path / "home"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*vlavad, *args], cwd=work, capture_output=True, text=True, env=env)

    where = subprocess.run([python, "-c", "import vlavad; print(vlavad.__file__)"], cwd=work, capture_output=True, text=True, env=env)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr
    example = Path(where.stdout.strip()).parent / "assets" / "examples" / "plaza.mp4"

    fast = ["--set", "temporal.epochs=1", "--set", "temporal.past=4", "--set", "temporal.future=1", "-q", "--cache", "cache"]
    fit = run("fit", str(example), "--out", "model", *fast)
    assert fit.returncode == 0, fit.stderr[-2000:]
    score = run("score", "model", str(example), "--out", "scored", "--video", "--report", "-q", "--cache", "cache")
    assert score.returncode == 0, score.stderr[-2000:]
    assert {"result.json", "frames.csv", "annotated.mp4", "report.html"} <= {p.name for p in (work / "scored").iterdir()}

    data = make_dataset(work / "data", n_train=1, n_test=1, frames=40)
    bench = run("bench", str(data), "--out", "run", *fast)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert json.loads((work / "run" / "results.json").read_text())["selected_questions"]  # the bundled pool was found
    assert (work / "run" / "roc.png").is_file()

    # The model libraries are extras: without them a tier that needs one says which, in one line.
    packaged = run("fit", str(example), "--out", "packaged", "--backend", "packaged", "-q")
    assert packaged.returncode == 2 and packaged.stderr.count("\n") == 1, packaged.stderr[-2000:]
    assert "pip install 'vlavad[packaged]'" in packaged.stderr


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def test_a_space_runs_app_py_from_the_repository_with_requirements_only(tmp_path):
    lines = requirement_lines(REPO / "requirements.txt")
    assert not any(line.startswith(("-", ".", "/")) or "file:" in line for line in lines), "requirements.txt must stand alone"
    needed = closure(lines)
    absent = [line for line in lines if canonicalize_name(Requirement(line).name) not in needed]
    assert not absent, f"requirements.txt names packages not installed here: {absent}"
    space = copy_repo(tmp_path / "space")
    python = fresh_venv(tmp_path / "venv", sees=linked_site(tmp_path / "site", needed))
    code = "import app, vlavad, webapp; from webapp import build_app; build_app('state', 'data'); print(vlavad.__file__)"
    run = subprocess.run([python, "-c", code], cwd=space, capture_output=True, text=True, env=clean_env(HOME=str(tmp_path / "home")))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith(str(space))


def project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_requirements_txt_is_the_package_with_its_model_and_app_extras():
    # The Space installs requirements.txt alone, so it repeats pyproject.toml's declarations: the
    # same packages at the same bounds, or one exact version inside them (torch's pair).
    extras = project()["optional-dependencies"]
    declared: dict[str, Requirement] = {}
    for line in project()["dependencies"] + extras["packaged"] + extras["hub"] + extras["app"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert declared.setdefault(name, requirement).specifier == requirement.specifier, f"{name} has two bounds in pyproject.toml"
    space = {canonicalize_name(Requirement(line).name): Requirement(line) for line in requirement_lines(REPO / "requirements.txt")}
    assert sorted(space) == sorted(declared)
    for name, requirement in declared.items():
        pinned = space[name].specifier
        exact = [spec.version for spec in pinned if spec.operator == "=="]
        assert pinned == requirement.specifier or (len(pinned) == 1 and exact and requirement.specifier.contains(exact[0])), name


def imported_packages(folder: Path, module_scope_only: bool = False) -> dict[str, set[str]]:
    """Top-level names of the modules that the files under `folder` import (absolute imports),
    each with the files importing it; `module_scope_only`: not the imports inside functions."""
    found: dict[str, set[str]] = {}

    def visit(node: ast.AST, file: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            if not (module_scope_only and in_function):
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(file)
            visit(child, file, inside)

    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else [folder]:
        visit(ast.parse(path.read_text()), str(path.relative_to(REPO)), False)
    return found


def test_every_imported_package_is_declared_where_it_is_needed():
    extras = project()["optional-dependencies"]
    base = {canonicalize_name(Requirement(line).name) for line in project()["dependencies"]}
    declared = {name: {canonicalize_name(Requirement(line).name) for line in lines} for name, lines in extras.items()}
    providers = importlib.metadata.packages_distributions()
    local = {p.stem for folder in ("tests", "benchmarks", "tools") for p in (REPO / folder).glob("*.py")} | {"app", "vlavad", "webapp"}

    def undeclared(imports: dict[str, set[str]], allowed: set[str]) -> list[str]:
        wrong = []
        for module, files in sorted(imports.items()):
            if module in sys.stdlib_module_names or module in local or module in UNDECLARED or module == "__future__":
                continue
            # An optional package not installed here: its import name is its distribution's (ray).
            dists = {canonicalize_name(name) for name in providers.get(module, [module])}
            if not dists & allowed:
                wrong.append(f"{module} ({', '.join(sorted(dists))}) imported by {', '.join(sorted(files))}")
        return wrong

    everything = base.union(*declared.values())
    # Importing any vlavad module needs only the base install: the model libraries are imported
    # inside the functions that use them, after their backend has checked they are installed.
    assert undeclared(imported_packages(REPO / "vlavad", module_scope_only=True), base) == []
    library = base | declared["packaged"] | declared["hub"] | declared["ray"] | declared["live"]
    assert undeclared(imported_packages(REPO / "vlavad"), library) == []
    app = imported_packages(REPO / "webapp") | imported_packages(REPO / "app.py")
    assert undeclared(app, base | declared["app"]) == []
    for folder in ("tests", "benchmarks", "tools"):
        assert undeclared(imported_packages(REPO / folder), everything) == [], folder


def test_the_readme_front_matter_is_a_space_config():
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    front = dict(line.split(": ", 1) for line in text.split("---\n")[1].strip().splitlines())
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    import gradio

    assert front.get("sdk_version", gradio.__version__).split(".")[0] == gradio.__version__.split(".")[0]
