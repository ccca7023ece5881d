"""`unetzoo serve`: an HTTP server for trained models (Starlette under uvicorn).

naming (URL names of models) -> models (each model opened through the one door, its worker
threads and queue; batching gathers model calls) -> inputs (requests into images, by
`predict`'s reading rules) / outputs (labels into `predict`'s files) -> app (the routes) ->
runner (open the models, run uvicorn). The server sits above the engine and the artefacts,
beside the report; see `serve.app` for the routes.
"""
