"""`textlstm serve`: an OpenAI-compatible HTTP server with continuous batching.

engine.py runs the model (one thread, one batched LSTM step per token for every active sequence);
app.py makes the ASGI app, whose routes (routes.py) read a request's body (bodies.py), make its
prompts (prompts.py), submit its choices to the engine (submission.py) and answer from the engine's
events (replies.py); inspect_routes.py answers /v1/inspect (the page's Cells tab) with
`textlstm inspect`'s recording; the rest are their parts. Needs the `serve` extra (FastAPI, uvicorn,
prometheus_client).

May import: `hardware`, `data`, `model`, `runs`, `evaluation`, `generation`, `inspection` and the top
of textlstm.
"""
