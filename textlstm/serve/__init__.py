"""`textlstm serve`: an OpenAI-compatible HTTP server with continuous batching.

engine.py runs the model (one thread, one batched LSTM step per token for every active sequence);
app.py holds the HTTP routes; the rest are their parts. Needs the `serve` extra (FastAPI, uvicorn,
prometheus_client).

May import: `hardware`, `data`, `model`, `runs`, `evaluation`, `generation` and the top of textlstm.
"""
