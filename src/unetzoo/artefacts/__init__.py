"""What training makes and others use: the checkpoint format, model folders, model cards, the
shipped pretrained models, the run folder's layout, and the one place that tells what a user
names as a trained model (`references`). Imports models and data, never the engine."""

# what a trained-model reference may be (`references.resolve_model`), in the words of every
# error and of every command's --help
MODEL_REFERENCES = ("a checkpoint (.pt), a training run folder (its models/best.pt), a model "
                    "folder (config.json + model.safetensors), a shipped model name (e.g. nuclei: "
                    "`unetzoo models --pretrained`), a bioimage.io package (.zip, also "
                    "from other tools) or a file `unetzoo export` wrote (.onnx, .xml, "
                    ".torchscript)")
