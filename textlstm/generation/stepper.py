"""The model's state as it reads a text: the prompt in one forward pass, then one step per token.

Every new token costs one `model.step` from the carried (h, c), so the cost per token does not grow
with the length of the text.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from textlstm.generation.sampler import TokenSampler
from textlstm.model.network import LSTMLanguageModel, State
from textlstm.tokens import EOT_ID

PROMPT_CHUNK = 4096  # prompt ids read per forward pass


class LSTMStepper:
    """The model with its carried (h, c) and the logits for the next token.

    Several ids are read in one forward pass of the model; a single id, the per-token hot path,
    in one `model.step`. It leaves torch's thread count alone: `generator.load` sets it once.
    """

    def __init__(self, model: LSTMLanguageModel, state: State | None = None):
        self.model = model
        self.state = state
        self.logits: torch.Tensor | None = None  # [vocab], for the token after the last one read
        self._device = model.embedding.weight.device

    @torch.inference_mode()
    def read(self, ids: list[int]) -> None:
        """Advance over `ids`: all of them in one forward pass, or one step for a single id."""
        if not ids:
            return
        if len(ids) == 1 and self.state is not None:
            logits, self.state = self.model.step(torch.tensor(ids, device=self._device), self.state)
            self.logits = logits[0]
            return
        for start in range(0, len(ids), PROMPT_CHUNK):  # bounded memory for very long prompts
            batch = torch.tensor([ids[start : start + PROMPT_CHUNK]], dtype=torch.long, device=self._device)
            hidden, self.state = self.model.hidden_states(batch, self.state)
        self.logits = self.model.logits(hidden[0, -1])


def sample_tokens(stepper: LSTMStepper, sampler: TokenSampler, max_tokens: int) -> Iterator[int]:
    """Sample up to max_tokens ids, feeding each back to the model; stops after end of text.

    Every sampled token, end of text included, is read by the stepper, so its state afterwards
    covers the whole text (a chat continues from there). End of text is not yielded.
    """
    if stepper.logits is None:
        raise ValueError("the stepper has read nothing yet: give it a prompt (or the end-of-text token) first")
    for _ in range(max_tokens):
        token = sampler(stepper.logits)
        stepper.read([token])
        if token == EOT_ID:
            return
        yield token
