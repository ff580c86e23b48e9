"""The batchers that read a split's ids (token_ids.py) for training: contiguous rows with the LSTM
state carried (StreamBatcher), or padded windows of whole documents (DocumentBatcher). A streamed
corpus has its own batcher, streaming.StreamingBatcher."""

from __future__ import annotations

import numpy as np
import torch

from textlstm.errors import TextlstmError
from textlstm.tokens import EOT_ID, PAD_ID


class StreamBatcher:
    """Truncated-BPTT batches from one long stream of ids.

    The stream is cut into `world_size * batch_size` contiguous rows; batch i holds columns
    [i*seq_len, (i+1)*seq_len] of this process's rows, so the LSTM state after batch i is the right
    start for batch i+1. Batches are a pure function of (i, rank): a resumed run reads the same data.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        rows = batch_size * world_size
        self.row_len = (len(ids) - 1) // rows
        if self.row_len < 1:
            raise TextlstmError(
                f"the training split has {len(ids)} tokens: too few for {rows} rows; lower --batch-size"
            )
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = min(seq_len, self.row_len)
        self.first_row = rank * batch_size

    def __len__(self) -> int:
        return -(-self.row_len // self.seq_len)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, each [batch_size, T] int64 (T is seq_len, or less for the last batch)."""
        start = i * self.seq_len
        width = min(self.seq_len, self.row_len - start)
        rows = [
            self.ids[row * self.row_len + start : row * self.row_len + start + width + 1]
            for row in range(self.first_row, self.first_row + self.batch_size)
        ]
        block = torch.from_numpy(np.stack(rows).astype(np.int64))
        return block[:, :-1], block[:, 1:]


class DocumentBatcher:
    """Padded batches of whole documents, for corpora of short, independent documents.

    Each document (`EOT doc EOT`) is cut into windows of at most seq_len + 1 ids; windows are
    shuffled each epoch with a generator seeded by (seed, epoch), padded with the padding id and
    given with their lengths, so the model masks the padding. The LSTM state starts at zero for
    every window.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0, world_size: int = 1):
        ends = np.flatnonzero(np.asarray(ids) == EOT_ID)
        starts, lengths = [], []
        for begin, end in zip(ends[:-1], ends[1:]):
            for window in range(begin, end, seq_len):
                starts.append(window)
                lengths.append(min(seq_len, end - window) + 1)
        if len(starts) < batch_size * world_size:
            raise TextlstmError(
                f"the training split has {len(starts)} document windows: "
                f"too few for {batch_size * world_size} rows; lower --batch-size"
            )
        self.ids = ids
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self._order_epoch, self._order_cache = None, None

    def __len__(self) -> int:
        return len(self.starts) // (self.batch_size * self.world_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order_cache = torch.randperm(len(self.starts), generator=generator).numpy()
            self._order_epoch = epoch
        return self._order_cache

    def batch(self, i: int, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, targets [batch, T] and lengths [batch] (lengths on the CPU)."""
        per_step = self.batch_size * self.world_size
        first = i * per_step + self.rank * self.batch_size
        chosen = self._order(epoch)[first : first + self.batch_size]
        width = int(self.lengths[chosen].max())
        block = np.full((len(chosen), width), PAD_ID, dtype=np.int64)
        for row, window in enumerate(chosen):
            piece = self.ids[self.starts[window] : self.starts[window] + self.lengths[window]]
            block[row, : len(piece)] = piece
        block = torch.from_numpy(block)
        return block[:, :-1], block[:, 1:], torch.from_numpy(self.lengths[chosen] - 1)
