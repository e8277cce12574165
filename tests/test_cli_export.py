"""`osttp export RUN_DIR --format nir --out FILE`, and `osttp train CONFIG` with the config positional."""
from __future__ import annotations

import json

import pytest
import torch

from cli_helpers import run_cli
from osttp.experiment.export import trained_network

nir = pytest.importorskip("nir", reason="osttp export --format nir needs the 'nir' package (osttp[interop])")
from osttp.interop import from_nir  # noqa: E402

TINY = ["--task", "delayed-xor", "--task-param", "n_train=64", "--task-param", "n_valid=16",
        "--task-param", "n_test=16", "--hidden", "8", "--batch-size", "16", "--epochs", "1", "--rule", "osttp", "--quiet"]


@pytest.fixture(scope="module")
def lif_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lif"
    from osttp.experiment.cli import main
    assert main(["train", *TINY, "--cell", "lif", "--out", str(out)]) == 0
    return out


def _no_temp_files(directory):
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_export_writes_the_trained_network(lif_run, tmp_path, capsys):
    out = tmp_path / "model.nir"
    rc, stdout, _ = run_cli(capsys, ["export", str(lif_run), "--format", "nir", "--out", str(out)])
    assert rc == 0 and stdout.strip() == f"wrote {out}"
    net = trained_network(lif_run)
    saved = torch.load(lif_run / "model.pt", weights_only=True)["model"]
    assert torch.equal(net.layers[0].W, saved["layers.0.W"])  # the trained weights, not a fresh init
    back = from_nir(nir.read(str(out)))
    xs = (torch.rand(12, 5, net.n_in, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    torch.testing.assert_close(back(xs), net(xs), rtol=0, atol=1e-6)


def test_export_refuses_a_cell_nir_cannot_express_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "ssnu"
    assert run_cli(capsys, ["train", *TINY, "--cell", "ssnu", "--out", str(run)])[0] == 0
    out = tmp_path / "model.nir"
    rc, _, err = run_cli(capsys, ["export", str(run), "--format", "nir", "--out", str(out)])
    assert rc == 2
    assert err == "osttp: error: cannot export to NIR: layer 0: cell 'ssnu' outputs a sigmoid, not a spike; NIR " \
                  "has no sigmoid neuron\n"
    assert not out.exists() and _no_temp_files(tmp_path)


@pytest.mark.parametrize("case,message", [
    ("missing", "run directory '{run}' not found"),
    ("empty", "'{run}' has no model.pt: not a completed run directory"),
    ("out-is-dir", "--out '{out}' is a directory; expected a file name such as model.nir"),
    ("no-parent", "--out '{out}': its directory '{parent}' does not exist"),
    ("hardware", "run '{run}' trained simulated 'pcm' synapses; an export holds float weights only"),
])
def test_export_errors_are_one_line(case, message, lif_run, tmp_path, capsys):
    run, out = lif_run, tmp_path / "model.nir"
    if case == "missing":
        run = tmp_path / "nowhere"
    elif case == "empty":
        run = tmp_path / "empty"
        run.mkdir()
    elif case == "out-is-dir":
        out = tmp_path
    elif case == "no-parent":
        out = tmp_path / "no" / "model.nir"
    elif case == "hardware":  # a copy of the run whose config says it trained simulated synapses
        run = tmp_path / "hw"
        run.mkdir()
        (run / "model.pt").write_bytes((lif_run / "model.pt").read_bytes())
        (run / "config.toml").write_text('[hardware]\nsynapse = "pcm"\n')
    rc, _, err = run_cli(capsys, ["export", str(run), "--format", "nir", "--out", str(out)])
    assert rc == 2 and err.count("\n") == 1
    assert message.format(run=run, out=out, parent=out.parent) in err
    assert not (tmp_path / "model.nir").is_file()


def test_train_takes_the_config_positionally(tmp_path, capsys):
    cfg = tmp_path / "xor.toml"
    cfg.write_text('[task]\nname = "delayed-xor"\n[task.params]\nn_train = 32\nn_valid = 16\nn_test = 16\n'
                   '[model]\nhidden = [4]\n[train]\nepochs = 1\nbatch_size = 16\nrule = "drtp"\n')
    rc, _, err = run_cli(capsys, ["train", str(cfg), "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "results.json").read_text())["rule"] == "drtp"


def test_two_different_config_files_are_refused(tmp_path, capsys):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    for p in (a, b):
        p.write_text('[task]\nname = "delayed-xor"\n')
    rc, _, err = run_cli(capsys, ["train", str(a), "--config", str(b), "--out", str(tmp_path / "run")])
    assert rc == 2
    assert err == f"osttp: error: two config files: {str(a)!r} and --config {str(b)!r}; expected one\n"
