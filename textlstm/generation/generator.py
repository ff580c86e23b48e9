"""The Python API for sampling: load a checkpoint, then generate text, stream it, or chat.

    import textlstm
    lm = textlstm.load()                      # newest checkpoint under checkpoints/
    print(lm.generate("To be", max_tokens=200, seed=1))
    for piece in lm.stream("To be", temperature=0.5):
        print(piece, end="", flush=True)
    chat = lm.session(temperature=0.7)        # keeps the LSTM state across turns
    for piece in chat.send("Hello"):
        print(piece, end="")

Options (all keyword): temperature, top_k, top_p, repetition_penalty, max_tokens, stop, seed; see
`SamplingOptions`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from textlstm.config import SamplingOptions
from textlstm.data.tokenizer import TextTokenizer
from textlstm.errors import TextlstmError
from textlstm.generation.decoding import DECODE_CONTEXT, TextDecoder, stream_text
from textlstm.generation.sampler import TokenSampler, make_rng
from textlstm.generation.stepper import LSTMStepper, sample_tokens
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs.inference import load_for_inference
from textlstm.tokens import EOT_ID, is_byte_token
from textlstm.turns import TurnFormat


class UnknownTokenWarning(UserWarning):
    """The prompt holds text the model never saw in training (read as bytes or as the unknown token)."""


def load(
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    precision: str = "float32",
    threads: int | None = 1,
    quantize: str | None = None,
) -> TextGenerator:
    """Load a checkpoint folder, or a model on the Hugging Face Hub as "hf://USER/NAME[@REVISION]"
    (default: the newest folder under ./checkpoints), for sampling.

    device: as `--device`: "auto" is a CUDA GPU if torch sees one, else the CPU (the CPU with int8 weights).
    precision "bfloat16" holds the weights in bfloat16: half the bytes for each step to read (on
    which CPUs that is faster: benchmarks/RESULTS.md, "Generation at batch 1"); "float16" in float16,
    for GPUs without bfloat16; "auto" as `--precision auto` (float32 with int8 weights). Sampling still
    runs on float32 logits.

    threads: CPU threads torch uses in this process, set here once; None leaves them as they are.
    At batch 1 the matrices are too small to share, and with a second thread every op waits for it
    (measured 10-20x slower on a busy 2-core machine), hence one by default.

    quantize "int8": the LSTM and output matrices in int8, for sampling on a CPU
    (textlstm/model/quantized.py; how fast and how close to float32: benchmarks/RESULTS.md, "int8 weights").
    """
    model, tokenizer, config, folder = load_for_inference(checkpoint, device, precision, quantize, threads)
    return TextGenerator(model, tokenizer, checkpoint=folder, turns=config.data.turns)


class TextGenerator:
    """A model and its tokenizer, ready to continue text."""

    def __init__(
        self,
        model: LSTMLanguageModel,
        tokenizer: TextTokenizer,
        checkpoint: Path | None = None,
        turns: TurnFormat | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint  # the folder it was loaded from, if any
        self.turns = turns or TurnFormat()  # how its sessions write a conversation
        self.device = model.embedding.weight.device
        self._byte_ids = {i for token, i in tokenizer.hf.get_vocab().items() if is_byte_token(token)}

    def stream(self, prompt: str = "", **options) -> Iterator[str]:
        """Text pieces continuing `prompt` (not repeated), yielded as they are produced."""
        options = SamplingOptions(**options)
        ids = self.encode(prompt)
        stepper = self.new_stepper(ids)
        return self.reply(stepper, ids, options, make_rng(options.seed, self.device))

    def generate(self, prompt: str = "", **options) -> str:
        """The continuation of `prompt` (not repeated) as one string."""
        return "".join(self.stream(prompt, **options))

    def session(self, turns: TurnFormat | None = None, **options) -> Session:
        """A conversation whose LSTM state is kept from one `send` to the next."""
        return Session(self, turns, **options)

    def new_stepper(self, ids: Sequence[int] = ()) -> LSTMStepper:
        """A stepper that has read `ids` as the start of a document (after the end-of-text token)."""
        stepper = LSTMStepper(self.model)
        stepper.read([EOT_ID, *ids])  # one forward pass over the whole prompt
        return stepper

    def reply(
        self,
        stepper: LSTMStepper,
        prompt_ids: list[int],
        options: SamplingOptions,
        rng: torch.Generator,
        stops: tuple[str, ...] = (),
    ) -> Iterator[str]:
        """Text sampled from where `stepper` stands; `prompt_ids` count as seen for the repetition penalty."""
        sampler = TokenSampler(options, self.tokenizer.vocab_size, rng, self.device)
        sampler.mark_seen(prompt_ids)
        tokens = sample_tokens(stepper, sampler, options.max_tokens)
        decoder = TextDecoder(self.tokenizer, prompt_ids[-DECODE_CONTEXT:])
        return stream_text(tokens, decoder, options.stop + stops)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; warns (UnknownTokenWarning) about text the model never saw."""
        encoding = self.tokenizer.hf.encode(text, add_special_tokens=False)
        unk_id = self.tokenizer.unk_id
        unknown = [
            text[start:end].strip() or text[start:end]
            for i, (start, end) in zip(encoding.ids, encoding.offsets)
            if i == unk_id or i in self._byte_ids
        ]
        if unknown:
            shown = list(dict.fromkeys(unknown))
            listing = ", ".join(repr(s) for s in shown[:8]) + (", ..." if len(shown) > 8 else "")
            how = "the unknown token" if unk_id is not None and unk_id in encoding.ids else "UTF-8 bytes"
            warnings.warn(
                f"the prompt has text this model never saw in training, read as {how}: {listing}",
                UnknownTokenWarning,
                stacklevel=3,
            )
        return encoding.ids


class Session:
    """A chat in the turn format of `turns` (default: the generator's, from its checkpoint).

    Each `send` reads the user's turn and streams the answer, which ends at end of text, a blank
    line, the model starting the next user turn, a stop string or max_tokens. The LSTM state
    carries the whole conversation, so no turn re-reads the history: after every turn it has read
    the conversation's text, `self.text()`, but for the newline that ends the last answer (the
    next turn reads it). An answer stopped part way (Ctrl-C, or the iterator closed) leaves the
    state where the sampler stopped.
    """

    def __init__(self, generator: TextGenerator, turns: TurnFormat | None = None, **options):
        self.generator = generator
        self.turns = turns if turns is not None else generator.turns
        self.options = SamplingOptions(**options)
        self.rng = make_rng(self.options.seed, generator.device)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation: back to the start of a document."""
        self._stepper = self.generator.new_stepper()
        self.history: list[tuple[str, str]] = []  # (role, text), role "user" or "assistant"

    def configure(self, **changes) -> None:
        """Change sampling options for the next turns; a new seed restarts the random stream."""
        try:
            options = dataclasses.replace(self.options, **changes)
        except TypeError as error:
            raise TextlstmError(str(error)) from None
        if "seed" in changes:
            self.rng = make_rng(options.seed, self.generator.device)
        self.options = options

    def text(self) -> str:
        """The conversation so far in the turn format: what the model has read, each answer ending its line."""
        return self.turns.conversation(self.history)

    def send(self, text: str) -> Iterator[str]:
        """Read the user's turn now; the answer is streamed as the iterator is consumed."""
        # The state stands at the end of the last answer, whose line ends only now.
        ids = self.generator.encode(("\n" if self.history else "") + self.turns.user_turn(text))
        self._stepper.read(ids)
        self.history += [("user", text), ("assistant", "")]
        return self._answer(ids)

    def _answer(self, prompt_ids: list[int]) -> Iterator[str]:
        start = self._stepper.state, self._stepper.logits
        pieces = []
        for piece in self.generator.reply(self._stepper, prompt_ids, self.options, self.rng, stops=self.turns.stops()):
            pieces.append(piece)
            self.history[-1] = ("assistant", "".join(pieces))
            yield piece
        # Ending at a stop string or end of text, the sampler has read past the answer. The next
        # turn follows the answer itself, so the state reads the answer again from its start (one
        # forward pass); then the model's context is exactly the transcript, `self.text()`.
        self._stepper.state, self._stepper.logits = start
        self._stepper.read(self.generator.encode(self.history[-1][1]))
