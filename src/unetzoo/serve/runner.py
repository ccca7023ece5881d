"""Start the server: name and open the models (every refusal before the port opens), then run
the application under uvicorn."""

from __future__ import annotations

import logging

from .models import ServedModel, ServeOptions
from .naming import name_models

log = logging.getLogger("unetzoo")


def open_models(values: list[str], options: ServeOptions) -> list[ServedModel]:
    """The served models of the `--model` values: named (`serve.naming`), clashes refused,
    then each opened through the one door (`Predictor.open`, which logs its backend).

    Raises:
        ConfigError: a name clash or a name that cannot be in a URL (before any model is
            opened).
        CheckpointError, ConfigError, ExportError: a model that cannot be opened.
    """
    named = name_models(values)
    models: list[ServedModel] = []
    try:
        for item in named:
            model = ServedModel(item, options)
            models.append(model)
            log.info(f"model {model.name!r}: {item.reference.kind} {item.reference.given}, "
                     f"{model.task} ({', '.join(model.class_names)}), {model.channels} "
                     f"channel(s); {model.max_batch} request(s) at a time")
    except BaseException:
        for model in models:
            model.close()
        raise
    return models


def serve(values: list[str], host: str, port: int, options: ServeOptions,
          access_log: bool = True) -> None:
    """Serve the models `values` name on `host:port` until interrupted (see `serve.app` for
    the routes).

    Raises:
        ConfigError, CheckpointError, ExportError: a model that cannot be served (before
            the port opens).
        OSError: the port cannot be opened.
    """
    import uvicorn

    from .app import build_app

    models = open_models(values, options)
    app = build_app(models, options)
    shown = f"[{host}]" if ":" in host else host
    log.info(f"serving {', '.join(m.name for m in models)} at http://{shown}:{port}/ "
             "(the page), /v2/... (Open Inference Protocol); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="info" if access_log else "warning",
                access_log=access_log, server_header=False)
