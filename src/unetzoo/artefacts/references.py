"""What a user names as a trained model, decided in one place for every command and the
Python API: a checkpoint file, a training run's folder, a model folder, a shipped model's
name, a BioImage Model Zoo package, or a file `unetzoo export` wrote.

`resolve_model` says which of these a reference is (one `ModelReference`, or one error
listing what is accepted); `ModelReference.checkpoint()` gives its weights where it has
them. Running a reference in a backend (the other half of the door) is
`engine.inference.opening.open_model`, which starts from the same `ModelReference`.

    load_checkpoint("runs/exp1")            # the run's models/best.pt
    load_checkpoint("nuclei")               # the shipped model
    resolve_model("unet.onnx").kind         # 'onnx': runs, but holds no trainable weights
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..errors import CheckpointError, ConfigError
from . import MODEL_REFERENCES
from .checkpoint import Checkpoint, checkpoints_hint, read_checkpoint_file
from .checkpoint import as_checkpoint as _as_checkpoint
from .folders import CONFIG_FILE, read_folder, write_folder
from .modelcard import CardInfo, with_run_metrics
from .pretrained import PRETRAINED
from .runs import is_run_folder, run_checkpoint, run_of

log = logging.getLogger("unetzoo")

# the files `unetzoo export` writes, by format (engine/export and engine/inference read them)
EXPORT_SUFFIXES: dict[str, str] = {"onnx": ".onnx", "openvino": ".xml",
                                   "torchscript": ".torchscript"}
PACKAGE_SUFFIX = ".zip"
PACKAGE_RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
# where unetzoo's own packages keep the checkpoint's weights (an attachment), so that export,
# `train --init` and `save_pretrained` take a package as they take a checkpoint
PACKAGE_WEIGHTS = "unetzoo_weights.safetensors"
KINDS: tuple[str, ...] = ("checkpoint", "run", "folder", "shipped", "package",
                          *EXPORT_SUFFIXES)
WITH_WEIGHTS = frozenset({"checkpoint", "run", "folder", "shipped"})


def accepted() -> str:
    """What a trained-model reference may be, in the words every error uses, with the names
    of the shipped models installed here."""
    shipped = ", ".join(PRETRAINED) or "none installed"
    return MODEL_REFERENCES.replace("e.g. nuclei", shipped)


def export_format(path: Path | str) -> str | None:
    """The export format a file's suffix names (`onnx`, `openvino`, `torchscript`), or
    None."""
    suffix = Path(path).suffix.lower()
    return next((f for f, s in EXPORT_SUFFIXES.items() if suffix == s), None)


def is_package(path: Path | str) -> bool:
    """A BioImage Model Zoo package: a `.zip` (holding `rdf.yaml` or `bioimageio.yaml`), or
    such a description file itself."""
    path = Path(path)
    return path.suffix.lower() == PACKAGE_SUFFIX or path.name in PACKAGE_RDF_NAMES or \
        path.name.endswith(".bioimageio.yaml")


@dataclass(frozen=True)
class ModelReference:
    """A trained model as the user named it, identified.

    Attributes:
        given: the reference as given (`runs/exp1`, `nuclei`, `model.zip`).
        kind: `checkpoint`, `run` (a run folder: its best checkpoint), `folder` (a model
            folder), `shipped` (a model shipped in the package), `package` (bioimage.io),
            or an export format: `onnx`, `openvino`, `torchscript`.
        path: the file or folder that holds the model (a run's `models/best.pt`, a shipped
            model's folder inside the installed package).
        run: the training run the model belongs to, or None.
        name: a short name for messages and output folders (file stem, shipped name).
    """

    given: str
    kind: str
    path: Path
    run: Path | None
    name: str

    @property
    def own_file(self) -> Path | None:
        """The file the user's model lives in (None for a shipped model and folders):
        where caches of it may be kept."""
        return self.path if self.kind in ("checkpoint", "run") else None

    @property
    def exported(self) -> bool:
        return self.kind in EXPORT_SUFFIXES

    @cached_property
    def package_entry(self) -> dict[str, Any] | None:
        """`config.unetzoo` of a package unetzoo wrote (None for other packages)."""
        return _package_config(self.path) if self.kind == "package" else None

    @property
    def has_weights(self) -> bool:
        """Whether `checkpoint()` gives trainable weights (checkpoints, runs, model folders,
        shipped models, and packages unetzoo wrote with their weights)."""
        if self.kind in WITH_WEIGHTS:
            return True
        entry = self.package_entry
        return bool(entry and entry.get("weights"))

    def checkpoint(self, purpose: str = "this") -> Checkpoint:
        """The model's checkpoint with its weights.

        Args:
            purpose: what needs the weights, for the error (e.g. `--init`, `export`).

        Raises:
            CheckpointError: an unreadable file; a reference without trainable weights (an
                exported graph, a package of another tool), naming what `purpose` takes.
        """
        if self.kind in ("checkpoint", "run"):
            return read_checkpoint_file(self.path)
        if self.kind in ("folder", "shipped"):
            return read_folder(self.path)
        if self.kind == "package" and self.has_weights:
            return _package_checkpoint(self.path, self.package_entry or {})
        what = ("a bioimage.io package without unetzoo weights (written by another tool, or "
                "by unetzoo before packages carried them)" if self.kind == "package" else
                f"an exported {self.kind} graph")
        raise CheckpointError(f"{what} runs (predict, eval, bench) but holds no trainable "
                              f"weights for {purpose}: pass a checkpoint (.pt), a training "
                              "run folder, a model folder, a shipped model name or a "
                              "package unetzoo exported", self.path)


def resolve_model(value: str | Path | ModelReference) -> ModelReference:
    """Identify a trained-model reference (see the module docstring); a training run's
    folder stands for its `models/best.pt` (said in one line).

    Args:
        value: what the user named.

    Returns:
        The `ModelReference` (nothing is loaded yet).

    Raises:
        ConfigError: `value` is an architecture name (which has no trained weights).
        CheckpointError: nothing of that name; a folder that is neither a run nor a model
            folder (naming the checkpoints it holds); a run without `models/best.pt`.
    """
    if isinstance(value, ModelReference):
        return value
    given = str(value)
    path = Path(value)
    if not path.exists():
        if given in PRETRAINED:
            folder = PRETRAINED[given].folder
            if not (folder / CONFIG_FILE).is_file():
                raise CheckpointError(f"the shipped model {given!r} is not installed (its "
                                      "folder is missing; reinstall unetzoo)", folder)
            return ModelReference(given, "shipped", folder, None, given)
        from ..models import list_models  # names of architectures, for the error

        if given in list_models():
            raise ConfigError(f"--model {given}: {given} is an architecture without trained "
                              f"weights; pass {accepted()}")
        raise CheckpointError(f"model not found: pass {accepted()}", path)
    if path.is_dir():
        if is_run_folder(path):
            return ModelReference(given, "run", run_checkpoint(path), path, path.name)
        if (path / CONFIG_FILE).is_file():
            return ModelReference(given, "folder", path, None, path.name)
        hint = checkpoints_hint(path, "; it ") or (
            f" (no {CONFIG_FILE}: a model folder holds {CONFIG_FILE} + model.safetensors)")
        raise CheckpointError(f"neither a training run folder nor a model folder{hint}", path)
    if is_package(path):
        return ModelReference(given, "package", path, None, path.stem)
    kind = export_format(path) or "checkpoint"
    return ModelReference(given, kind, path, run_of(path), path.stem)


def load_checkpoint(value: str | Path | ModelReference, purpose: str = "this") -> Checkpoint:
    """The checkpoint, with its weights, of anything `resolve_model` takes that holds
    weights; loaded safely (`torch.load(weights_only=True)` or safetensors: nothing runs).

    Args:
        value: a `.pt` file written by `save_checkpoint` (e.g. `models/best.pt`), a training
            run's folder (its `models/best.pt`), a model folder, a shipped model's name, or
            a package unetzoo exported.
        purpose: what needs the weights, for the error.

    Returns:
        The `Checkpoint`: `build_model()` gives the model in eval mode on the CPU,
        `preprocessing` the input normalisation, `task` and `class_names` the outputs.

    Raises:
        CheckpointError: missing, truncated, not a unetzoo checkpoint, written by a newer
            unetzoo, holding objects other than tensors and plain values, or without
            trainable weights (an exported graph). ConfigError: an architecture name.

    Example:
        >>> ckpt = load_checkpoint("runs/exp1/models/best.pt")
        >>> model = ckpt.build_model()  # B x C x H x W images -> B x K x H x W logits
    """
    return resolve_model(value).checkpoint(purpose)


def as_checkpoint(source: nn.Module | Checkpoint | Path | str, **fields: Any) -> Checkpoint:
    """`artefacts.checkpoint.as_checkpoint` for anything a user names as well: a model built
    with `create_model`, a `Checkpoint`, or a reference `load_checkpoint` opens (a run's
    checkpoint then carries the run's test metrics for its card)."""
    if isinstance(source, (nn.Module, Checkpoint)):
        return _as_checkpoint(source, **fields)
    reference = resolve_model(source)
    checkpoint = with_run_metrics(reference.checkpoint(), reference.path)
    return _as_checkpoint(checkpoint, **fields)


def from_pretrained(source: Path | str) -> Checkpoint:
    """Load a model folder, or a pretrained model shipped with unetzoo by name (any other
    reference `load_checkpoint` takes loads too).

    Args:
        source: a folder written by `save_pretrained`, or a name listed by
            `unetzoo models --pretrained` (e.g. `nuclei`).

    Returns:
        A `Checkpoint` (no training state): `.build_model()` gives the model in eval mode,
        float32, on the CPU; `.preprocessing` and `.task` say how to use it.

    Raises:
        CheckpointError: not a model folder, a broken config or weights file, or weights
            that do not fit the model.
    """
    return load_checkpoint(source)


def save_pretrained(source: nn.Module | Checkpoint | Path | str, directory: Path | str, *,
                    dtype: str = "float32", card: CardInfo | None = None,
                    overwrite: bool = False, **fields: Any) -> Path:
    """Write a model folder: `directory/config.json`, `model.safetensors` and `README.md`
    (`artefacts.folders.write_folder`), with no path of this machine in them.

    Args:
        source: a model built with `create_model` (saved with the explicit defaults of
            `as_checkpoint`), a `Checkpoint`, or anything `load_checkpoint` takes.
        directory: the folder to write (new or empty, or replaced with `overwrite`).
        dtype: storage type of floating-point weights: `float32` (exact), `float16` or
            `bfloat16` (half the size; they load as float32).
        card: authors, licence, citations, metrics and notes for the README model card.
        overwrite: replace an existing folder.
        fields: `task`, `class_names`, `preprocessing` or `metrics` replacing the source's.

    Returns:
        The folder written.

    Raises:
        ConfigError: an unknown `dtype`. RunError: the folder exists and is not empty.
        CheckpointError: a reference without weights.
    """
    return write_folder(as_checkpoint(source, **fields), directory, dtype=dtype, card=card,
                        overwrite=overwrite)


# -- packages unetzoo wrote --------------------------------------------------------------
def _package_files(path: Path) -> tuple[dict[str, Any], Any]:
    """(the package description, a reader `name -> bytes` of its files)."""
    if path.suffix.lower() == PACKAGE_SUFFIX:
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"not a readable zip file ({exc})", path) from exc
        names = set(archive.namelist())
        rdf = next((n for n in (*PACKAGE_RDF_NAMES,) if n in names), None) or next(
            (n for n in names if n.endswith(".bioimageio.yaml")), None)
        if rdf is None:
            raise CheckpointError("a .zip without rdf.yaml (or bioimageio.yaml): not a "
                                  "bioimage.io package", path)
        read = archive.read
        text = read(rdf)
    else:
        def read(name: str) -> bytes:
            return (path.parent / name).read_bytes()
        text = path.read_bytes()
    try:
        descr = yaml.safe_load(io.BytesIO(text))
    except yaml.YAMLError as exc:
        raise CheckpointError(f"the package description is not YAML ({exc})", path) from exc
    return (descr if isinstance(descr, dict) else {}), read


def _package_config(path: Path) -> dict[str, Any] | None:
    try:
        descr, _ = _package_files(path)
    except (CheckpointError, OSError, KeyError):
        return None
    entry = (descr.get("config") or {}).get("unetzoo")
    return entry if isinstance(entry, dict) else None


def _package_checkpoint(path: Path, entry: dict[str, Any]) -> Checkpoint:
    """A package's checkpoint with the weights unetzoo stored in it."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    _, read = _package_files(path)
    try:
        state = load_safetensors(read(entry["weights"]))
    except (KeyError, OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read the package's weights {entry.get('weights')} "
                              f"({exc})", path) from exc
    payload = {**entry["checkpoint"], "state_dict": {
        k: v.float() if v.is_floating_point() else v for k, v in state.items()}}
    checkpoint = Checkpoint.from_payload(payload, path)
    try:
        checkpoint.build_model()
    except CheckpointError as exc:
        raise CheckpointError(exc.message, path) from exc
    return checkpoint


def describe_reference(reference: ModelReference) -> str:
    """One line naming what a reference turned out to be."""
    words = {"checkpoint": "a checkpoint", "run": "a training run's best checkpoint",
             "folder": "a model folder", "shipped": "a model shipped with unetzoo",
             "package": "a bioimage.io package", "onnx": "an ONNX graph",
             "openvino": "an OpenVINO IR graph", "torchscript": "a TorchScript graph"}
    return f"{reference.given}: {words[reference.kind]}"

