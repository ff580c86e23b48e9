"""How well does `textlstm serve` share one model among many clients?

Starts `textlstm serve` as a subprocess on 127.0.0.1 with a char model of 2 x 512 (random weights:
speed does not depend on training; end of text and byte tokens are switched off, so every token is
one character and every request makes exactly max_tokens tokens). Then, for 1, 8, 64 and 256
concurrent clients on this host, each client streams completions back to back for --seconds
seconds (bounded in count and time), and we record:

- total tokens/s (all clients) and per-client tokens/s (median);
- time to first token (request sent -> first text event), p50 and p99;
- time between tokens: the gap between a client's text events divided by the tokens in the later
  event (the server sends what a sequence made since its last event in one event), p50 and p99;
- the server's CPU time per token streamed, and its RSS after each level;
- while 8 clients stream, one 100 KB prompt is sent: the longest gap the 8 saw meanwhile;
- RSS growth per kept conversation: RSS after N chat requests without a conversation_id, then
  after N more that each keep a conversation, divided by N.
- scoring through the API: at each of --scoring-clients levels, that many clients send echo +
  logprobs requests with max_tokens 0 (what lm-evaluation-harness sends) of a SCORED_CHARS-character
  text back to back: prompt tokens scored per second;
- the same model's `textlstm eval` scoring (evaluate_split, batch 32 x 256 as the command runs
  it) and training (training/step.py's `TrainingStep`, the step the trainer runs, batch 64 x 128,
  dropout 0.2 and recurrent 0.25)
  tokens/s, timed in alternation as benchmarks/speed/run.py times them for RESULTS.md, in this process
  with no server running, on the server's --threads;
- the model's `step` alone at batch 1 and 64: the most the streaming levels could reach.

The precisions default to serve's own (--precision auto: bfloat16 where the CPU computes it
natively, hardware/precision.py), then float32. The clients speak HTTP/1.1 on raw asyncio sockets,
so the client side costs little CPU. Writes benchmarks/results/serving.json and
benchmarks/SERVING.md (serving.json and SERVING.md in --output-dir). Needs the serve extra
(pip install -e ".[serve]").

    python -m benchmarks.speed.serving [--seconds 15] [--conversations 4000] [--threads 1]
    python -m benchmarks.speed.serving --quick    # float32 only, 1 and 4 clients, 1 s a level: checks that it runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from textlstm.hardware.threads import prefer_passive_waiting

prefer_passive_waiting()  # as the textlstm command does, before torch loads: eval and training time as they run there

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.speed.common import BENCHMARKS, REPO, add_quick_options, output_folder  # noqa: E402
from benchmarks.speed.interleaved import interleaved_medians  # noqa: E402
from benchmarks.speed.training_step import Shape, textlstm_step  # noqa: E402
from textlstm.hardware.device import device_name  # noqa: E402

RESULTS = BENCHMARKS / "results" / "serving.json"
REPORT = BENCHMARKS / "SERVING.md"
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-&$\n"  # tinyshakespeare's 65
PROMPT = "ROMEO:\nBut soft, what light"
LEVELS = (1, 8, 64, 256)
MAX_TOKENS = 100  # per request; clients send requests back to back
SCORED_CHARS = 2000  # the text of each scoring request


@dataclass(frozen=True)
class Served:
    """The served model's shape, and the batch its training steps are timed at."""

    embedding: int = 64
    hidden: int = 512
    layers: int = 2
    train_batch: int = 64  # benchmarks/speed/run.py's char shape
    train_seq_len: int = 128


SERVED = Served()
QUICK_SERVED = Served(embedding=16, hidden=32, train_batch=4, train_seq_len=16)


def served_model(vocab_size: int, served: Served):
    """The served shape with seed-0 random weights (speed does not depend on training)."""
    from textlstm.config import ModelConfig
    from textlstm.model.network import LSTMLanguageModel

    torch.manual_seed(0)
    config = ModelConfig(vocab_size, embedding_size=served.embedding, hidden_size=served.hidden, layers=served.layers)
    return LSTMLanguageModel(config)


def write_checkpoint(folder: Path, served: Served) -> Path:
    from textlstm.config import RunConfig
    from textlstm.data.tokenizer import build_tokenizer
    from textlstm.fileio import write_text
    from textlstm.runs.checkpoint import BEST_WEIGHTS, CONFIG, TOKENIZER, save_weights
    from textlstm.tokens import EOT_ID

    tokenizer = build_tokenizer("char", [ALPHABET])
    model = served_model(tokenizer.vocab_size, served)
    config = RunConfig(model=model.config)
    with torch.no_grad():
        model.decoder.bias[EOT_ID] = -1e4
        for byte in range(256):
            model.decoder.bias[tokenizer.hf.token_to_id(f"<0x{byte:02X}>")] = -1e4
    folder.mkdir(parents=True)
    write_text(folder / CONFIG, config.to_json())
    tokenizer.save(folder / TOKENIZER)
    save_weights(model, folder / BEST_WEIGHTS, step=0)
    return folder


def start_server(
    checkpoint: Path, threads: int, max_conversations: int, precision: str = "float32"
) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "textlstm", "serve", "--checkpoint", str(checkpoint), "--port", "0",
         "--threads", str(threads), "--max-conversations", str(max_conversations), "--model-name", "bench",
         "--device", "cpu", "--precision", precision],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines = []
    while not lines or not lines[-1].startswith(("serving ", "error")):  # it listens first, then loads the model
        lines.append(process.stderr.readline())
        if not lines[-1]:
            break
    match = re.search(r"on http://([\d.]+):(\d+) ", lines[-1]) if lines[-1].startswith("serving ") else None
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {''.join(lines)}{process.stderr.read()}")
    return process, match.group(1), int(match.group(2))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# --- a small HTTP/1.1 client on asyncio sockets ----------------------------------------------------


async def post(host: str, port: int, path: str, body: dict, on_event=None) -> dict | None:
    """POST JSON; for a streamed answer call on_event(data) for each SSE data payload and return
    None, else return the JSON body."""
    reader, writer = await asyncio.open_connection(host, port)
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    try:
        status = int((await reader.readline()).split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {await reader.read()}")
        if headers.get("transfer-encoding") != "chunked":
            return json.loads(await reader.readexactly(int(headers["content-length"])))
        pending = b""
        while size := int((await reader.readline()).strip(), 16):
            pending += (await reader.readexactly(size + 2))[:-2]
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                data = event.removeprefix(b"data: ")
                if data != b"[DONE]" and on_event:
                    on_event(json.loads(data))
        return None
    finally:
        writer.close()


async def streaming_client(host: str, port: int, until: float, seed: int, record: dict) -> None:
    """Stream completions back to back until `until`; record tokens, first-token times and gaps."""
    while time.perf_counter() < until:
        sent = time.perf_counter()
        last = None

        def on_event(data, sent=sent):
            nonlocal last
            now = time.perf_counter()
            text = "".join(choice["text"] for choice in data["choices"])
            if not text:
                return
            if last is None:
                record["first_token"].append(now - sent)
            else:
                record["gaps"].extend([(now - last) / len(text)] * len(text))
                record["event_gaps"].append((now, now - last))
            if now <= until:
                record["tokens"] += len(text)
            last = now

        body = {
            "model": "bench",
            "prompt": PROMPT,
            "max_tokens": MAX_TOKENS,
            "temperature": 0.8,
            "seed": seed,
            "stream": True,
        }
        await post(host, port, "/v1/completions", body, on_event)
        seed += 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


async def run_level(host: str, port: int, clients: int, seconds: float) -> dict:
    records = [{"tokens": 0, "first_token": [], "gaps": [], "event_gaps": []} for _ in range(clients)]
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(streaming_client(host, port, until, i, records[i]) for i in range(clients)))
    window = seconds
    first = [t for r in records for t in r["first_token"]]
    gaps = [g for r in records for g in r["gaps"]]
    return {
        "clients": clients,
        "seconds": window,
        "total_tokens_per_sec": sum(r["tokens"] for r in records) / window,
        "per_client_tokens_per_sec_median": statistics.median(r["tokens"] / window for r in records),
        "first_token_ms_p50": 1000 * percentile(first, 50),
        "first_token_ms_p99": 1000 * percentile(first, 99),
        "between_tokens_ms_p50": 1000 * percentile(gaps, 50),
        "between_tokens_ms_p99": 1000 * percentile(gaps, 99),
        "tokens_per_event_mean": len(gaps) / max(1, sum(len(r["event_gaps"]) for r in records)),
        "requests": len(first),
    }


def scored_text(seed: int) -> str:
    """SCORED_CHARS characters of the alphabet, different for each request."""
    rng = np.random.default_rng(seed)
    return "".join(np.array(list(ALPHABET))[rng.integers(0, len(ALPHABET), SCORED_CHARS)])


async def scoring_client(host: str, port: int, until: float, seed: int, record: dict) -> None:
    """Send echo + logprobs requests that only score their prompt, back to back until `until`."""
    while time.perf_counter() < until:
        body = {"model": "bench", "prompt": scored_text(seed), "max_tokens": 0, "echo": True, "logprobs": 1}
        answer = await post(host, port, "/v1/completions", body)
        record["tokens"] += len(answer["choices"][0]["logprobs"]["tokens"])
        record["ended"] = time.perf_counter()
        seed += 1000


async def run_scoring_level(host: str, port: int, clients: int, seconds: float) -> dict:
    """Prompt tokens scored per second, from the start to the end of the last request."""
    records = [{"tokens": 0, "ended": 0.0} for _ in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(*(scoring_client(host, port, start + seconds, i, records[i]) for i in range(clients)))
    elapsed = max(r["ended"] for r in records) - start
    tokens = sum(r["tokens"] for r in records)
    return {
        "clients": clients,
        "chars_per_request": SCORED_CHARS,
        "seconds": elapsed,
        "tokens": tokens,
        "tokens_per_sec": tokens / elapsed,
    }


async def long_prompt_stall(host: str, port: int, seconds: float, chars: int = 100_000) -> dict:
    """8 clients stream while one 100 KB prompt is read: the longest gap between their events."""
    records = [{"tokens": 0, "first_token": [], "gaps": [], "event_gaps": []} for _ in range(8)]
    until = time.perf_counter() + seconds
    clients = [asyncio.create_task(streaming_client(host, port, until, i, records[i])) for i in range(8)]
    await asyncio.sleep(1.0)
    prompt = (ALPHABET[:-1] * (chars // len(ALPHABET) + 1))[:chars]
    started = time.perf_counter()
    await post(host, port, "/v1/completions", {"model": "bench", "prompt": prompt, "max_tokens": 1})
    finished = time.perf_counter()
    await asyncio.gather(*clients)
    # The gaps that ended while the long prompt was in the server (or just after).
    gaps = [gap for r in records for end, gap in r["event_gaps"] if started <= end <= finished + 0.5]
    return {
        "prompt_chars": len(prompt),
        "prompt_seconds": finished - started,
        "others_max_gap_ms": 1000 * max(gaps),
        "others_p99_gap_ms": 1000 * percentile(gaps, 99),
    }


async def kept_conversation_memory(
    host: str, port: int, pid: int, count: int, served: Served, concurrency: int = 32
) -> dict:
    """RSS growth per kept conversation: N chats without an id (the allocator warms up), then N with."""

    async def chats(keep: bool, offset: int) -> None:
        queue = list(range(count))

        async def worker():
            while queue:
                i = queue.pop()
                body = {
                    "model": "bench",
                    "messages": [{"role": "user", "content": f"Good morrow, {i}"}],
                    "max_tokens": 4,
                }
                if keep:
                    body["conversation_id"] = f"c{offset + i}"
                await post(host, port, "/v1/chat/completions", body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await chats(keep=False, offset=0)
    await chats(keep=False, offset=0)
    before = rss_mb(pid)
    await chats(keep=True, offset=0)
    after = rss_mb(pid)
    metrics = await get_json(host, port, "/metrics.json")
    return {
        "conversations": count,
        "kept": metrics["kept_conversations"],
        "rss_before_mb": before,
        "rss_after_mb": after,
        "kb_per_conversation": (after - before) * 1024 / count,
        "state_kb": 2 * served.layers * served.hidden * 4 / 1024,  # (h, c) of each layer in float32
    }


async def get_json(host: str, port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def measure_levels(process: subprocess.Popen, host: str, port: int, args, precision: str) -> tuple[list[dict], dict]:
    """The streaming levels, then the scoring levels, on one server."""
    levels = []
    for clients in (int(c) for c in args.levels.split(",")):
        cpu_before = cpu_seconds(process.pid)
        level = asyncio.run(run_level(host, port, clients, args.seconds))
        tokens = level["total_tokens_per_sec"] * level["seconds"]
        level["server_cpu_ms_per_token"] = 1000 * (cpu_seconds(process.pid) - cpu_before) / max(1.0, tokens)
        level["server_rss_mb"] = rss_mb(process.pid)
        level["precision"] = precision
        levels.append(level)
        print(json.dumps(level), flush=True)
    scoring = []
    for clients in (int(c) for c in args.scoring_clients.split(",")):
        cpu_before = cpu_seconds(process.pid)
        level = asyncio.run(run_scoring_level(host, port, clients, args.seconds))
        level["server_cpu_ms_per_token"] = 1000 * (cpu_seconds(process.pid) - cpu_before) / max(1, level["tokens"])
        level["precision"] = precision
        print(json.dumps(level), flush=True)
        scoring.append(level)
    return levels, scoring


def offline_tokens_per_second(precision: str, vocab_size: int, rounds: int, eval_tokens: int, served: Served) -> dict:
    """evaluate_split and training-step tokens/s of the served model's shape, in alternation (as
    benchmarks/speed/run.py times them)."""
    from textlstm.evaluation.scoring import evaluate_split

    ids = np.random.default_rng(0).integers(
        2, vocab_size, 4 * eval_tokens + served.train_batch * served.train_seq_len * 8
    )
    model = served_model(vocab_size, served)
    shape = Shape(
        "served", vocab_size, served.embedding, served.hidden, served.layers, served.train_batch, served.train_seq_len
    )
    contenders = {
        "eval": lambda: evaluate_split(model, ids, max_tokens=eval_tokens, precision=precision),
        "training": textlstm_step(shape, ids, precision),
    }
    medians = interleaved_medians(contenders, rounds, warmup=1)
    result = {
        "precision": precision,
        "torch_threads": torch.get_num_threads(),
        "eval_tokens": eval_tokens,
        "eval_tokens_per_sec": eval_tokens / medians["eval"],
        "training_tokens_per_sec": shape.tokens_per_step / medians["training"],
    }
    print(json.dumps(result), flush=True)
    return result


def model_step_tokens_per_second(precision: str, vocab_size: int, seconds: float, served: Served) -> dict:
    """Tokens/s of the served model's `step` alone (weights in the precision, as serve holds them) at
    batch 1 and 64: what the streaming levels would reach with nothing but the model to run."""
    model = served_model(vocab_size, served).eval()
    if precision != "float32":
        model = model.to(getattr(torch, precision))
    result = {"precision": precision, "torch_threads": torch.get_num_threads()}
    with torch.inference_mode():
        for batch in (1, 64):
            ids, state = torch.randint(2, vocab_size, (batch,)), model.initial_state(batch)
            for _ in range(5):
                _, state = model.step(ids, state)
            steps, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                _, state = model.step(ids, state)
                steps += 1
            result[f"batch_{batch}_tokens_per_sec"] = batch * steps / elapsed
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each level streams")
    parser.add_argument("--conversations", type=int, default=4000, help="kept conversations for the RSS measurement")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="numbers of concurrent clients")
    parser.add_argument(
        "--precisions",
        default=None,
        help="the server's --precision, one pass of the levels each (default: serve's own, then float32)",
    )
    parser.add_argument("--scoring-clients", default="8,64", help="numbers of concurrent clients of the scoring levels")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of eval and training steps")
    add_quick_options(
        parser,
        "float32 only (unless --precisions), 1 and 4 streaming clients and 2 scoring ones, "
        "1 s a level, 50 kept conversations",
        "benchmarks/results/serving.json and benchmarks/SERVING.md",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.conversations, args.rounds = 1.0, min(args.conversations, 50), 2
        args.levels, args.scoring_clients, args.precisions = "1,4", "2", args.precisions or "float32"
    out_folder = output_folder(args.output_dir, args.quick)
    served = QUICK_SERVED if args.quick else SERVED
    precisions = list(dict.fromkeys((args.precisions or f"{serve_default_precision()},float32").split(",")))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_checkpoint(Path(folder) / "bench", served)
        levels, scoring = [], []
        for precision in precisions[1:]:
            process, host, port = start_server(checkpoint, args.threads, 100, precision)
            try:
                measured, scored = measure_levels(process, host, port, args, precision)
                levels, scoring = levels + measured, scoring + scored
            finally:
                process.terminate()
                process.wait(60)
        # The first precision last: its server goes on to the long prompt and the kept conversations.
        first = precisions[0]
        process, host, port = start_server(checkpoint, args.threads, args.conversations + 100, first)
        try:
            measured, scored = measure_levels(process, host, port, args, first)
            levels, scoring = measured + levels, scored + scoring
            stall_chars = 10_000 if args.quick else 100_000
            stall_seconds = max(args.seconds, 2.0 if args.quick else 10.0)
            stall = asyncio.run(long_prompt_stall(host, port, seconds=stall_seconds, chars=stall_chars))
            print(json.dumps(stall), flush=True)
            memory = asyncio.run(kept_conversation_memory(host, port, process.pid, args.conversations, served))
            print(json.dumps(memory), flush=True)
            final = asyncio.run(get_json(host, port, "/metrics.json"))
        finally:
            process.terminate()
            process.wait(60)
    vocab_size = build_tokenizer("char", [ALPHABET]).vocab_size
    torch.set_num_threads(args.threads)  # the offline figures on the server's threads: the same model, the same cores
    eval_tokens = 2_048 if args.quick else 65_536
    offline = [offline_tokens_per_second(p, vocab_size, args.rounds, eval_tokens, served) for p in precisions]
    step_alone = [model_step_tokens_per_second(p, vocab_size, 0.5 if args.quick else 3.0, served) for p in precisions]
    result = {
        "quick": args.quick,
        "served": asdict(served),
        "levels": levels,
        "scoring": scoring,
        "offline": offline,
        "model_step_alone": step_alone,
        "long_prompt": stall,
        "kept_conversations": memory,
        "active_sequences_after": final["sequences"],
        "server_threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "cpu": device_name("cpu"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out, page = (RESULTS, REPORT) if out_folder is None else (out_folder / "serving.json", out_folder / "SERVING.md")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    page.write_text(report(result))
    print(f"wrote {out} and {page}")
    return result


def build_tokenizer(kind: str, texts: list[str]):
    from textlstm.data.tokenizer import build_tokenizer

    return build_tokenizer(kind, texts)


def serve_default_precision() -> str:
    """What `textlstm serve --precision auto` runs on this CPU."""
    from textlstm.hardware.precision import training_precision

    return training_precision("auto", "cpu")


def _table_head(columns: list[str]) -> str:
    """A Markdown table's header row and the rule under it."""
    return "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |"


LEVEL_COLUMNS = [
    "precision",
    "clients",
    "total tokens/s",
    "vs 1 client",
    "per-client tokens/s (median)",
    "first token ms p50 / p99",
    "between tokens ms p50 / p99",
    "tokens per event",
    "server CPU ms per token",
    "server RSS MB",
]
SCORING_COLUMNS = [
    "precision",
    "API clients",
    "API tokens/s scored",
    "server CPU ms per token",
    "`textlstm eval` tokens/s",
    "training tokens/s",
    "API / training",
    "eval / training",
]


def report(result: dict) -> str:
    single = {level["precision"]: level["total_tokens_per_sec"] for level in result["levels"] if level["clients"] == 1}
    rows = "\n".join(
        f"| {level['precision']} | {level['clients']} | {level['total_tokens_per_sec']:.0f} "
        f"| {level['total_tokens_per_sec'] / single[level['precision']]:.1f}x "
        f"| {level['per_client_tokens_per_sec_median']:.1f} "
        f"| {level['first_token_ms_p50']:.1f} / {level['first_token_ms_p99']:.1f} "
        f"| {level['between_tokens_ms_p50']:.2f} / {level['between_tokens_ms_p99']:.2f} "
        f"| {level['tokens_per_event_mean']:.1f} "
        f"| {level['server_cpu_ms_per_token']:.2f} | {level['server_rss_mb']:.0f} |"
        for level in result["levels"]
    )
    speedup = (
        ", ".join(
            f"{level['precision']} **{level['total_tokens_per_sec'] / single[level['precision']]:.1f}x**"
            for level in result["levels"]
            if level["clients"] == 64
        )
        or "not measured"
    )
    first_token = (
        ", ".join(
            f"{level['precision']} **{level['first_token_ms_p99']:.0f} ms**"
            for level in result["levels"]
            if level["clients"] == 64
        )
        or "not measured"
    )
    offline = {o["precision"]: o for o in result["offline"]}

    def scoring_row(s: dict) -> str:
        eval_tps = offline[s["precision"]]["eval_tokens_per_sec"]
        training_tps = offline[s["precision"]]["training_tokens_per_sec"]
        return (
            f"| {s['precision']} | {s['clients']} | {s['tokens_per_sec']:.0f} | {s['server_cpu_ms_per_token']:.3f} | "
            f"{eval_tps:.0f} | {training_tps:.0f} | "
            f"**{s['tokens_per_sec'] / training_tps:.2f}x** | "
            f"**{eval_tps / training_tps:.2f}x** |"
        )

    scoring_rows = "\n".join(scoring_row(s) for s in result["scoring"])
    step_bound = (
        "; ".join(
            f"{b['precision']} {b['batch_1_tokens_per_sec']:,.0f} at batch 1 and "
            f"{b['batch_64_tokens_per_sec']:,.0f} at batch 64 "
            f"(**{b['batch_64_tokens_per_sec'] / b['batch_1_tokens_per_sec']:.1f}x**)"
            for b in result.get("model_step_alone", [])
        )
        or "not measured"
    )
    memory = result["kept_conversations"]
    served = result["served"]
    stall = result["long_prompt"]
    la_before = " / ".join(f"{x:.2f}" for x in result["load_average_before"])
    la_after = " / ".join(f"{x:.2f}" for x in result["load_average_after"])
    busiest = max(result["load_average_before"][0], result["load_average_after"][0])
    shared = (
        f"\n**Taken under load**: the 1-minute load average reached {busiest:.1f} on {result['cpus']} CPUs, "
        "from other\nwork on the machine; rerun on an idle machine for figures to compare against the targets.\n"
        if busiest > 0.5 * result["cpus"]
        else ""
    )
    return f"""# Serving benchmark (`textlstm serve`; benchmarks/speed/serving.py)

Char model, {served["layers"]} x {served["hidden"]} LSTM, random weights, every token one character;
`textlstm serve --threads {result["server_threads"]} --precision P` as a subprocess (bfloat16 holds the weights in
bfloat16), clients streaming `/v1/completions` back to back
({MAX_TOKENS} tokens each, prompt {PROMPT!r}, temperature 0.8) on the same host for
{result["levels"][0]["seconds"]:.0f} s per level. {result["cpus"]} CPUs ({result.get("cpu", "model not recorded")}),
torch {result["torch"]}, Python {result["python"]}, {result["date"]}.
Load average (1/5/15 min) before: {la_before}, after: {la_after}.
{shared}
{_table_head(LEVEL_COLUMNS)}
{rows}

- Total tokens/s at 64 clients vs 1 client: {speedup} (target: at least 20x).
- The model's `step` alone, tokens/s (no HTTP, no sampling, no prompt to read; in this process, torch
  threads {result["offline"][0]["torch_threads"]}): {step_bound}. With the server's other work counted too,
  the levels above stay under these.
- First token p99 at 64 clients: {first_token} (target: under 1 s).
- With the first precision's server: a {stall["prompt_chars"]:,}-character prompt read while 8 clients stream:
  it took {stall["prompt_seconds"]:.2f} s; the longest gap between the 8 clients' events meanwhile was
  {stall["others_max_gap_ms"]:.0f} ms (p99 {stall["others_p99_gap_ms"]:.0f} ms).
- Kept conversations: {memory["kept"]:,} kept; RSS {memory["rss_before_mb"]:.1f} MB -> {memory["rss_after_mb"]:.1f} MB,
  **{memory["kb_per_conversation"]:.1f} KB per kept conversation** (target: under 100 KB; the (h, c) state itself
  is {memory["state_kb"]:.0f} KB).
- Active sequences after all clients left: {result["active_sequences_after"]}.

## Scoring

{_table_head(SCORING_COLUMNS)}
{scoring_rows}

Target: scoring at least 2.5x the training tokens/s of the same model, through the API and through
`textlstm eval`. "API": the level's clients send `/v1/completions` requests with
echo, logprobs 1 and max_tokens 0 (what lm-evaluation-harness sends to score a text) of
{result["scoring"][0]["chars_per_request"]:,} characters each, back to back for the level's seconds: prompt tokens
scored per second, to the end of the last request. "eval": `evaluate_split` (what `textlstm eval`
runs: 32 parts side by side, 256 tokens per pass, a burn-in before each part; only scored tokens
count) on {result["offline"][0]["eval_tokens"]:,} tokens; "training": training/step.py's `TrainingStep`
(the step the trainer runs) at batch {served["train_batch"]} x {served["train_seq_len"]} with
dropout 0.2 and recurrent dropout 0.25, as benchmarks/speed/run.py measures both for RESULTS.md
(alternating, medians; torch threads {result["offline"][0]["torch_threads"]}, the server's `--threads`; in this
process with no server running). The served model holds its weights in the precision; eval and training run float32
weights under bfloat16 autocast.

The levels run one after another, so on a shared machine the load from other work changes between
rows, the 1-client rows most of all (they set the "vs 1 client" column).
"Server CPU ms per token" is the server process's CPU time (all its threads) over the tokens it
streamed: less affected by other work on the machine than tokens/s, it shows what batching saves.
"Between tokens" divides the gap between two events of a client by the tokens in the later one:
when the event loop is busy, a sequence's new text is sent in one event. RSS growth per kept
conversation can come out below the state's own size: the states partly fill memory the allocator
already held from the requests before. All clients of a level start at once, so the first-token
times include waiting behind the first step of every other client.

Rerun with `python -m benchmarks.speed.serving` (about 8 minutes; `--quick` checks that it runs). `--threads 2`
runs the model step on two torch threads: on this machine under load that was many times slower; on an idle machine
it is worth comparing.
"""


if __name__ == "__main__":
    main()
