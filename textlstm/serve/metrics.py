"""/metrics in Prometheus' text format: the figures of /metrics.json (the engine's counts and the kept
conversations'), read at each scrape, from a registry of the app's own (prometheus_client's global
one would be shared by every app in the process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "textlstm_"

FIGURES = {  # a figure of /metrics.json: its Prometheus kind and help
    "sequences": ("gauge", "Sequences active or waiting, all requests together."),
    "generating": ("gauge", "Sequences generating tokens."),
    "reading_prompt": ("gauge", "Sequences reading their prompt."),
    "steps": ("counter", "Batched model steps."),
    "tokens_generated": ("counter", "Tokens generated."),
    "prompt_tokens_read": ("counter", "Prompt tokens read."),
    "finished": ("counter", "Sequences that ended normally."),
    "cancelled": ("counter", "Sequences dropped: their client left or their request ran past its time."),
    "failed": ("counter", "Sequences ended by an error or by the server stopping."),
    "kept_conversations": ("gauge", "Conversation states kept."),
    "conversations_reused": ("counter", "Requests that continued a kept conversation state."),
    "conversations_rebuilt": ("counter", "Requests with a conversation_id that read their whole conversation."),
    "conversations_evicted": ("counter", "Kept conversation states evicted to make room."),
}


def new_registry(read_figures: Callable[[], dict]) -> CollectorRegistry:
    """A registry whose metrics are `read_figures()` ({"model": name, figure: number}) when scraped."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(read_figures))
    return registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class _Figures:
    """A prometheus_client collector: each figure a gauge or a counter; one it does not know, a gauge."""

    def __init__(self, read_figures: Callable[[], dict]):
        self.read_figures = read_figures

    def collect(self):
        figures = self.read_figures()
        info = GaugeMetricFamily(PREFIX + "model_info", "The model served, as its label; always 1.", labels=["model"])
        info.add_metric([str(figures.get("model", ""))], 1)
        yield info
        for name, value in figures.items():
            if name == "model" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            kind, help_text = FIGURES.get(name, ("gauge", f"{name} of /metrics.json."))
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(PREFIX + name, help_text, value=value)
