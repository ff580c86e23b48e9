"""Learning curves of one model with each tokenizer: do the rankings of a short race hold later?

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/experiments/e2026_12_07_tokenizer_race/curves.py \
        CORPUS OUT.json char,bpe-1024,bpe-4096a,bpe-16384a 15,30,60,120,240

Each candidate (KIND-SIZE, "a": adaptive softmax) learns its tokenizer from the corpus's first 4M
training characters, then trains 2 x 256 (embedding 64, no dropout, AdamW 4e-3 constant, weight decay
0.01, 16 x 64 batches) on them; at each checkpoint (seconds of training, evaluations not counted) it
is scored on the first 200,000 validation characters in bits per character. The script as it was run,
but for its formatting and model_config_for's import (it moved from training.trainer to model.network).
"""

import json
import math
import sys
import time

import numpy as np
import torch

from textlstm.config import ModelConfig, TrainConfig
from textlstm.data.batchers import StreamBatcher
from textlstm.data.corpora import load_corpus
from textlstm.data.text_pieces import first_chars, split_pieces
from textlstm.data.tokenizer import build_tokenizer
from textlstm.evaluation.scoring import score_stream
from textlstm.model.network import LSTMLanguageModel, model_config_for
from textlstm.training.optimizer import build_optimizer
from textlstm.training.step import TrainingStep

torch.set_num_threads(1)
dataset, out = sys.argv[1], sys.argv[2]
cands = [c for c in sys.argv[3].split(",")]
checkpoints = [float(x) for x in sys.argv[4].split(",")]
corpus = load_corpus(dataset)
t0 = time.time()
train_text = "".join(first_chars(split_pieces(corpus.train, corpus.documents), 4_000_000))
valid_text = "".join(first_chars(split_pieces(corpus.valid, corpus.documents), 200_000))
print("read", len(train_text), len(valid_text), time.time() - t0, flush=True)
results = []
for cand in cands:
    kind, _, size = cand.partition("-")
    adaptive = size.endswith("a")
    size = int(size.rstrip("a")) if size else None
    t0 = time.time()
    tok = build_tokenizer(kind, [train_text[i : i + 100_000] for i in range(0, len(train_text), 100_000)], size)
    build_s = time.time() - t0
    ids = np.array(tok.encode(train_text), dtype=np.int64)
    vids = np.array(tok.encode(valid_text), dtype=np.int64)
    enc_s = time.time() - t0 - build_s
    mc = model_config_for(
        ModelConfig(
            layers=2,
            hidden_size=256,
            embedding_size=64,
            dropout=0.0,
            recurrent_dropout=0.0,
            output_layer="adaptive" if adaptive else "full",
        ),
        tok,
    )
    torch.manual_seed(0)
    model = LSTMLanguageModel(mc)
    tc = TrainConfig(batch_size=16, seq_len=64, lr=4e-3, weight_decay=0.01, threads=1)
    step = TrainingStep(model, build_optimizer(model, tc), tc, torch.device("cpu"), "float32", alone=True)
    batcher = StreamBatcher(ids, 16, 64, 0, 1)
    clock, i, state, curve = 0.0, 0, None, []
    for cp in checkpoints:
        while clock < cp:
            s = time.perf_counter()
            inputs, targets = batcher.batch(i % len(batcher))
            o = step(inputs, targets, state if i % len(batcher) else None, None, 4e-3)
            state = o.state
            clock += time.perf_counter() - s
            i += 1
        loss, n = score_stream(model, vids, 16, 256)
        bpc = loss / len(valid_text) / math.log(2)
        curve.append((cp, i, round(bpc, 4)))
        print(cand, cp, i, round(bpc, 4), flush=True)
    results.append(
        dict(
            candidate=cand,
            vocab=tok.vocab_size,
            chars_per_token=len(train_text) / len(ids),
            build_s=build_s,
            encode_s=enc_s,
            curve=curve,
        )
    )
    json.dump(results, open(out, "w"), indent=1)
