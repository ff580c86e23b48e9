#!/usr/bin/env bash
# The GPU check, for the first machine with a CUDA GPU: the tests that need one (pytest -m cuda), the plan
# `textlstm train --max-minutes 15` makes there (printed, not trained), and a throughput benchmark of training
# steps on it in float32, bfloat16 and float16. Under ten minutes.
#
# Needs:
#   - Python >= 3.11 (PYTHON, default python3) with pip;
#   - a CUDA build of torch >= 2.2 (torch.cuda.is_available() true);
#   - textlstm's other dependencies and its test extra, as pyproject.toml lists them: tokenizers,
#     datasets, huggingface_hub, safetensors, rich, click, numpy, pyarrow, pandas; pytest, hypothesis.
# No network is used. Such a machine may have none, so the packages come from a folder of wheels:
#
#   WHEELS=/path/to/wheels bash benchmarks/speed/gpu_check.sh
#       pip install --no-index --find-links "$WHEELS" -e .[test] first (the folder also needs setuptools>=64,
#       which builds the editable install; torch too unless it is installed)
#   bash benchmarks/speed/gpu_check.sh
#       what is installed, with this checkout's textlstm
#
# Writes gpu_check.log (all it prints), gpu_tests.xml (JUnit) and gpu_training_step.json (tokens/s)
# to $OUT if set, else benchmarks/results/.
# Exit status: 0 all passed; 1 a test, the plan or the benchmark failed or ran out of time; 2 no CUDA device;
# 3 the environment lacks something (Python version, packages, the wheels folder).

set -uo pipefail

cd "$(dirname "$0")/../.." || exit 3
PYTHON="${PYTHON:-python3}"
RESULTS="${OUT:-benchmarks/results}"
BUDGET=570  # seconds for everything, a margin under ten minutes
mkdir -p "$RESULTS" || exit 3
exec > >(tee "$RESULTS/gpu_check.log") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

left() {  # seconds of the budget left, at most $1
    local rest=$((BUDGET - SECONDS))
    echo $((rest < $1 ? (rest > 1 ? rest : 1) : $1))
}

section() { echo; echo "== $*"; }

section "environment"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "gpu_check: needs Python >= 3.11 as \$PYTHON ($PYTHON: $("$PYTHON" --version 2>&1 | head -1))"
    exit 3
fi
"$PYTHON" --version

if [ -n "${WHEELS:-}" ]; then
    if [ ! -d "$WHEELS" ]; then
        echo "gpu_check: WHEELS=$WHEELS is not a folder"
        exit 3
    fi
    section "installing textlstm[test] from $WHEELS (no index)"
    if ! timeout "$(left 180)" "$PYTHON" -m pip install --no-index --find-links "$WHEELS" -e ".[test]"; then
        echo "gpu_check: pip could not install textlstm[test] from $WHEELS: the folder needs wheels of torch (a CUDA build,"
        echo "unless one is installed), the dependencies in pyproject.toml, pytest, hypothesis and setuptools>=64"
        exit 3
    fi
fi

missing=$("$PYTHON" - <<'EOF'
import importlib.util
names = ["torch", "tokenizers", "datasets", "huggingface_hub", "safetensors", "rich", "click", "numpy", "pyarrow",
         "pandas", "pytest", "hypothesis"]
print(" ".join(name for name in names if importlib.util.find_spec(name) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "gpu_check: not installed: $missing (install them, or give WHEELS=a folder of wheels)"
    exit 3
fi

section "GPU"
if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi
else
    echo "(no nvidia-smi on PATH)"
fi
timeout 60 "$PYTHON" - <<'EOF'
import sys

import torch

import textlstm
from textlstm.hardware.precision import cuda_has_native_bfloat16, training_precision

print(f"textlstm {textlstm.__version__} from {textlstm.__file__}")
print(f"torch {torch.__version__}, built with CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    print("gpu_check: no CUDA device: torch.cuda.is_available() is False "
          f"({'a CPU-only build of torch' if torch.version.cuda is None else 'no GPU or driver that this torch can use'}); "
          "nothing to check here")
    sys.exit(2)
for index in range(torch.cuda.device_count()):
    device = torch.device("cuda", index)
    properties = torch.cuda.get_device_properties(device)
    print(f"cuda:{index}: {properties.name}, compute capability {properties.major}.{properties.minor}, "
          f"{properties.total_memory / 2**30:.1f} GiB; native bfloat16: {cuda_has_native_bfloat16(device)}; "
          f"--precision auto trains in {training_precision('auto', device)}")
EOF
status=$?
if [ "$status" -ne 0 ]; then
    [ "$status" -eq 2 ] || echo "gpu_check: could not query torch and the GPU (exit $status)"
    exit $((status == 2 ? 2 : 3))
fi

section "tests that need CUDA (pytest -m cuda)"
timeout "$(left 300)" "$PYTHON" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider --junitxml="$RESULTS/gpu_tests.xml"
tests=$?
[ "$tests" -eq 124 ] && echo "gpu_check: the tests ran out of time"

section "the plan of textlstm train --max-minutes 15 on cuda (the built-in corpus; timed, not trained)"
timeout "$(left 150)" "$PYTHON" - <<'EOF'
import tempfile
from pathlib import Path

from textlstm.config import ModelConfig, RunConfig, TrainConfig
from textlstm.hardware.device import resolve_device
from textlstm.hardware.precision import training_precision
from textlstm.training.trainer import Reporter, planned, read_data, with_tokenizer_chosen


class Printed(Reporter):
    def message(self, text):
        print(text, flush=True)


config = RunConfig(model=ModelConfig(), train=TrainConfig(max_minutes=15, device="cuda"))
device = resolve_device("cuda")
precision = training_precision(config.train.precision, device)
config, choosing = with_tokenizer_chosen(config, device, precision, Printed())
with tempfile.TemporaryDirectory() as folder:
    data, config = read_data(config, Path(folder), False, None, Printed())
for line in planned(config, data, device, precision, choosing).lines:
    print(line)
EOF
plan=$?
[ "$plan" -eq 124 ] && echo "gpu_check: the plan ran out of time"

section "training steps per second on cuda"
timeout "$(left 240)" "$PYTHON" -m benchmarks.speed.training_step --device cuda --output "$RESULTS/gpu_training_step.json"
bench=$?
[ "$bench" -eq 124 ] && echo "gpu_check: the benchmark ran out of time"

section "summary"
echo "tests: $([ "$tests" -eq 0 ] && echo passed || echo "failed (exit $tests)"); plan: $([ "$plan" -eq 0 ] && echo printed || echo "failed (exit $plan)"); benchmark: $([ "$bench" -eq 0 ] && echo done || echo "failed (exit $bench)"); ${SECONDS}s"
echo "results in $RESULTS: gpu_check.log, gpu_tests.xml, gpu_training_step.json"
[ "$tests" -eq 0 ] && [ "$plan" -eq 0 ] && [ "$bench" -eq 0 ]
