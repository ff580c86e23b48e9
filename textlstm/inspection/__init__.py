"""Looking into a trained model: its gates and states per layer and token (`recorder.py`), features
of the text (`features.py`), the cells that track them and their ablations (`cells.py`), the memory
of the forget gates (`memory.py`), the HTML report (`report.py`) and PNG heatmaps (`heatmaps.py`);
`inspector.py` is the Python API and what `textlstm inspect` runs.

May import: `hardware`, `data`, `model`, `runs` and the top of textlstm.
"""
