"""BioImage Model Zoo packages: bioimageio.core validates and tests what unetzoo writes; the
package, the model folder and the checkpoint give the same masks; packages written by other
tools run; the rest is refused with a reason."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import unetzoo
from tests.helpers import write_pairs
from unetzoo.artefacts.references import save_pretrained
from unetzoo.engine.export.bioimageio import export_bioimageio
from unetzoo.engine.inference.opening import open_model
from unetzoo.engine.inference.packages import open_package
from unetzoo.engine.inference.predict import predict_paths
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import ConfigError, ModelError, RunError
from unetzoo.runtime import Runtime

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")
TOLERANCE = 1e-4  # max abs logit difference between the formats, float32


def load_model(source, options: InferenceOptions):
    """The module and checkpoint of what `--model` names (engine.models_io.open_model)."""
    opened = open_model(source, options.runtime, options.prune_depth)
    return opened.module, opened.checkpoint


def fp32(backend: str = "torch") -> InferenceOptions:
    return InferenceOptions(Runtime.resolve("cpu", "fp32", False, backend=backend))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny trained and tested run (best checkpoint) and its dataset."""
    root = tmp_path_factory.mktemp("run")
    data = write_pairs(root / "data", count=10, size=48)
    result = unetzoo.train(dataset=str(data), out=str(root / "run"), model="unet",
                           preset="tiny", epoch=1, batch=4, img_size=32, workers=0,
                           precision="fp32", device="cpu", progress=False, seed=0)
    return result.best_checkpoint, data


@pytest.fixture(scope="module")
def package(run, tmp_path_factory) -> Path:
    best, _ = run
    out = tmp_path_factory.mktemp("pkg") / "model.zip"
    result = export_bioimageio(best, out, authors=["Ada Lovelace"], license="CC-BY-4.0",
                               cite=["Doe et al. Nuclei. doi:10.1234/nuclei.5678"], test=False)
    assert result.max_abs_diff <= TOLERANCE and result.test_status == "skipped"
    return out


def test_the_package_validates_and_passes_bioimageio_cores_own_test(package: Path,
                                                                     run) -> None:
    from bioimageio.core import test_model

    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    passed = {d.name for d in summary.details if d.status == "passed"}
    assert "Reproduce test outputs from test inputs (onnx)" in passed
    assert any("torchscript" in name for name in passed)
    checkpoint = unetzoo.load_checkpoint(run[0])
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        card = archive.read("README.md").decode()
        names = set(archive.namelist())
    assert rdf["format_version"].startswith("0.5")
    assert {"weights.torchscript", "weights.onnx", "cover.png", "test_input.npy",
            "test_output.npy", "README.md"} <= names
    assert rdf["license"] == "CC-BY-4.0" and rdf["authors"] == [{"name": "Ada Lovelace"}]
    assert {"text": "Doe et al. Nuclei. doi:10.1234/nuclei.5678",
            "doi": "10.1234/nuclei.5678"} in rdf["cite"]
    image = rdf["inputs"][0]
    assert [a["type"] for a in image["axes"]] == ["batch", "channel", "space", "space"]
    assert image["data"]["type"] == "uint8"  # the PNGs the run was trained on
    norm = image["preprocessing"][1]
    assert norm["id"] == "fixed_zero_mean_unit_variance"
    np.testing.assert_allclose(norm["kwargs"]["mean"],
                               [255 * m for m in checkpoint.preprocessing.mean], rtol=1e-6)
    np.testing.assert_allclose(norm["kwargs"]["std"],
                               [255 * s for s in checkpoint.preprocessing.std], rtol=1e-6)
    assert rdf["outputs"][0]["postprocessing"][0]["id"] == "sigmoid"
    test = json.loads((run[0].parent.parent / "test" / "metrics.json").read_text())
    assert f"| dice | {test['mean_over_images']['dice']:.4f} |" in card  # the run's metrics
    assert "Licence: CC-BY-4.0" in card and "## Validation" in card


def test_package_folder_and_checkpoint_give_the_same_masks(run, package: Path,
                                                           tmp_path: Path) -> None:
    best, data = run
    folder = save_pretrained(best, tmp_path / "folder")
    again = unetzoo.save_checkpoint(tmp_path / "again.pt", unetzoo.from_pretrained(folder))
    big = np.asarray(Image.open(next((data / "images").iterdir())).resize((75, 61)))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(big).save(images / "big.png")  # larger than the 32-pixel patch: tiled
    for name in sorted((data / "images").iterdir())[:3]:
        Image.open(name).save(images / name.name)
    reference, info = load_model(best, fp32())
    sources = {"folder": (folder, fp32()), "checkpoint": (again, fp32()),
               "package torchscript": (package, fp32()),
               "package onnx": (package, fp32("onnxruntime"))}
    unit = np.asarray(big, np.float32)[..., :3] / 255
    expected = Predictor(reference, info.preprocessing, info.task, fp32()).logits(unit)
    expected = torch.from_numpy(expected)  # numpy in, numpy out
    predict_paths(best, images, tmp_path / "out-best", fp32(), progress=False)
    masks = {p.name: np.asarray(Image.open(p)) for p in (tmp_path / "out-best").iterdir()}
    for name, (source, options) in sources.items():
        model, checkpoint = load_model(source, options)
        assert checkpoint.task == info.task and checkpoint.preprocessing == info.preprocessing
        got = torch.from_numpy(Predictor(model, checkpoint.preprocessing, checkpoint.task,
                                         options).logits(unit))
        assert (got - expected).abs().max() <= TOLERANCE, name
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        predict_paths(source, images, out, options, progress=False)
        for file, mask in masks.items():
            assert np.array_equal(np.asarray(Image.open(out / file)), mask), (name, file)


def foreign_package(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A package written with bioimageio.spec directly, as another tool would: ONNX weights
    only, other axis ids, a per-image percentile normalisation, a network that ends in a
    sigmoid and no postprocessing."""
    import bioimageio.spec.model.v0_5 as v
    from bioimageio.core import Sample, Tensor
    from bioimageio.core.digest_spec import get_axes_infos
    from bioimageio.core.proc_setup import setup_pre_and_postprocessing
    from bioimageio.spec import save_bioimageio_package

    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    net = unetzoo.create_model("unet", 3, 1, preset="tiny").eval()

    class Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(20 * (x[:, :1] - 0.5) + self.net(x))  # bright: nucleus

    graph = tmp_path / "net.onnx"
    axes = {0: "b", 2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notices
        torch.onnx.export(Probabilities().eval(), (torch.randn(1, 3, 32, 32),), str(graph),
                          dynamo=False, input_names=["raw"], output_names=["prob"],
                          opset_version=17, dynamic_axes={"raw": axes, "prob": axes})
    rng = np.random.default_rng(0)
    test_in = rng.integers(0, 256, (1, 3, 48, 40), dtype=np.uint8)
    np.save(tmp_path / "in.npy", test_in)
    space = [v.SpaceInputAxis(id=v.AxisId(a), size=v.ParameterizedSize(min=16, step=8))
             for a in ("row", "col")]
    inputs = v.InputTensorDescr(
        id=v.TensorId("raw"), axes=[v.BatchAxis(), v.ChannelAxis(
            id=v.AxisId("c"), channel_names=[v.Identifier(c) for c in ("r", "g", "b")]),
            *space],
        test_tensor=v.FileDescr(source=tmp_path / "in.npy"),
        data=v.IntervalOrRatioDataDescr(type="uint8"),
        preprocessing=[v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32")),
                       v.ScaleRangeDescr(kwargs=v.ScaleRangeKwargs(
                           axes=[v.AxisId("row"), v.AxisId("col")], min_percentile=1,
                           max_percentile=99.5)),
                       v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32"))])

    def describe(test_out: Path) -> v.ModelDescr:
        out = v.OutputTensorDescr(
            id=v.TensorId("prob"), axes=[v.BatchAxis(), v.ChannelAxis(
                id=v.AxisId("c"), channel_names=[v.Identifier("nucleus")]),
                *[v.SpaceOutputAxis(id=v.AxisId(a), size=v.SizeReference(
                    tensor_id=v.TensorId("raw"), axis_id=v.AxisId(a))) for a in ("row", "col")]],
            test_tensor=v.FileDescr(source=test_out),
            data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))
        return v.ModelDescr(
            name="Another tools nucleus model", description="written without unetzoo",
            authors=[v.Author(name="Someone Else")], license=v.LicenseId("MIT"),
            cite=[v.CiteEntry(text="Else 2025", doi=v.Doi("10.1234/else.2025"))],
            documentation=v.FileDescr(source=write(tmp_path / "README.md", "# x\n## Validation\n")),
            inputs=[inputs], outputs=[out],
            weights=v.WeightsDescr(onnx=v.OnnxWeightsDescr(source=graph, opset_version=17)))

    np.save(tmp_path / "out.npy", np.full((1, 1, 48, 40), 0.5, np.float32))  # draft
    draft = describe(tmp_path / "out.npy")
    pre = setup_pre_and_postprocessing(draft, dataset_for_initial_statistics=[]).pre
    dims = get_axes_infos(inputs)
    sample = Sample(members={"raw": Tensor.from_numpy(test_in, dims=dims)}, stat={}, id=0)
    for proc in pre:
        proc(sample)
    x = torch.from_numpy(sample.members["raw"].data.to_numpy().astype(np.float32))
    with torch.no_grad():
        np.save(tmp_path / "out.npy", Probabilities()(x).numpy())
    path = save_bioimageio_package(describe(tmp_path / "out.npy"),
                                   output_path=tmp_path / "other.zip")
    return Path(path), Probabilities()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_package_written_by_another_tool_predicts_what_bioimageio_core_predicts(
        tmp_path: Path, caplog) -> None:
    from bioimageio.core import predict

    path, _ = foreign_package(tmp_path / "pkg")
    rng = np.random.default_rng(3)
    image = (rng.random((64, 80, 3)) * 200 + 30 * (rng.random((64, 80, 1)) > 0.7)).astype(
        np.uint8)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(image).save(images / "cells.png")
    with caplog.at_level("INFO", logger="unetzoo"):
        predict_paths(path, images, tmp_path / "masks", fp32(), progress=False)
    assert "values lie in [" in caplog.text and "probabilities" in caplog.text
    assert "input read as stored uint8 values" in caplog.text
    ours = np.asarray(Image.open(tmp_path / "masks" / "cells.png"))
    from bioimageio.spec import load_model_description

    descr = load_model_description(path)
    theirs = predict(model=descr, inputs=image.transpose(2, 0, 1)[None])
    probs = theirs.members["prob"].data.to_numpy()[0, 0]
    assert ours.shape == (64, 80) and 0.05 < (ours > 0).mean() < 0.95
    assert np.array_equal(ours > 0, probs > 0.5)
    opened = open_package(path)
    predictor = Predictor(opened.module, opened.checkpoint.preprocessing, "binary", fp32())
    got = predictor.probabilities(opened.read(images / "cells.png"))[0].numpy()
    assert np.abs(got - probs).max() < 1e-5


def rewrite(package: Path, out: Path, change) -> Path:
    """A copy of `package` with its rdf.yaml changed by `change(rdf, files)`."""
    with zipfile.ZipFile(package) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    rdf = yaml.safe_load(files["rdf.yaml"])
    change(rdf, files)
    files["rdf.yaml"] = yaml.safe_dump(rdf).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    out.write_bytes(buffer.getvalue())
    return out


def test_packages_unetzoo_cannot_run_are_refused_with_the_reason(package: Path,
                                                                 tmp_path: Path) -> None:
    def keras(rdf, files):
        rdf["weights"] = {"keras_hdf5": {"source": "weights.h5", "tensorflow_version": "2.15"}}
        files["weights.h5"] = b"not really"

    with pytest.raises(ModelError, match=r"weights formats keras_hdf5: unetzoo runs bioimage"
                                         r"\.io packages with TorchScript or ONNX weights"):
        open_package(rewrite(package, tmp_path / "keras.zip", keras))

    def volume(rdf, files):
        rdf["config"].pop("unetzoo")
        for tensor in (rdf["inputs"][0], rdf["outputs"][0]):
            tensor["axes"].insert(2, {"type": "space", "id": "z", "size": 8} if tensor is
                                  rdf["inputs"][0] else {"type": "space", "id": "z", "size": {
                                      "tensor_id": "image", "axis_id": "z"}})

    with pytest.raises(ModelError, match=r"axes batch \(batch\), channel \(channel\), z "
                                         r"\(space\), y \(space\), x \(space\): unetzoo runs 2D"):
        open_package(rewrite(package, tmp_path / "3d.zip", volume))

    def stardist(rdf, files):
        rdf["config"].pop("unetzoo")
        rdf["outputs"][0]["postprocessing"] = [{"id": "scale_linear", "kwargs": {"gain": 2.0}}]

    with pytest.raises(ModelError, match="postprocessing scale_linear"):
        open_package(rewrite(package, tmp_path / "scaled.zip", stardist))


def test_export_refuses_what_bioimage_io_cannot_take(run, tmp_path: Path) -> None:
    best, _ = run
    with pytest.raises(ConfigError, match="--author") as neither:
        export_bioimageio(best, tmp_path / "a.zip", authors=[], license="MIT")
    assert "--license" not in str(neither.value)
    with pytest.raises(ConfigError) as neither:  # both missing: both named at once
        export_bioimageio(best, tmp_path / "a.zip", authors=[" "], license=None)
    assert "pass --author NAME (repeat for several) and --license SPDX-ID" in str(neither.value)
    with pytest.raises(ConfigError, match="SPDX"):
        export_bioimageio(best, tmp_path / "a.zip", authors=["A"], license="my own")
    with pytest.raises(ConfigError, match="no DOI"):
        export_bioimageio(best, tmp_path / "a.zip", authors=["A"], license="MIT",
                          cite=["a paper"])
    (tmp_path / "b.zip").write_bytes(b"keep")
    with pytest.raises(RunError, match="overwrite"):
        export_bioimageio(best, tmp_path / "b.zip", authors=["A"], license="MIT")
    assert (tmp_path / "b.zip").read_bytes() == b"keep"


def dim_image(data: Path, size: int) -> np.ndarray:
    """A dim, low-contrast crop of a training image with a few saturated hot pixels: its
    statistics are far from the dataset's, so only per-image normalisation reads it as the
    model was trained to."""
    bright = np.asarray(Image.open(sorted((data / "images").iterdir())[0]))[:size, :size, :3]
    dim = (bright.astype(np.float32) * 0.2 + 12).round().astype(np.uint8)
    dim[[3, 17, 29], [5, 22, 11]] = 255
    return dim


def package_probabilities(package: Path, image: np.ndarray) -> np.ndarray:
    """`K x H x W` probabilities of bioimageio.core running `package` on stored pixels."""
    from bioimageio.core import predict
    from bioimageio.spec import load_model_description

    result = predict(model=load_model_description(package), inputs=image.transpose(2, 0, 1)[None])
    return result.members["probabilities"].data.to_numpy()[0]


PROBABILITY_TOLERANCE = 1e-4  # package (ONNX / TorchScript, bioimage.io ops) vs unetzoo, fp32


@pytest.mark.parametrize("normalization", ["dataset", "image"])
def test_each_normalisation_gives_the_package_unetzoos_probabilities(
        run, package: Path, tmp_path: Path, normalization: str) -> None:
    from dataclasses import replace

    best, data = run
    checkpoint = unetzoo.load_checkpoint(best)
    checkpoint = replace(checkpoint, preprocessing=replace(checkpoint.preprocessing,
                                                           normalization=normalization))
    if normalization != "dataset":  # the dataset package was tested above
        out = tmp_path / "model.zip"
        result = export_bioimageio(checkpoint, out, authors=["A"], license="MIT")
        assert result.test_status == "passed" and out.is_file()  # bioimageio.core's test
        package = out
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        card = archive.read("README.md").decode()
    steps = [p["id"] for p in rdf["inputs"][0]["preprocessing"] if p["id"] != "ensure_dtype"]
    assert steps == {"dataset": ["fixed_zero_mean_unit_variance"],
                     "image": ["zero_mean_unit_variance"]}[normalization]
    assert ("whole image's own" in card) == (normalization != "dataset")
    image = dim_image(data, checkpoint.preprocessing.img_size)  # one patch: no tiling
    theirs = package_probabilities(package, image)
    ours = Predictor.from_checkpoint(checkpoint, fp32()).probabilities(
        image.astype(np.float32) / 255)
    assert theirs.shape == ours.shape == (1, *image.shape[:2])
    assert np.abs(theirs - ours).max() <= PROBABILITY_TOLERANCE
    opened = open_package(package)  # unetzoo runs its own package with the checkpoint's
    assert opened.checkpoint.preprocessing == checkpoint.preprocessing
    again = Predictor(opened.module, opened.checkpoint.preprocessing, opened.checkpoint.task,
                      fp32()).probabilities(image.astype(np.float32) / 255)
    assert np.abs(again - ours).max() <= PROBABILITY_TOLERANCE
    if normalization == "image":  # the image tells the normalisations apart
        fixed = replace(checkpoint, preprocessing=replace(checkpoint.preprocessing,
                                                          normalization="dataset"))
        other = Predictor.from_checkpoint(fixed, fp32()).probabilities(
            image.astype(np.float32) / 255)
        assert np.abs(other - ours).max() > 100 * PROBABILITY_TOLERANCE


@pytest.mark.parametrize("normalization,why", [
    ("percentile", "compute every per-image mean and std on the unclipped input"),
    ("polarity", "no bioimage.io preprocessing step does it")])
def test_a_normalisation_bioimage_io_cannot_express_is_refused_by_name(
        run, tmp_path: Path, monkeypatch, normalization: str, why: str) -> None:
    """bioimageio.core standardises with the statistics of the input as given (before any
    clip), so clip-then-standardise has no package form; a future normalisation neither."""
    from dataclasses import replace

    from unetzoo.data import transforms

    monkeypatch.setattr(transforms, "NORMALIZATIONS", (*transforms.NORMALIZATIONS, "polarity"))
    checkpoint = unetzoo.load_checkpoint(run[0])
    checkpoint = replace(checkpoint, preprocessing=replace(checkpoint.preprocessing,
                                                           normalization=normalization))
    with pytest.raises(ConfigError, match=f"normalization '{normalization}' cannot be written "
                                          rf"as bioimage\.io preprocessing \(.*{why}"):
        export_bioimageio(checkpoint, tmp_path / "p.zip", authors=["A"], license="MIT")
    assert not (tmp_path / "p.zip").exists()
