"""The installed package carries what a reader needs: a wheel built from this tree, installed into a
fresh virtual environment outside the repository, loads the recorded GPU results and the CUDA sources."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so that setuptools' build/ folder is not left in the repository
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lnlib", src / "lnlib", ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(src)],
        capture_output=True, text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{build.stderr[-2000:]}")
    wheel = next(tmp.glob("lnlib-*.whl"))
    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the wheel goes into the new environment with this interpreter's pip; numpy and sympy come from
    # this environment's site-packages, added as a plain path (its .pth files, among them the
    # editable install of lnlib, are not processed, so lnlib can only come from the wheel)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, tmp


def test_wheel_ships_the_results_and_sources(installed):
    python, tmp = installed
    out = subprocess.run(
        [python, "-c", (
            "import json, lnlib; from lnlib import gpu_results; from lnlib.cuda import kernels as K\n"
            "d = gpu_results.load()\n"
            "print(json.dumps({'file': lnlib.__file__, 'latest': str(gpu_results.latest()),\n"
            "  'device': d['provenance']['device'], 'rows': len(d['rows']),\n"
            "  'sources': [len(K.source(n)) for n in K.SOURCES]}))"
        )],
        cwd=tmp, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert not got["file"].startswith(str(ROOT)), "lnlib was imported from the repository, not the wheel"
    assert got["latest"].startswith(str(tmp)) and got["rows"] > 0 and got["device"]
    assert all(n > 1000 for n in got["sources"])


@pytest.mark.parametrize("notebook", ["quickstart.ipynb", "10_gpu_kernels.ipynb"])
def test_notebooks_run_from_the_installed_package(installed, notebook, monkeypatch):
    # as a reader in Colab would: the notebook alone in a folder, lnlib from the wheel, a fresh kernel
    import nbformat
    from nbclient import NotebookClient

    python, tmp = installed
    spec = tmp / "jupyter" / "kernels" / "lnlib-wheel"  # a kernel that runs the new environment's python
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lnlib from its wheel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    folder = tmp / f"run-{notebook}"
    folder.mkdir()
    shutil.copy(ROOT / "book" / notebook, folder / notebook)
    nb = nbformat.read(folder / notebook, as_version=4)
    client = NotebookClient(nb, kernel_name="lnlib-wheel", timeout=600, resources={"metadata": {"path": str(folder)}})
    client.execute()
    lnlib_file = next(
        (o["text"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
         if o.get("name") == "stdout" and "LNLIB_FILE" in o.get("text", "")), None)
    assert lnlib_file is None or str(ROOT) not in lnlib_file
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error" or o.get("name") == "stderr"]
    assert not errors, errors[:1]
